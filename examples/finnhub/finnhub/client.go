// Package finnhub is a heal [heal.Source] for Finnhub's stock API
// (https://finnhub.io/docs/api), and the reference for writing your own: a
// plain net/http client that classifies every failure the way the engine
// needs (permanent, retry-after, retryable, no data), the raw dataset it
// fills ([Quotes]), and a transformer deriving hourly bars from it ([Bars]).
//
// Live polling uses GET /quote, whose t is the time of the last trade and
// lags the request by tens of seconds: a live row is therefore stored under
// the minute the poll was scheduled for, with t kept in its own column.
// Repairs use GET /stock/candle at resolution 1, whose bars start on the
// minute, so live and repaired rows meet on the same slots. Stock candles
// are a premium endpoint since late 2023: with a free key every repair gets
// HTTP 403, which this package reports as permanent so the engine alarms
// once with that reason instead of retrying.
//
// The API token travels only in the X-Finnhub-Token header; it never
// appears in a URL, a log line or an error message.
package finnhub

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/selfheal/heal"
	"github.com/selfheal/heal/secret"
)

// DefaultBaseURL is Finnhub's API root.
const DefaultBaseURL = "https://finnhub.io/api/v1"

// Sentinel errors. They are always returned wrapped (in an *[APIError] or
// an error naming the endpoint and symbol): check them with errors.Is.
var (
	// ErrUnauthorized: HTTP 401, the token is missing or invalid.
	ErrUnauthorized = errors.New("unauthorized")
	// ErrForbidden: HTTP 403, the plan lacks the endpoint (stock candles
	// are premium since late 2023).
	ErrForbidden = errors.New("forbidden")
	// ErrRateLimited: HTTP 429, the plan's call limit was reached.
	ErrRateLimited = errors.New("rate limited")
	// ErrServer: HTTP 5xx.
	ErrServer = errors.New("server error")
	// ErrSymbolNotFound: a quote of all zeros, which is how Finnhub
	// answers (with HTTP 200) for a symbol it does not cover. It is never
	// a price.
	ErrSymbolNotFound = errors.New("unknown symbol (all-zero quote)")
	// ErrMalformed: a body that is not the JSON the endpoint documents
	// (not JSON, truncated, candle arrays of unequal length, too large).
	ErrMalformed = errors.New("malformed response")
)

// APIError is an HTTP error answer from Finnhub.
type APIError struct {
	Status    int       // HTTP status
	Endpoint  string    // "/quote" or "/stock/candle"
	Symbol    string    // the symbol asked for
	Message   string    // the "error" field of the body, or the start of the raw body
	RateLimit RateLimit // from the X-Ratelimit-* headers, when present
}

func (e *APIError) Error() string {
	s := fmt.Sprintf("finnhub: %s %s: HTTP %d", e.Endpoint, e.Symbol, e.Status)
	if e.Message != "" {
		s += ": " + e.Message
	}
	switch e.Status {
	case http.StatusUnauthorized:
		s += " (check the API token)"
	case http.StatusForbidden:
		if e.Endpoint == "/stock/candle" {
			s += " (stock candles are a premium endpoint since late 2023; a free key cannot repair from history)"
		}
	}
	return s
}

// Unwrap returns the sentinel of the status: ErrUnauthorized,
// ErrForbidden, ErrRateLimited, ErrServer, or nil.
func (e *APIError) Unwrap() error {
	switch {
	case e.Status == http.StatusUnauthorized:
		return ErrUnauthorized
	case e.Status == http.StatusForbidden:
		return ErrForbidden
	case e.Status == http.StatusTooManyRequests:
		return ErrRateLimited
	case e.Status >= 500:
		return ErrServer
	}
	return nil
}

// RateLimit is what the X-Ratelimit-* headers of an answer said. Zero
// fields were absent.
type RateLimit struct {
	Limit, Remaining int
	Reset            time.Time
}

// Options configures a [Client] and a [Source]. A nil *Options, or a zero
// field, means the default beside the field.
type Options struct {
	// Token is the API key, sent in the X-Finnhub-Token header. An empty
	// token is sent as none (Finnhub answers 401).
	Token string
	// TokenProvider, if set, is asked for the token on every request
	// instead of Token (e.g. [secret.SecretsManager], which caches it and
	// picks up a rotated secret). After a 401 the client calls its
	// Invalidate method, if it has one, so the next request fetches the
	// token again.
	TokenProvider secret.Provider
	// BaseURL is the API root. "": DefaultBaseURL. Point it at a
	// finnhubtest.Server in tests.
	BaseURL string
	// HTTPClient makes the requests. nil: a client with Timeout.
	HTTPClient *http.Client
	// Timeout bounds each request, body included. 0: 15s.
	Timeout time.Duration
	// MaxBody is the largest body read, in bytes. 0: 16 MiB (a month of
	// one-minute candles with extended hours is about 2.5 MB).
	MaxBody int64
	// Clock is the time used to compute 429 waits and stamp rows. nil: the
	// wall clock.
	Clock heal.Clock
	// Logger receives debug logs of each call (never the token). nil:
	// discarded.
	Logger *slog.Logger
}

// Client calls Finnhub's /quote and /stock/candle endpoints. It does not
// retry or rate-limit: it classifies its errors for whoever does (a heal
// Engine). It is safe for concurrent use.
type Client struct {
	token   string
	tokens  secret.Provider
	base    string
	hc      *http.Client
	timeout time.Duration
	maxBody int64
	clock   heal.Clock
	log     *slog.Logger
}

// NewClient returns a client configured by opts.
func NewClient(opts *Options) (*Client, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	c := &Client{token: o.Token, tokens: o.TokenProvider, base: strings.TrimRight(o.BaseURL, "/"), hc: o.HTTPClient,
		timeout: o.Timeout, maxBody: o.MaxBody, clock: o.Clock, log: o.Logger}
	if c.base == "" {
		c.base = DefaultBaseURL
	}
	u, err := url.Parse(c.base)
	if err != nil {
		return nil, errors.New("finnhub: base URL does not parse")
	}
	if u.RawQuery != "" || u.User != nil {
		return nil, errors.New("finnhub: base URL must hold no query or credentials (the token goes in Options.Token)")
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("finnhub: base URL %q: want http(s)://host/path", c.base)
	}
	if c.timeout <= 0 {
		c.timeout = 15 * time.Second
	}
	if c.hc == nil {
		c.hc = &http.Client{Timeout: c.timeout}
	}
	if c.maxBody <= 0 {
		c.maxBody = 16 << 20
	}
	if c.clock == nil {
		c.clock = heal.SystemClock{}
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	return c, nil
}

// Quote is the answer of GET /quote. D and DP are nil when Finnhub sends
// null.
type Quote struct {
	C  float64  `json:"c"`  // current price
	D  *float64 `json:"d"`  // change, c - pc
	DP *float64 `json:"dp"` // percent change
	H  float64  `json:"h"`  // high of the day
	L  float64  `json:"l"`  // low of the day
	O  float64  `json:"o"`  // open of the day
	PC float64  `json:"pc"` // previous close
	T  int64    `json:"t"`  // last trade, Unix seconds
}

// Time is T as a time.
func (q *Quote) Time() time.Time { return time.Unix(q.T, 0).UTC() }

// Quote returns the current quote of symbol. A quote of all zeros (an
// unknown symbol) is an error for which errors.Is(err, ErrSymbolNotFound),
// marked permanent.
func (c *Client) Quote(ctx context.Context, symbol string) (*Quote, error) {
	var q struct {
		C, H, L, O, PC *float64
		D              *float64 `json:"d"`
		DP             *float64 `json:"dp"`
		T              *int64   `json:"t"`
	}
	if err := c.get(ctx, "/quote", symbol, url.Values{"symbol": {symbol}}, &q); err != nil {
		return nil, err
	}
	if q.C == nil || q.PC == nil || q.T == nil {
		return nil, fmt.Errorf("finnhub: /quote %s: %w: c, pc or t missing", symbol, ErrMalformed)
	}
	out := &Quote{C: *q.C, D: q.D, DP: q.DP, PC: *q.PC, T: *q.T}
	for _, f := range []struct {
		dst *float64
		src *float64
	}{{&out.H, q.H}, {&out.L, q.L}, {&out.O, q.O}} {
		if f.src != nil {
			*f.dst = *f.src
		}
	}
	if out.C == 0 && out.PC == 0 && out.T == 0 {
		return nil, heal.Permanent(fmt.Errorf("finnhub: /quote %s: %w", symbol, ErrSymbolNotFound))
	}
	return out, nil
}

// Candles is the answer of GET /stock/candle: parallel arrays, one element
// per bar, T the bars' start times in Unix seconds.
type Candles struct {
	C, H, L, O []float64
	T          []int64
	V          []float64 // volume; integral in practice, a number in the spec
}

// Len is the number of bars.
func (cs *Candles) Len() int { return len(cs.T) }

// Candles returns the bars of symbol at resolution ("1" for minutes)
// starting in [from, to] (Finnhub's bounds, Unix seconds, both inclusive).
// When Finnhub has none it returns an error for which
// errors.Is(err, heal.ErrNoData).
func (c *Client) Candles(ctx context.Context, symbol, resolution string, from, to time.Time) (*Candles, error) {
	var r struct {
		C, H, L, O, V []float64
		T             []int64
		S             *string
	}
	q := url.Values{"symbol": {symbol}, "resolution": {resolution},
		"from": {strconv.FormatInt(from.Unix(), 10)}, "to": {strconv.FormatInt(to.Unix(), 10)}}
	if err := c.get(ctx, "/stock/candle", symbol, q, &r); err != nil {
		return nil, err
	}
	if r.S == nil {
		return nil, fmt.Errorf("finnhub: /stock/candle %s: %w: no status field s", symbol, ErrMalformed)
	}
	switch *r.S {
	case "no_data":
		return nil, fmt.Errorf("finnhub: /stock/candle %s %s..%s: %w", symbol,
			from.UTC().Format(time.RFC3339), to.UTC().Format(time.RFC3339), heal.ErrNoData)
	case "ok":
	default:
		return nil, fmt.Errorf("finnhub: /stock/candle %s: %w: status s=%q", symbol, ErrMalformed, *r.S)
	}
	n := len(r.T)
	for _, a := range []struct {
		name string
		n    int
	}{{"c", len(r.C)}, {"h", len(r.H)}, {"l", len(r.L)}, {"o", len(r.O)}, {"v", len(r.V)}} {
		if a.n != n {
			return nil, fmt.Errorf("finnhub: /stock/candle %s: %w: %d times but %d values in %q", symbol, ErrMalformed, n, a.n, a.name)
		}
	}
	return &Candles{C: r.C, H: r.H, L: r.L, O: r.O, T: r.T, V: r.V}, nil
}

// get calls GET base+path?q and decodes a JSON 200 answer into v.
func (c *Client) get(ctx context.Context, path, symbol string, q url.Values, v any) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	u := c.base + path + "?" + q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return heal.Permanent(fmt.Errorf("finnhub: %s %s: %w", path, symbol, err))
	}
	tok := c.token
	if c.tokens != nil {
		if tok, err = c.tokens.Token(ctx); err != nil {
			// The provider's errors name the secret, never its value, and
			// are classified (a missing secret is permanent).
			return fmt.Errorf("finnhub: %s %s: api token: %w", path, symbol, err)
		}
	}
	if tok != "" {
		req.Header.Set("X-Finnhub-Token", tok)
	}
	req.Header.Set("Accept", "application/json")
	start := time.Now()
	resp, err := c.hc.Do(req)
	if err != nil {
		// Transport failures (timeouts, resets, refused connections) are
		// retryable; the URL in a *url.Error holds no token.
		if ctx.Err() != nil && errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("finnhub: %s %s: timed out after %s: %w", path, symbol, c.timeout, context.DeadlineExceeded)
		}
		return fmt.Errorf("finnhub: %s %s: %w", path, symbol, c.scrub(err, tok))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, c.maxBody+1))
	c.log.LogAttrs(ctx, slog.LevelDebug, "finnhub call", slog.String("endpoint", path),
		slog.String("symbol", symbol), slog.Int("status", resp.StatusCode), slog.Duration("elapsed", time.Since(start)))
	if err != nil {
		return fmt.Errorf("finnhub: %s %s: reading body: %w", path, symbol, c.scrub(err, tok))
	}
	if int64(len(body)) > c.maxBody {
		return fmt.Errorf("finnhub: %s %s: %w: body larger than %d bytes", path, symbol, ErrMalformed, c.maxBody)
	}
	if resp.StatusCode != http.StatusOK {
		if resp.StatusCode == http.StatusUnauthorized && c.tokens != nil {
			if inv, ok := c.tokens.(interface{ Invalidate() }); ok {
				inv.Invalidate() // a rotated secret is fetched next time
			}
		}
		return c.classify(resp, path, symbol, body, tok)
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != "" && mt != "application/json" {
		return fmt.Errorf("finnhub: %s %s: %w: content type %q: %s", path, symbol, ErrMalformed, mt, excerpt(body, tok))
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("finnhub: %s %s: %w: %v: %s", path, symbol, ErrMalformed, err, excerpt(body, tok))
	}
	if dec.More() {
		return fmt.Errorf("finnhub: %s %s: %w: data after the JSON value", path, symbol, ErrMalformed)
	}
	return nil
}

// classify turns a non-200 answer into an error the engine acts on: 401 and
// 403 (and other 4xx) permanent, 429 with the wait Finnhub asks for, 5xx
// retryable.
func (c *Client) classify(resp *http.Response, path, symbol string, body []byte, tok string) error {
	e := &APIError{Status: resp.StatusCode, Endpoint: path, Symbol: symbol, RateLimit: rateLimit(resp.Header)}
	var eb struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(body, &eb) == nil && eb.Error != "" {
		e.Message = scrubString(eb.Error, tok)
	} else {
		e.Message = excerpt(body, tok)
	}
	switch {
	case resp.StatusCode == http.StatusTooManyRequests:
		return heal.RetryAfter(c.wait(resp.Header, e.RateLimit), e)
	case resp.StatusCode >= 500, resp.StatusCode == http.StatusRequestTimeout:
		return e
	default: // 401, 403, other 4xx: asking again cannot help
		return heal.Permanent(e)
	}
}

// wait is how long a 429 asks to wait: Retry-After (seconds) when sent,
// else until X-Ratelimit-Reset, else until the next minute boundary of the
// clock. It is never less than a second.
func (c *Client) wait(h http.Header, rl RateLimit) time.Duration {
	now := c.clock.Now()
	var d time.Duration
	if s, err := strconv.Atoi(strings.TrimSpace(h.Get("Retry-After"))); err == nil && s >= 0 {
		d = time.Duration(s) * time.Second
	} else if !rl.Reset.IsZero() && rl.Reset.After(now) && rl.Reset.Sub(now) <= time.Hour {
		d = rl.Reset.Sub(now)
	} else {
		d = now.Truncate(time.Minute).Add(time.Minute).Sub(now)
	}
	return max(d, time.Second)
}

func rateLimit(h http.Header) RateLimit {
	var rl RateLimit
	rl.Limit, _ = strconv.Atoi(h.Get("X-Ratelimit-Limit"))
	rl.Remaining, _ = strconv.Atoi(h.Get("X-Ratelimit-Remaining"))
	if s, err := strconv.ParseInt(h.Get("X-Ratelimit-Reset"), 10, 64); err == nil && s > 0 {
		rl.Reset = time.Unix(s, 0).UTC()
	}
	return rl
}

// excerpt is the start of a body for an error message, token removed.
func excerpt(b []byte, tok string) string {
	const n = 120
	s := strings.ToValidUTF8(string(b), "?")
	if len(s) > n {
		s = s[:n] + "…"
	}
	return scrubString(strings.TrimSpace(s), tok)
}

func scrubString(s, tok string) string {
	if tok == "" {
		return s
	}
	return strings.ReplaceAll(s, tok, "[token]")
}

// scrub returns err with the token removed from its message, in case a
// proxy or a server echoed it.
func (c *Client) scrub(err error, tok string) error {
	if tok == "" || !strings.Contains(err.Error(), tok) {
		return err
	}
	return &scrubbed{msg: scrubString(err.Error(), tok), err: err}
}

type scrubbed struct {
	msg string
	err error
}

func (s *scrubbed) Error() string { return s.msg }
func (s *scrubbed) Unwrap() error { return s.err }
