package view

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/selfheal/heal"
)

// Handler returns the view's HTTP JSON API:
//
//	GET /v1/health                          200 when "ok", 503 when "degraded": a [Health]
//	GET /v1/datasets                        200: {"datasets": [names]}
//	GET /v1/datasets/{name}/latest          200: a [State]; 404 for an unknown dataset
//	GET /v1/datasets/{name}/latest?key=K    the same, for key K only (repeatable); 404 for an unknown key
//
// Errors are JSON, {"error": {"status": 404, "message": "..."}}, with the
// status code: 404 for an unknown path, dataset or key, 405 (with Allow)
// for a method other than GET or HEAD. The handler reads the view's state
// only: a request never touches the lake.
func (v *View) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/health", get(func(w http.ResponseWriter, r *http.Request) {
		h := v.Health()
		code := http.StatusOK
		if h.Status != "ok" {
			code = http.StatusServiceUnavailable
		}
		writeJSON(w, code, h)
	}))
	mux.HandleFunc("/v1/datasets", get(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string][]string{"datasets": append([]string{}, v.Datasets()...)})
	}))
	mux.HandleFunc("/v1/datasets/{name}/latest", get(func(w http.ResponseWriter, r *http.Request) {
		st, err := v.State(r.PathValue("name"), r.URL.Query()["key"]...)
		if err != nil {
			code := http.StatusInternalServerError
			if errors.Is(err, heal.ErrNotFound) {
				code = http.StatusNotFound
			}
			writeError(w, code, err.Error())
			return
		}
		writeJSON(w, http.StatusOK, st)
	}))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no such resource %s: see /v1/health, /v1/datasets and /v1/datasets/{name}/latest", r.URL.Path))
	})
	return mux
}

// get admits GET and HEAD only.
func get(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("method %s not allowed: use GET", r.Method))
			return
		}
		h(w, r)
	}
}

type errorBody struct {
	Error struct {
		Status  int    `json:"status"`
		Message string `json:"message"`
	} `json:"error"`
}

func writeError(w http.ResponseWriter, code int, msg string) {
	var b errorBody
	b.Error.Status, b.Error.Message = code, msg
	writeJSON(w, code, b)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		code = http.StatusInternalServerError
		b = []byte(`{"error":{"status":500,"message":"heal/view: cannot encode the response"}}`)
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	w.Write(append(b, '\n'))
}

// NewServer returns an http.Server serving h on addr with timeouts set, so
// that a slow or idle client cannot hold a connection for ever.
func NewServer(addr string, h http.Handler) *http.Server {
	return &http.Server{
		Addr:              addr,
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
	}
}

// Serve serves the view on ln until ctx ends, then shuts the server down,
// letting requests in flight finish for up to five seconds. It returns nil
// after a shutdown caused by ctx, or the server's error.
func (v *View) Serve(ctx context.Context, ln net.Listener) error {
	srv := NewServer(ln.Addr().String(), v.Handler())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("heal/view: serve %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("heal/view: shut down %s: %w", ln.Addr(), err)
	}
	<-errc // http.ErrServerClosed
	return nil
}
