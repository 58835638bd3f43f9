// Package finnhubtest is a fake Finnhub server for tests and offline demos:
// real HTTP (net/http/httptest) on the same paths, parameters, headers, JSON
// and error bodies as https://finnhub.io/api/v1, serving a deterministic
// simulated [Market], with knobs for every fault the real API shows and
// counters that let a test prove a client never exceeded the rate limit.
//
// What it reproduces (see ../../../../shared/research/finnhub-api.md for the
// evidence behind each point):
//
//   - GET /api/v1/quote?symbol= → {"c","d","dp","h","l","o","pc","t"} with
//     keys in alphabetical order; an unknown symbol gets HTTP 200 with
//     {"c":0,"d":null,"dp":null,"h":0,"l":0,"o":0,"pc":0,"t":0}.
//   - GET /api/v1/stock/candle?symbol=&resolution=1&from=&to= →
//     {"c","h","l","o","s","t","v"}, bars with from <= t <= to (both ends
//     inclusive; only completed minutes, at most 31 days from from), or
//     {"s":"no_data"} when there are none or the symbol is unknown.
//   - The token from the X-Finnhub-Token header, else the token query
//     parameter: missing → 401 {"error":"Please use an API key."}, unknown
//     → 401 {"error":"Invalid API key."}, a key without the premium candle
//     endpoint → 403 {"error":"You don't have access to this resource."}.
//   - A fixed per-minute window per token (default 60 calls) and a
//     per-second one (default 30), answering 429 {"error":"API limit
//     reached. Please try again later. Remaining Limit: 0"}; every
//     response carries X-Ratelimit-Limit, X-Ratelimit-Remaining and
//     X-Ratelimit-Reset (epoch seconds at the end of the current minute).
//
// Parameters the real API leaves undocumented (a missing symbol, a bad
// resolution) get 422 with an {"error":...} body; only resolution 1 is
// simulated. Time comes from the injected heal.Clock, so an accelerated
// clock runs a trading day in seconds.
package finnhubtest

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/selfheal/heal"
)

// DefaultSymbols are the eleven US stocks the example polls.
var DefaultSymbols = []string{"AAPL", "MSFT", "AMZN", "GOOGL", "META", "TSLA", "NVDA", "JPM", "V", "WMT", "DIS"}

// CryptoSymbol is a symbol the fake also knows, trading around the clock.
const CryptoSymbol = "BINANCE:BTCUSDT"

// Token is the default token with full (premium) access; FreeToken the
// default token of a free plan, which gets 403 on candles.
const (
	Token     = "fake-premium-token"
	FreeToken = "fake-free-token"
)

// The error bodies Finnhub sends.
const (
	MsgNoKey      = "Please use an API key."
	MsgInvalidKey = "Invalid API key."
	MsgNoAccess   = "You don't have access to this resource."
	MsgLimit      = "API limit reached. Please try again later. Remaining Limit: 0"
)

// Options configures a [Server]. A nil *Options or a zero field means the
// default beside it.
type Options struct {
	// Clock is the server's "now": it decides which bars exist, the quote
	// lag and the rate-limit windows. nil: the wall clock.
	Clock heal.Clock
	// Seed drives the market and the fault dice. 0 is a valid seed.
	Seed int64
	// Symbols the server knows. nil: DefaultSymbols and CryptoSymbol.
	Symbols []string
	// Tokens with full access. nil: {Token}.
	Tokens []string
	// FreeTokens are valid tokens whose plan lacks /stock/candle. nil: {FreeToken}.
	FreeTokens []string
	// PerMinute is the number of calls a token may make in one clock
	// minute (a fixed window). 0: 60; <0: unlimited.
	PerMinute int
	// PerSecond is the same per clock second. 0: 30; <0: unlimited.
	PerSecond int
	// Faults are injected from the start; see [Server.SetFaults].
	Faults Faults
}

// Faults are the misbehaviours the server injects. Rates are probabilities
// per request, drawn from a generator seeded by Options.Seed.
type Faults struct {
	// Status maps an HTTP status (500, 502, 503, 429, ...) to the rate
	// of requests answered with it.
	Status map[int]float64
	// RetryAfter, if positive, is sent as a Retry-After header (whole
	// seconds) with injected 429s.
	RetryAfter time.Duration
	// Latency is real (wall-clock) time waited before answering.
	Latency time.Duration
	// Malformed is the rate of 200 answers whose body is not JSON.
	Malformed float64
	// Truncated is the rate of 200 answers cut in the middle of the JSON.
	Truncated float64
	// Unequal is the rate of candle answers whose arrays differ in length.
	Unequal float64
	// ZeroQuote is the rate of quotes of known symbols answered as for an
	// unknown symbol (all zeros), as Finnhub did under load in 2020.
	ZeroQuote float64
	// NoData are windows: a candle request overlapping one is answered
	// {"s":"no_data"}.
	NoData []heal.Window
	// NoDataRate is the rate of candle requests answered no_data.
	NoDataRate float64
	// Forbidden are symbols whose candle requests are answered 403, as
	// for a plan without their exchange: their gaps cannot be repaired.
	Forbidden []string
}

// Counters are what the server saw. Calls include every request, answered
// or refused.
type Counters struct {
	Calls        map[string]int // by path: "/quote", "/stock/candle"
	Status       map[int]int    // answers by HTTP status
	RateLimited  int            // 429s answered because a token exceeded its limit
	Injected     int            // faults injected (statuses, bodies, no_data, zero quotes)
	TokenInQuery int            // requests that carried the token in the URL
	// MaxPerMinute and MaxPerSecond are the most calls one token made in
	// any 60-second (1-second) span of clock time, sliding, refused calls
	// included. A client that respects a limit of N per minute keeps
	// MaxPerMinute <= N.
	MaxPerMinute, MaxPerSecond int
}

// Server is a running fake. Close it when done.
type Server struct {
	// URL is the API base, e.g. http://127.0.0.1:4321/api/v1: pass it as
	// the client's base URL.
	URL string
	// Market is the simulated truth the server answers from.
	Market *Market

	srv   *httptest.Server
	clock heal.Clock
	known map[string]bool
	full  map[string]bool
	free  map[string]bool
	perM  int
	perS  int

	mu       sync.Mutex
	faults   Faults
	rng      *rand.Rand
	next     []int // statuses forced on the next requests
	nextWait time.Duration
	c        Counters
	arrivals map[string][]time.Time // per token, clock time
	minute   map[string]window      // fixed windows per token
	second   map[string]window
}

type window struct {
	at int64
	n  int
}

// NewServer starts a fake server.
func NewServer(opts *Options) *Server {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.Clock == nil {
		o.Clock = heal.SystemClock{}
	}
	if o.Symbols == nil {
		o.Symbols = append(append([]string(nil), DefaultSymbols...), CryptoSymbol)
	}
	if o.Tokens == nil {
		o.Tokens = []string{Token}
	}
	if o.FreeTokens == nil {
		o.FreeTokens = []string{FreeToken}
	}
	if o.PerMinute == 0 {
		o.PerMinute = 60
	}
	if o.PerSecond == 0 {
		o.PerSecond = 30
	}
	s := &Server{
		Market: NewMarket(o.Seed),
		clock:  o.Clock,
		known:  set(o.Symbols),
		full:   set(o.Tokens),
		free:   set(o.FreeTokens),
		perM:   o.PerMinute,
		perS:   o.PerSecond,
		faults: o.Faults,
		rng:    rand.New(rand.NewPCG(uint64(o.Seed), 0x5eed)),
		c:      Counters{Calls: map[string]int{}, Status: map[int]int{}},

		arrivals: map[string][]time.Time{},
		minute:   map[string]window{},
		second:   map[string]window{},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/api/v1/quote", s.quote)
	mux.HandleFunc("/api/v1/stock/candle", s.candle)
	s.srv = httptest.NewServer(mux)
	s.URL = s.srv.URL + "/api/v1"
	return s
}

func set(xs []string) map[string]bool {
	m := make(map[string]bool, len(xs))
	for _, x := range xs {
		m[x] = true
	}
	return m
}

// Close shuts the server down.
func (s *Server) Close() { s.srv.Close() }

// Client returns an *http.Client configured for the server.
func (s *Server) Client() *http.Client { return s.srv.Client() }

// SetFaults replaces the injected faults; it may be called while requests
// are in flight.
func (s *Server) SetFaults(f Faults) {
	s.mu.Lock()
	s.faults = f
	s.mu.Unlock()
}

// FailNext makes the next n authenticated requests answer status (for
// example a burst of 429s), with a Retry-After header of retryAfter when it
// is positive.
func (s *Server) FailNext(n, status int, retryAfter time.Duration) {
	s.mu.Lock()
	for i := 0; i < n; i++ {
		s.next = append(s.next, status)
	}
	s.nextWait = retryAfter
	s.mu.Unlock()
}

// Counters returns a copy of the counters.
func (s *Server) Counters() Counters {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.c
	c.Calls = make(map[string]int, len(s.c.Calls))
	for k, v := range s.c.Calls {
		c.Calls[k] = v
	}
	c.Status = make(map[int]int, len(s.c.Status))
	for k, v := range s.c.Status {
		c.Status[k] = v
	}
	for _, ts := range s.arrivals {
		sorted := append([]time.Time(nil), ts...)
		sort.Slice(sorted, func(i, j int) bool { return sorted[i].Before(sorted[j]) })
		c.MaxPerMinute = max(c.MaxPerMinute, maxIn(sorted, time.Minute))
		c.MaxPerSecond = max(c.MaxPerSecond, maxIn(sorted, time.Second))
	}
	return c
}

// maxIn is the largest number of sorted instants within any span of d
// (half-open: [t, t+d)).
func maxIn(ts []time.Time, d time.Duration) int {
	best, j := 0, 0
	for i := range ts {
		for ts[i].Sub(ts[j]) >= d {
			j++
		}
		best = max(best, i-j+1)
	}
	return best
}

// ResetCounters zeroes the counters.
func (s *Server) ResetCounters() {
	s.mu.Lock()
	s.c = Counters{Calls: map[string]int{}, Status: map[int]int{}}
	s.arrivals = map[string][]time.Time{}
	s.mu.Unlock()
}

type errorBody struct {
	Error string `json:"error"`
}

// admit authenticates r, applies the rate limit and the forced or random
// status faults, sets the rate-limit headers and reports whether to go on.
// It answers the request itself when not.
func (s *Server) admit(w http.ResponseWriter, r *http.Request, path string, premium bool) (Faults, bool) {
	now := s.clock.Now()
	token := r.Header.Get("X-Finnhub-Token")
	inQuery := r.URL.Query().Get("token")
	if token == "" {
		token = inQuery
	}

	s.mu.Lock()
	f := s.faults
	s.c.Calls[path]++
	if inQuery != "" {
		s.c.TokenInQuery++
	}
	authed := s.full[token] || s.free[token]
	remaining, reset := s.perM, (now.Unix()/60+1)*60
	limited := false
	if authed {
		s.arrivals[token] = append(s.arrivals[token], now)
		m := s.minute[token]
		if m.at != now.Unix()/60 {
			m = window{at: now.Unix() / 60}
		}
		m.n++
		s.minute[token] = m
		sec := s.second[token]
		if sec.at != now.Unix() {
			sec = window{at: now.Unix()}
		}
		sec.n++
		s.second[token] = sec
		limited = s.perM > 0 && m.n > s.perM || s.perS > 0 && sec.n > s.perS
		remaining = max(0, s.perM-m.n)
	}
	forced, forcedWait := 0, time.Duration(0)
	if authed && !limited && len(s.next) > 0 {
		forced, forcedWait = s.next[0], s.nextWait
		s.next = s.next[1:]
	}
	if authed && !limited && forced == 0 {
		// Roll the status dice in a fixed order so a seed replays.
		codes := make([]int, 0, len(f.Status))
		for code := range f.Status {
			codes = append(codes, code)
		}
		sort.Ints(codes)
		for _, code := range codes {
			if s.rng.Float64() < f.Status[code] {
				forced, forcedWait = code, f.RetryAfter
				break
			}
		}
	}
	s.mu.Unlock()

	if f.Latency > 0 {
		select {
		case <-time.After(f.Latency):
		case <-r.Context().Done():
			return f, false
		}
	}
	h := w.Header()
	if s.perM > 0 {
		h.Set("X-Ratelimit-Limit", strconv.Itoa(s.perM))
		h.Set("X-Ratelimit-Remaining", strconv.Itoa(remaining))
		h.Set("X-Ratelimit-Reset", strconv.FormatInt(reset, 10))
	}
	switch {
	case r.Method != http.MethodGet:
		s.fail(w, http.StatusMethodNotAllowed, "Method not allowed.")
	case token == "":
		s.fail(w, http.StatusUnauthorized, MsgNoKey)
	case !authed:
		s.fail(w, http.StatusUnauthorized, MsgInvalidKey)
	case limited:
		s.mu.Lock()
		s.c.RateLimited++
		s.mu.Unlock()
		s.fail(w, http.StatusTooManyRequests, MsgLimit)
	case forced != 0:
		s.mu.Lock()
		s.c.Injected++
		s.mu.Unlock()
		if forced == http.StatusTooManyRequests && forcedWait > 0 {
			h.Set("Retry-After", strconv.Itoa(int(math.Ceil(forcedWait.Seconds()))))
		}
		msg := http.StatusText(forced)
		if forced == http.StatusTooManyRequests {
			msg = MsgLimit
		}
		s.fail(w, forced, msg)
	case premium && !s.full[token]:
		s.fail(w, http.StatusForbidden, MsgNoAccess)
	default:
		return f, true
	}
	return f, false
}

func (s *Server) count(status int) {
	s.mu.Lock()
	s.c.Status[status]++
	s.mu.Unlock()
}

func (s *Server) fail(w http.ResponseWriter, status int, msg string) {
	s.count(status)
	b, _ := json.Marshal(errorBody{msg})
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	w.Write(b)
}

// roll reports whether a fault of rate p happens.
func (s *Server) roll(p float64) bool {
	if p <= 0 {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.rng.Float64() < p {
		s.c.Injected++
		return true
	}
	return false
}

// ok writes v as a 200 JSON body, or a malformed or truncated one when the
// dice say so.
func (s *Server) ok(w http.ResponseWriter, f Faults, v any) {
	b, _ := json.Marshal(v)
	switch {
	case s.roll(f.Malformed):
		b = []byte("<html><body><h1>502 Bad Gateway</h1></body></html>")
	case s.roll(f.Truncated):
		b = b[:len(b)/2]
	}
	s.count(http.StatusOK)
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	w.Write(b)
}

// quoteBody has Finnhub's keys in Finnhub's (alphabetical) order; d and dp
// are null for an unknown symbol.
type quoteBody struct {
	C  float64  `json:"c"`
	D  *float64 `json:"d"`
	DP *float64 `json:"dp"`
	H  float64  `json:"h"`
	L  float64  `json:"l"`
	O  float64  `json:"o"`
	PC float64  `json:"pc"`
	T  int64    `json:"t"`
}

func (s *Server) quote(w http.ResponseWriter, r *http.Request) {
	f, ok := s.admit(w, r, "/quote", false)
	if !ok {
		return
	}
	sym := r.URL.Query().Get("symbol")
	if sym == "" {
		s.fail(w, http.StatusUnprocessableEntity, "Symbol is required.")
		return
	}
	var body quoteBody
	if s.known[sym] && !s.roll(f.ZeroQuote) {
		if q, ok := s.Market.QuoteAt(sym, s.clock.Now()); ok {
			d, dp := q.D, q.DP
			body = quoteBody{C: q.C, D: &d, DP: &dp, H: q.H, L: q.L, O: q.O, PC: q.PC, T: q.T.Unix()}
		}
	}
	s.ok(w, f, body)
}

// candleBody has Finnhub's keys in Finnhub's order; a no_data answer holds
// only s.
type candleBody struct {
	C []float64 `json:"c,omitempty"`
	H []float64 `json:"h,omitempty"`
	L []float64 `json:"l,omitempty"`
	O []float64 `json:"o,omitempty"`
	S string    `json:"s"`
	T []int64   `json:"t,omitempty"`
	V []int64   `json:"v,omitempty"`
}

func (s *Server) candle(w http.ResponseWriter, r *http.Request) {
	f, ok := s.admit(w, r, "/stock/candle", true)
	if !ok {
		return
	}
	q := r.URL.Query()
	sym := q.Get("symbol")
	from, err1 := strconv.ParseInt(q.Get("from"), 10, 64)
	to, err2 := strconv.ParseInt(q.Get("to"), 10, 64)
	switch {
	case sym == "":
		s.fail(w, http.StatusUnprocessableEntity, "Symbol is required.")
		return
	case q.Get("resolution") != "1":
		s.fail(w, http.StatusUnprocessableEntity, fmt.Sprintf("Unsupported resolution %q (the fake serves resolution=1).", q.Get("resolution")))
		return
	case err1 != nil || err2 != nil || to < from:
		s.fail(w, http.StatusUnprocessableEntity, "Wrong from or to.")
		return
	}
	for _, fs := range f.Forbidden {
		if fs == sym {
			s.fail(w, http.StatusForbidden, "You don't have access to this resource.")
			return
		}
	}
	start, end := time.Unix(from, 0).UTC(), time.Unix(to, 0).UTC().Add(time.Second) // to is inclusive
	if lim := start.Add(31 * 24 * time.Hour); end.After(lim) {
		end = lim // only one month of intraday per call
	}
	if done := s.clock.Now().Add(-time.Minute).Truncate(time.Second).Add(time.Second); end.After(done) {
		end = done // only completed minutes
	}
	noData := !s.known[sym] || s.roll(f.NoDataRate)
	for _, nd := range f.NoData {
		if nd.Overlaps(heal.Window{Start: start, End: end}) {
			noData = true
		}
	}
	var body candleBody
	if !noData {
		for _, b := range s.Market.Bars(sym, start, end) {
			body.C = append(body.C, b.C)
			body.H = append(body.H, b.H)
			body.L = append(body.L, b.L)
			body.O = append(body.O, b.O)
			body.T = append(body.T, b.T.Unix())
			body.V = append(body.V, b.V)
		}
	}
	if len(body.T) == 0 {
		s.ok(w, f, candleBody{S: "no_data"})
		return
	}
	body.S = "ok"
	if s.roll(f.Unequal) {
		body.V = body.V[:len(body.V)-1]
	}
	s.ok(w, f, body)
}
