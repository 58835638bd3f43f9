package finnhub_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/selfheal/heal"
	"github.com/selfheal/heal/examples/finnhub/finnhub"
	"github.com/selfheal/heal/examples/finnhub/finnhubtest"
)

// clock is a settable heal.Clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

func (c *clock) After(d time.Duration) <-chan time.Time {
	ch := make(chan time.Time, 1)
	ch <- c.Now().Add(d)
	return ch
}

// A Tuesday, 11:42:20 New York time (EST).
var tuesday = time.Date(2025, 3, 4, 16, 42, 20, 0, time.UTC)

func newClient(t *testing.T, base, token string, clk heal.Clock, logger *slog.Logger) *finnhub.Client {
	t.Helper()
	c, err := finnhub.NewClient(&finnhub.Options{BaseURL: base, Token: token, Clock: clk,
		Timeout: 300 * time.Millisecond, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

type kind int

const (
	ok kind = iota
	permanent
	retryAfter
	retryable
)

func classOf(err error) kind {
	var ra *heal.RetryAfterError
	switch {
	case err == nil:
		return ok
	case heal.IsPermanent(err):
		return permanent
	case errors.As(err, &ra):
		return retryAfter
	}
	return retryable
}

func (k kind) String() string {
	return [...]string{"ok", "permanent", "retry-after", "retryable"}[k]
}

func TestClientAgainstFake(t *testing.T) {
	from, to := tuesday.Add(-time.Hour).Truncate(time.Minute), tuesday.Add(-30*time.Minute).Truncate(time.Minute)
	tests := []struct {
		name     string
		token    string
		setup    func(*finnhubtest.Server)
		candle   bool
		symbol   string
		kind     kind
		is       error  // errors.Is target, if any
		contains string // in err.Error()
		wait     time.Duration
	}{
		{name: "quote", token: finnhubtest.Token, symbol: "AAPL", kind: ok},
		{name: "candles", token: finnhubtest.Token, symbol: "AAPL", candle: true, kind: ok},
		{name: "crypto quote", token: finnhubtest.Token, symbol: finnhubtest.CryptoSymbol, kind: ok},
		{name: "free plan quote", token: finnhubtest.FreeToken, symbol: "MSFT", kind: ok},
		{name: "no token", token: "", symbol: "AAPL", kind: permanent, is: finnhub.ErrUnauthorized, contains: "Please use an API key."},
		{name: "invalid token", token: "wrong", symbol: "AAPL", kind: permanent, is: finnhub.ErrUnauthorized, contains: "Invalid API key."},
		{name: "free plan candles", token: finnhubtest.FreeToken, symbol: "AAPL", candle: true, kind: permanent,
			is: finnhub.ErrForbidden, contains: "premium"},
		{name: "unknown symbol quote", token: finnhubtest.Token, symbol: "NOPE", kind: permanent, is: finnhub.ErrSymbolNotFound},
		{name: "all-zero quote of a known symbol", token: finnhubtest.Token, symbol: "AAPL", kind: permanent, is: finnhub.ErrSymbolNotFound,
			setup: func(s *finnhubtest.Server) { s.SetFaults(finnhubtest.Faults{ZeroQuote: 1}) }},
		{name: "unknown symbol candles", token: finnhubtest.Token, symbol: "NOPE", candle: true, kind: retryable, is: heal.ErrNoData},
		{name: "no_data window", token: finnhubtest.Token, symbol: "AAPL", candle: true, kind: retryable, is: heal.ErrNoData,
			setup: func(s *finnhubtest.Server) {
				s.SetFaults(finnhubtest.Faults{NoData: []heal.Window{heal.NewWindow(from.Add(10*time.Minute), from.Add(11*time.Minute))}})
			}},
		{name: "429 with Retry-After", token: finnhubtest.Token, symbol: "AAPL", kind: retryAfter, is: finnhub.ErrRateLimited, wait: 7 * time.Second,
			setup: func(s *finnhubtest.Server) { s.FailNext(1, 429, 7*time.Second) }},
		{name: "429 waits for X-Ratelimit-Reset", token: finnhubtest.Token, symbol: "AAPL", candle: true, kind: retryAfter,
			is: finnhub.ErrRateLimited, wait: 40 * time.Second, contains: "API limit reached",
			setup: func(s *finnhubtest.Server) { s.FailNext(1, 429, 0) }},
		{name: "500", token: finnhubtest.Token, symbol: "AAPL", kind: retryable, is: finnhub.ErrServer,
			setup: func(s *finnhubtest.Server) { s.FailNext(1, 500, 0) }},
		{name: "502", token: finnhubtest.Token, symbol: "AAPL", candle: true, kind: retryable, is: finnhub.ErrServer,
			setup: func(s *finnhubtest.Server) { s.SetFaults(finnhubtest.Faults{Status: map[int]float64{502: 1}}) }},
		{name: "503", token: finnhubtest.Token, symbol: "AAPL", kind: retryable, is: finnhub.ErrServer,
			setup: func(s *finnhubtest.Server) { s.FailNext(1, 503, 0) }},
		{name: "malformed quote", token: finnhubtest.Token, symbol: "AAPL", kind: retryable, is: finnhub.ErrMalformed,
			setup: func(s *finnhubtest.Server) { s.SetFaults(finnhubtest.Faults{Malformed: 1}) }},
		{name: "truncated quote", token: finnhubtest.Token, symbol: "AAPL", kind: retryable, is: finnhub.ErrMalformed,
			setup: func(s *finnhubtest.Server) { s.SetFaults(finnhubtest.Faults{Truncated: 1}) }},
		{name: "truncated candles", token: finnhubtest.Token, symbol: "AAPL", candle: true, kind: retryable, is: finnhub.ErrMalformed,
			setup: func(s *finnhubtest.Server) { s.SetFaults(finnhubtest.Faults{Truncated: 1}) }},
		{name: "unequal candle arrays", token: finnhubtest.Token, symbol: "AAPL", candle: true, kind: retryable, is: finnhub.ErrMalformed,
			contains: `values in "v"`,
			setup:    func(s *finnhubtest.Server) { s.SetFaults(finnhubtest.Faults{Unequal: 1}) }},
		{name: "timeout", token: finnhubtest.Token, symbol: "AAPL", kind: retryable, is: context.DeadlineExceeded, contains: "timed out",
			setup: func(s *finnhubtest.Server) { s.SetFaults(finnhubtest.Faults{Latency: time.Second}) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clk := &clock{t: tuesday}
			srv := finnhubtest.NewServer(&finnhubtest.Options{Clock: clk, Seed: 7})
			defer srv.Close()
			if tc.setup != nil {
				tc.setup(srv)
			}
			var logs bytes.Buffer
			c := newClient(t, srv.URL, tc.token, clk, slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
			var err error
			if tc.candle {
				var cs *finnhub.Candles
				cs, err = c.Candles(context.Background(), tc.symbol, "1", from, to)
				if err == nil {
					want := srv.Market.Bars(tc.symbol, from, to.Add(time.Second))
					if cs.Len() != len(want) || cs.Len() < 25 {
						t.Fatalf("%d candles, want %d (>=25)", cs.Len(), len(want))
					}
					for i, b := range want {
						if cs.T[i] != b.T.Unix() || cs.C[i] != b.C || cs.O[i] != b.O || cs.H[i] != b.H || cs.L[i] != b.L || int64(cs.V[i]) != b.V {
							t.Fatalf("candle %d = %v %v, want %+v", i, cs.T[i], cs.C[i], b)
						}
					}
				} else if cs != nil {
					t.Error("candles returned with an error")
				}
			} else {
				var q *finnhub.Quote
				q, err = c.Quote(context.Background(), tc.symbol)
				if err == nil {
					want, _ := srv.Market.QuoteAt(tc.symbol, clk.Now())
					if q.C != want.C || q.PC != want.PC || q.T != want.T.Unix() || q.D == nil || *q.D != want.D {
						t.Errorf("quote %+v, want %+v", q, want)
					}
					if lag := tuesday.Sub(q.Time()); lag < 10*time.Second || lag > 30*time.Second && tc.symbol != finnhubtest.CryptoSymbol {
						t.Errorf("quote t lags %s, want 10-30s", lag)
					}
				} else if q != nil {
					t.Error("quote returned with an error")
				}
			}
			t.Logf("err: %v", err)
			if got := classOf(err); got != tc.kind {
				t.Fatalf("err = %v: class %s, want %s", err, got, tc.kind)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("err = %v, want errors.Is %v", err, tc.is)
			}
			if tc.contains != "" && !strings.Contains(err.Error(), tc.contains) {
				t.Errorf("err = %q, want it to contain %q", err, tc.contains)
			}
			if tc.wait != 0 {
				var ra *heal.RetryAfterError
				errors.As(err, &ra)
				if ra.Wait != tc.wait {
					t.Errorf("wait %s, want %s", ra.Wait, tc.wait)
				}
			}
			if tc.token != "" {
				if err != nil && strings.Contains(err.Error(), tc.token) {
					t.Errorf("token in error %q", err)
				}
				if strings.Contains(logs.String(), tc.token) {
					t.Errorf("token in logs %q", logs.String())
				}
			}
			if n := srv.Counters().TokenInQuery; n != 0 {
				t.Errorf("%d requests carried the token in the URL", n)
			}
		})
	}
}

// TestRateLimitAnswers drives the fake's own limiter: the third call of a
// clock minute with a limit of 2 is refused, and the wait ends at the
// minute boundary.
func TestRateLimitAnswers(t *testing.T) {
	clk := &clock{t: tuesday}
	srv := finnhubtest.NewServer(&finnhubtest.Options{Clock: clk, PerMinute: 2})
	defer srv.Close()
	c := newClient(t, srv.URL, finnhubtest.Token, clk, nil)
	for i := 0; i < 2; i++ {
		if _, err := c.Quote(context.Background(), "AAPL"); err != nil {
			t.Fatal(err)
		}
	}
	_, err := c.Quote(context.Background(), "AAPL")
	var ra *heal.RetryAfterError
	if !errors.As(err, &ra) || ra.Wait != 40*time.Second || !errors.Is(err, finnhub.ErrRateLimited) {
		t.Fatalf("err = %v, want a 40s retry-after", err)
	}
	var api *finnhub.APIError
	if !errors.As(err, &api) || api.RateLimit.Limit != 2 || api.RateLimit.Remaining != 0 {
		t.Errorf("rate limit headers %+v", api)
	}
	clk.Set(tuesday.Add(40 * time.Second))
	if _, err := c.Quote(context.Background(), "AAPL"); err != nil {
		t.Fatalf("next minute: %v", err)
	}
	cn := srv.Counters()
	// A fixed window admits 2 calls at 11:42:20 and 2 more at 11:43:00, so
	// the sliding count over one minute reaches 4 (3 admitted): this is why
	// a client must keep its own sliding budget rather than trust windows.
	if cn.RateLimited != 1 || cn.Calls["/quote"] != 4 || cn.MaxPerMinute != 4 {
		t.Errorf("counters %+v", cn)
	}
}

// TestOddServers covers answers the fake does not give: a 429 without any
// header, plain-text errors, a token echoed back, oversized bodies, reset
// connections.
func TestOddServers(t *testing.T) {
	const token = "s3cr3t-t0ken"
	tests := []struct {
		name     string
		handler  http.HandlerFunc
		kind     kind
		is       error
		contains string
		wait     time.Duration
	}{
		{"429 without headers waits for the next minute", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(429)
			w.Write([]byte("API limit reached. Please try again later."))
		}, retryAfter, finnhub.ErrRateLimited, "API limit reached", 40 * time.Second},
		{"429 with a stale reset waits for the next minute", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Ratelimit-Reset", "1000")
			w.WriteHeader(429)
		}, retryAfter, finnhub.ErrRateLimited, "", 40 * time.Second},
		{"token echoed in an error", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(401)
			w.Write([]byte(`{"error":"Invalid API key ` + r.Header.Get("X-Finnhub-Token") + `."}`))
		}, permanent, finnhub.ErrUnauthorized, "[token]", 0},
		{"404", func(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) }, permanent, nil, "HTTP 404", 0},
		{"html 200", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			w.Write([]byte("<html>maintenance</html>"))
		}, retryable, finnhub.ErrMalformed, "text/html", 0},
		{"oversized body", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`{"c":1,"pc":1,"t":1,"pad":"` + strings.Repeat("x", 4096) + `"}`))
		}, retryable, finnhub.ErrMalformed, "larger than", 0},
		{"two JSON values", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`{"c":1,"pc":1,"t":1}{"c":2}`))
		}, retryable, finnhub.ErrMalformed, "", 0},
		{"missing fields", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`{"h":1}`))
		}, retryable, finnhub.ErrMalformed, "missing", 0},
		{"connection reset", func(w http.ResponseWriter, r *http.Request) {
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.(*net.TCPConn).SetLinger(0)
				conn.Close()
			}
		}, retryable, nil, "", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var urls []string
			var mu sync.Mutex
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				urls = append(urls, r.RequestURI)
				mu.Unlock()
				tc.handler(w, r)
			}))
			defer srv.Close()
			clk := &clock{t: tuesday}
			c, err := finnhub.NewClient(&finnhub.Options{BaseURL: srv.URL + "/api/v1", Token: token, Clock: clk, MaxBody: 1024})
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.Quote(context.Background(), "AAPL")
			if got := classOf(err); got != tc.kind {
				t.Fatalf("err = %v: class %s, want %s", err, got, tc.kind)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("err = %v, want errors.Is %v", err, tc.is)
			}
			if tc.contains != "" && !strings.Contains(err.Error(), tc.contains) {
				t.Errorf("err = %q, want it to contain %q", err, tc.contains)
			}
			if strings.Contains(err.Error(), token) {
				t.Errorf("token in error %q", err)
			}
			if tc.wait != 0 {
				var ra *heal.RetryAfterError
				if errors.As(err, &ra); ra.Wait != tc.wait {
					t.Errorf("wait %s, want %s", ra.Wait, tc.wait)
				}
			}
			mu.Lock() // the handler may still be running after a reset
			defer mu.Unlock()
			for _, u := range urls {
				if strings.Contains(u, token) || strings.Contains(u, "token") {
					t.Errorf("token in URL %s", u)
				}
			}
		})
	}
}

func TestNewClientRefusesCredentialsInURL(t *testing.T) {
	for _, base := range []string{"https://finnhub.io/api/v1?token=x", "https://user:pw@finnhub.io/api/v1", "ftp://x", "finnhub.io"} {
		if _, err := finnhub.NewClient(&finnhub.Options{BaseURL: base}); err == nil {
			t.Errorf("NewClient(%q) accepted", base)
		} else if strings.Contains(err.Error(), "pw@") {
			t.Errorf("error repeats credentials: %v", err)
		}
	}
}
