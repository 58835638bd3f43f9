package main

// Operator extras: Prometheus metrics (-metrics ADDR) and what the run
// cost (-price), recorded in the lake by a cost.Meter so that
// `go run ./cmd/heal status -lake DIR` and `heal report` show it again.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/selfheal/heal"
	"github.com/selfheal/heal/cost"
	"github.com/selfheal/heal/metrics"
	"github.com/selfheal/heal/sink"
)

// serveMetrics serves the engine's metrics, and the Go runtime's, at
// http://addr/metrics until stop is called. addr is bound as given: ":9090"
// listens on every interface, "127.0.0.1:9090" keeps it on this machine.
func serveMetrics(addr string, out io.Writer) (c *metrics.Collector, stop func(), err error) {
	c = metrics.New(nil)
	reg := prometheus.NewRegistry()
	reg.MustRegister(c, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", metrics.Handler(reg))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			fmt.Fprintln(out, "metrics server:", err)
		}
	}()
	fmt.Fprintf(out, "Prometheus metrics at http://%s/metrics\n", ln.Addr())
	return c, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	}, nil
}

// newMeter returns a cost meter for the quotes pipeline, on the engine's
// clock, and the lake decorated so its requests are counted.
func newMeter(lake *sink.Lake, clock heal.Clock, datasets ...string) (*cost.Meter, *sink.Lake) {
	var prefixes []string
	for _, d := range datasets {
		prefixes = append(prefixes, d+"/")
	}
	m := cost.NewMeter(datasets[0], &cost.Options{Clock: clock, StoragePrefixes: prefixes})
	return m, sink.NewLake(m.Store(lake.Store()), nil)
}

// observers tells every non-nil observer of each event.
func observers(obs ...heal.Observer) heal.Observer {
	var all []heal.Observer
	for _, o := range obs {
		if o != nil {
			all = append(all, o)
		}
	}
	return heal.ObserverFunc(func(e heal.Event) {
		for _, o := range all {
			o.Observe(e)
		}
	})
}

// collectorOf is cfg's metrics collector as an observer, nil without one.
func collectorOf(cfg config) heal.Observer {
	if cfg.collector == nil {
		return nil
	}
	return cfg.collector
}

// printCost prints what the run cost, from the records its meters kept in
// the lake (those ending after since).
func printCost(ctx context.Context, out io.Writer, meta heal.MetaStore, dataset string, since time.Time, prices cost.Prices, dir string) error {
	recs, err := cost.Load(ctx, meta, dataset, heal.Window{Start: since, End: since.Add(100 * 365 * 24 * time.Hour)})
	if err != nil || len(recs) == 0 {
		return err
	}
	s := cost.Summarize(recs, prices, 24*time.Hour)
	fmt.Fprintf(out, "\nWhat it cost, at list prices (S3 Standard and Fargate in us-east-1; the source at %s a month, -price source-month=N for your plan)\n",
		cost.Dollars(prices.SourceMonthly))
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "stage\tcounts as\tsource calls\tfetched\tlake PUT\tGET\tLIST\tDELETE\twritten\tCPU\tcost\t")
	for _, st := range s.Stages {
		u := st.Usage
		kind := "pipeline"
		if st.Healing {
			kind = "healing"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%d\t%d\t%d\t%d\t%s\t%s\t%s\t\n", st.Stage, kind, u.SourceCalls, cost.Bytes(u.SourceBytes),
			u.Requests[cost.Put], u.Requests[cost.Get], u.Requests[cost.List], u.Requests[cost.Delete], cost.Bytes(u.BytesWritten),
			u.CPU.Round(time.Millisecond), cost.Dollars(st.Total))
	}
	if s.StoredBytes >= 0 {
		fmt.Fprintf(tw, "storage\tpipeline\t\t\t\t\t\t\t%s\t\t%s\t\n", cost.Bytes(s.StoredBytes), cost.Dollars(s.Storage))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(out, "  running the pipeline %s · healing it %s (%.1f%% of the total) · %s per repaired slot · %s per audit\n",
		cost.Dollars(s.Pipeline), cost.Dollars(s.Healing), 100*s.Healing/max(s.Total, 1e-300), cost.Dollars(s.PerRepair), cost.Dollars(s.PerAudit))
	fmt.Fprintf(out, "  CPU is the whole process's (the fake Finnhub server included), shared among stages by the time each spent.\n")
	fmt.Fprintf(out, "  Again, with the health report: go run ./cmd/heal status -lake %s; go run ./cmd/heal report -lake %s -o report.html\n", dir, dir)
	return nil
}
