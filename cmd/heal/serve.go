package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	"github.com/selfheal/heal/sink"
	"github.com/selfheal/heal/view"
)

// serveConfig is what serve's own flags say.
type serveConfig struct {
	addr       string
	refresh    time.Duration
	window     time.Duration
	staleAfter time.Duration
	maxKeys    int
}

func serveFlags(fs *flag.FlagSet, cfg *config) {
	fs.StringVar(&cfg.serve.addr, "addr", "127.0.0.1:8080", "address to listen on (host:port; port 0 picks a free one)")
	fs.DurationVar(&cfg.serve.refresh, "refresh", time.Minute, "how often the state is read again from the lake")
	fs.DurationVar(&cfg.serve.window, "window", 24*time.Hour, "span, ending now, whose completeness is reported")
	fs.DurationVar(&cfg.serve.staleAfter, "stale-after", 0, "age of a key's latest slot past which /v1/health reports it stale (0: five grains)")
	fs.IntVar(&cfg.serve.maxKeys, "max-keys", 10000, "keys kept per dataset (bounds memory)")
	fs.Float64Var(&cfg.minComplete, "min-completeness", 0, "share of the window below which /v1/health reports a key incomplete (0: never)")
}

// serveCmd serves the current state of the targets over HTTP until ctx
// ends, reading it again from the lake every -refresh.
func serveCmd(ctx context.Context, cfg *config, lake *sink.Lake, ts []*target, stdout io.Writer, log *slog.Logger) error {
	if cfg.serve.refresh <= 0 || cfg.serve.window <= 0 || cfg.serve.staleAfter < 0 || cfg.serve.maxKeys <= 0 {
		return usagef("serve: -refresh, -window and -max-keys must be positive, -stale-after not negative")
	}
	v, err := view.New(lake, &view.Options{
		Window: cfg.serve.window, StaleAfter: cfg.serve.staleAfter, MaxKeys: cfg.serve.maxKeys,
		MinCompleteness: cfg.minComplete, Logger: log,
	})
	if err != nil {
		return err
	}
	for _, t := range ts {
		if err := v.Add(t.ds, &view.Track{Auditor: t.eng, DerivedFrom: t.desc.DerivedFrom}); err != nil {
			return err
		}
	}
	// The first read before listening: a client never sees an empty view
	// it could take for an empty lake.
	if err := v.Refresh(ctx); err != nil {
		log.Warn("the first read of the lake failed; /v1/health reports it", "err", err)
	}
	ln, err := net.Listen("tcp", cfg.serve.addr)
	if err != nil {
		return fmt.Errorf("serve: listen on %s: %w", cfg.serve.addr, err)
	}
	fmt.Fprintf(stdout, "serving %d dataset(s) of %s on http://%s (GET /v1/health, /v1/datasets/{name}/latest)\n", len(ts), cfg.lake, ln.Addr())
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(cfg.serve.refresh)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if err := v.Refresh(ctx); err != nil && ctx.Err() == nil {
					log.Warn("refresh failed", "err", err)
				}
			}
		}
	}()
	err = v.Serve(ctx, ln)
	cancel()
	<-done
	return err
}
