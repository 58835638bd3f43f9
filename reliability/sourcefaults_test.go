package reliability

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/memory"

	"github.com/selfheal/heal"
	"github.com/selfheal/heal/audit"
	"github.com/selfheal/heal/examples/finnhub/finnhub"
	"github.com/selfheal/heal/examples/finnhub/finnhubtest"
	"github.com/selfheal/heal/healtest"
	"github.com/selfheal/heal/sink"
)

// faultProxy stands between the Finnhub client and the fake server. It
// adds the faults the fake cannot make itself (connection resets, answers
// that never come), forces statuses by rule, and logs every exchange with
// the clock time it arrived at, so a test can check rates and Retry-After
// on the wire.
type faultProxy struct {
	srv   *httptest.Server
	rp    *httputil.ReverseProxy
	clock heal.Clock

	mu      sync.Mutex
	arrived int64 // requests that reached the proxy
	rng     *rand.Rand
	reset   float64 // rate of connections reset (RST) without an answer
	timeout float64 // rate of requests never answered (the client times out)
	// force, if set, may answer a request itself with a status (0: pass).
	force func(path, sym string, now time.Time) int
	log   []exchange
}

type exchange struct {
	seq        int64 // order of arrival
	at         time.Time
	path, sym  string
	from, to   string
	status     int           // 0: reset or timed out
	retryAfter time.Duration // Retry-After of the answer
	fault      string        // what was wrong with the exchange; "" for a good answer
	body       []byte
}

func newFaultProxy(t *testing.T, fake *finnhubtest.Server, clock heal.Clock, seed uint64) *faultProxy {
	t.Helper()
	u, err := url.Parse(fake.URL)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = ""
	p := &faultProxy{rp: httputil.NewSingleHostReverseProxy(u), clock: clock, rng: rand.New(rand.NewPCG(seed, 0x9e7))}
	p.srv = httptest.NewServer(p)
	t.Cleanup(p.srv.Close)
	return p
}

// URL is the API base to give the client.
func (p *faultProxy) URL() string { return p.srv.URL + "/api/v1" }

func (p *faultProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	ex := exchange{at: p.clock.Now(), path: strings.TrimPrefix(r.URL.Path, "/api/v1"), sym: q.Get("symbol"), from: q.Get("from"), to: q.Get("to")}
	p.mu.Lock()
	p.arrived++
	ex.seq = p.arrived
	forced := 0
	if p.force != nil {
		forced = p.force(ex.path, ex.sym, ex.at)
	}
	roll := p.rng.Float64()
	p.mu.Unlock()
	switch {
	case forced != 0:
		ex.status, ex.fault = forced, fmt.Sprintf("forced-%d", forced)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(forced)
		fmt.Fprintf(w, `{"error":%q}`, http.StatusText(forced))
	case roll < p.reset:
		ex.fault = "connection-reset"
		if conn, _, err := w.(http.Hijacker).Hijack(); err == nil {
			if tc, ok := conn.(*net.TCPConn); ok {
				tc.SetLinger(0) // close with RST
			}
			conn.Close()
		}
	case roll < p.reset+p.timeout:
		ex.fault = "timeout"
		<-r.Context().Done() // the client gives up; nothing is ever sent
	default:
		rec := httptest.NewRecorder()
		p.rp.ServeHTTP(rec, r)
		ex.status, ex.body = rec.Code, rec.Body.Bytes()
		if s, err := strconv.Atoi(rec.Header().Get("Retry-After")); err == nil {
			ex.retryAfter = time.Duration(s) * time.Second
		}
		ex.fault = classifyAnswer(ex.path, rec.Code, ex.body)
		for k, vs := range rec.Header() {
			w.Header()[k] = vs
		}
		w.WriteHeader(rec.Code)
		w.Write(ex.body)
	}
	p.mu.Lock()
	p.log = append(p.log, ex)
	p.mu.Unlock()
}

// classifyAnswer names what is wrong with an answer of the fake server.
func classifyAnswer(path string, status int, body []byte) string {
	switch {
	case status == http.StatusTooManyRequests:
		return "429"
	case status != http.StatusOK:
		return strconv.Itoa(status)
	case !json.Valid(body):
		if bytes.HasPrefix(body, []byte("<")) {
			return "malformed"
		}
		return "truncated"
	}
	if path == "/quote" {
		var q map[string]any
		json.Unmarshal(body, &q)
		if q["c"] == 0.0 && q["pc"] == 0.0 && q["t"] == 0.0 {
			return "zero-quote"
		}
		return ""
	}
	var c struct{ C, H, L, O, V, T []json.Number }
	json.Unmarshal(body, &c)
	n := len(c.T)
	for _, a := range [][]json.Number{c.C, c.H, c.L, c.O, c.V} {
		if len(a) != n {
			return "unequal-arrays"
		}
	}
	return ""
}

// exchanges returns the log in order of arrival.
func (p *faultProxy) exchanges() []exchange {
	p.mu.Lock()
	log := append([]exchange(nil), p.log...)
	p.mu.Unlock()
	sort.Slice(log, func(i, j int) bool { return log[i].seq < log[j].seq })
	return log
}

// maxIn is the most exchanges in any window of length d (half-open).
func maxIn(log []exchange, d time.Duration) int {
	ts := make([]time.Time, len(log))
	for i, e := range log {
		ts[i] = e.at
	}
	sort.Slice(ts, func(i, j int) bool { return ts[i].Before(ts[j]) })
	best, j := 0, 0
	for i := range ts {
		for ts[i].Sub(ts[j]) >= d {
			j++
		}
		best = max(best, i-j+1)
	}
	return best
}

var fhSymbols = []string{"AAPL", "NVDA", "TSLA"}

// fhLimits are the limits of TestSourceFaults, the fake server's and the
// Source's: tighter than the free plan (60/min, 30/s, 30 days a request)
// so that repairs press against them.
var fhLimits = heal.Limits{MaxWindow: 2 * time.Minute, MaxKeys: 1,
	Rates: []heal.Rate{{Calls: 12, Per: time.Minute}, {Calls: 3, Per: time.Second}}}

// fhOpen is the regular session's open on a Tuesday (EST): 09:30 New York.
var fhOpen = time.Date(2025, 3, 4, 14, 30, 0, 0, time.UTC)

// fhRig is the Finnhub pipeline of the example (the Source, the hourly
// bars, the US equities calendar, a DirStore lake) on a fake server behind
// a fault proxy, on a clock that moves only when the engine waits. With
// Concurrency 1 every source call happens on one goroutine, so the clock
// time a call reaches the server is the time the engine's rate limiter
// let it go: the server's view of the rate is exact.
type fhRig struct {
	t     *testing.T
	ctx   context.Context
	mem   *memory.CheckedAllocator
	clock *stepClock
	fake  *finnhubtest.Server
	px    *faultProxy
	lake  *sink.Lake
	al    *healtest.Alarms
	eng   *heal.Engine
	rule  *audit.Session
}

func newFHRig(t *testing.T, syms []string, faults finnhubtest.Faults, lim *heal.Limits, retry heal.RetryPolicy, reprobe time.Duration) *fhRig {
	t.Helper()
	r := &fhRig{t: t, ctx: context.Background(), mem: memory.NewCheckedAllocator(memory.NewGoAllocator()),
		clock: newStepClock(fhOpen.Add(-time.Minute), 1e12), al: &healtest.Alarms{}, rule: audit.USEquities()}
	t.Cleanup(func() { r.mem.AssertSize(t, 0) })
	limits := finnhub.DefaultLimits()
	if lim != nil {
		limits = *lim
	}
	r.fake = finnhubtest.NewServer(&finnhubtest.Options{Clock: r.clock, Seed: 11, Symbols: syms, Faults: faults,
		PerMinute: limits.Rates[0].Calls, PerSecond: limits.Rates[1].Calls})
	t.Cleanup(r.fake.Close)
	r.px = newFaultProxy(t, r.fake, r.clock, 17)
	client, err := finnhub.NewClient(&finnhub.Options{BaseURL: r.px.URL(), Token: finnhubtest.Token, Clock: r.clock, Timeout: 150 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	src := finnhub.NewSource(client, &finnhub.SourceOptions{Allocator: r.mem, Limits: limits})
	if r.lake, err = sink.OpenDir(t.TempDir(), &sink.Options{Allocator: r.mem}); err != nil {
		t.Fatal(err)
	}
	r.eng, err = heal.New(finnhub.Quotes(), src, r.lake, &heal.Options{
		Keys: syms, Rule: r.rule, Transformers: []heal.Transformer{finnhub.NewBars(r.rule, r.mem)},
		Clock: r.clock, Allocator: r.mem, Alarmer: r.al, Concurrency: 1,
		Lookback: time.Hour, Settle: 2 * time.Minute, Retry: retry, ReprobeAfter: reprobe,
	})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// at moves the clock forward to t (never back: waits may have moved it).
func (r *fhRig) at(t time.Time) {
	if r.clock.Now().Before(t) {
		r.clock.Set(t)
	}
}

// session polls minutes [from, to) of the session live, healing the last
// hour every 15 minutes, as Run would. A minute the clock has passed (a
// heal waited for the rate limit) is skipped, as Run skips it, and left to
// repair.
func (r *fhRig) session(from, to int) {
	r.t.Helper()
	for m := from; m < to; m++ {
		slot := fhOpen.Add(time.Duration(m) * time.Minute)
		r.at(slot.Add(5 * time.Second))
		if r.clock.Now().Before(slot.Add(time.Minute)) {
			if _, err := r.eng.Acquire(r.ctx, slot); err != nil {
				r.t.Fatal(err)
			}
		}
		if (m+1)%15 == 0 {
			if _, err := r.eng.Heal(r.ctx, heal.Window{Start: slot.Add(-time.Hour), End: slot}); err != nil {
				r.t.Fatal(err)
			}
		}
	}
}

// TestSourceFaults runs the Finnhub pipeline through 90 minutes of a
// session while about 30% of the requests fail: 500, 502, 503, 429 with
// Retry-After (the fake server), bodies that are HTML, truncated, candle
// arrays of unequal length, all-zero quotes (the fake), connection resets
// and answers that never come (the proxy). The lake must end complete;
// the wire must show that no minute or second carried more calls than the
// plan allows (12/min and 3/s here, so that repairs press on them) and that every retry after a 429 waited its Retry-After;
// and every stored row must be what the market really traded.
func TestSourceFaults(t *testing.T) {
	r := newFHRig(t, fhSymbols, finnhubtest.Faults{
		Status:     map[int]float64{500: 0.04, 502: 0.04, 503: 0.04, 429: 0.04},
		RetryAfter: 7 * time.Second,
		Malformed:  0.03, Truncated: 0.03, Unequal: 0.15, ZeroQuote: 0.04,
	}, &fhLimits, heal.RetryPolicy{MaxAttempts: 12}, 0)
	r.px.reset, r.px.timeout = 0.04, 0.03
	r.session(0, 90)
	end := fhOpen.Add(90 * time.Minute)
	var rep *heal.CycleReport
	for i := 0; i < 5; i++ { // the last minutes' repairs can need more cycles
		r.at(end.Add(3 * time.Minute))
		var err error
		if rep, err = r.eng.Heal(r.ctx, heal.Window{Start: fhOpen, End: end}); err != nil {
			t.Fatal(err)
		}
		if rep.Missing == 0 {
			break
		}
	}

	// The lake is complete.
	a, err := r.eng.Audit(r.ctx, heal.Window{Start: fhOpen, End: end})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range a.Keys {
		if k.Missing != 0 || k.Expected != 90 {
			t.Errorf("%s: %d of %d expected minutes missing: %v", k.Key, k.Missing, k.Expected, k.Gaps)
		}
	}
	if got := r.al.List(); len(got) != 0 {
		t.Errorf("alarms: %+v", got)
	}

	// The wire: the fault mix, the rate, Retry-After.
	log := r.px.exchanges()
	faults := map[string]int{}
	failed := 0
	for _, e := range log {
		if e.fault != "" {
			faults[e.fault]++
			failed++
		}
	}
	share := float64(failed) / float64(len(log))
	if share < 0.2 || share > 0.4 {
		t.Errorf("%.0f%% of %d requests failed; the test wants about 30%%", 100*share, len(log))
	}
	for _, f := range []string{"500", "502", "503", "429", "malformed", "truncated", "unequal-arrays", "zero-quote", "connection-reset", "timeout"} {
		if faults[f] == 0 {
			t.Errorf("no %s fault was injected (%v); lengthen the run or raise the rate", f, faults)
		}
	}
	c := r.fake.Counters()
	perMin, perSec := fhLimits.Rates[0].Calls, fhLimits.Rates[1].Calls
	if c.RateLimited != 0 || c.MaxPerMinute > perMin || c.MaxPerSecond > perSec {
		t.Errorf("fake server counters %+v: the plan's %d/min and %d/s were exceeded", c, perMin, perSec)
	}
	// On the wire, before the server: every call the engine made, failed
	// ones too, but not the replays Go's http.Transport makes on its own
	// (a GET whose reused connection was reset before any answer is sent
	// again at once; the engine never sees it).
	var calls []exchange
	replays := 0
	for i, e := range log {
		if i > 0 && log[i-1].fault == "connection-reset" && log[i-1].at.Equal(e.at) &&
			log[i-1].path == e.path && log[i-1].sym == e.sym && log[i-1].from == e.from && log[i-1].to == e.to {
			replays++
			continue
		}
		calls = append(calls, e)
	}
	if m, s := maxIn(calls, time.Minute), maxIn(calls, time.Second); m > perMin || s > perSec {
		t.Errorf("the engine made %d calls in a minute and %d in a second (failed ones too); limits %d and %d", m, s, perMin, perSec)
	} else if m < perMin || s < perSec {
		t.Errorf("at most %d calls in a minute, %d in a second: the run never pressed the limits (%d, %d), so it proves nothing", m, s, perMin, perSec)
	}
	honoured, retried := 0, 0
	for i, e := range log {
		if e.status != http.StatusTooManyRequests || e.retryAfter == 0 {
			continue
		}
		for _, n := range log[i+1:] {
			if n.path == e.path && n.sym == e.sym && n.from == e.from && n.to == e.to {
				retried++
				if gap := n.at.Sub(e.at); gap < e.retryAfter {
					t.Errorf("%s %s asked again %s after a 429 with Retry-After %s", e.path, e.sym, gap, e.retryAfter)
				} else {
					honoured++
				}
				break
			}
		}
	}
	if retried == 0 {
		t.Error("no request answered 429 with Retry-After was retried: the check proved nothing")
	}

	// Nothing malformed was stored: every row is what the market traded.
	bad, live, repaired := r.checkRows()
	if bad > 0 {
		t.Errorf("%d stored rows differ from the market", bad)
	}
	t.Logf("reliability: source-faults: requests=%d failed=%d (%.0f%%) by-kind=%v fake-injected=%d transport-replays=%d; engine-calls max-per-minute=%d/%d max-per-second=%d/%d; server saw max-per-minute=%d max-per-second=%d rate-limited=%d; 429-with-retry-after retried=%d honoured=%d; rows live=%d repaired=%d malformed-stored=%d; missing=%d alarms=%d",
		len(log), failed, 100*share, faults, c.Injected, replays, maxIn(calls, time.Minute), perMin, maxIn(calls, time.Second), perSec, c.MaxPerMinute, c.MaxPerSecond, c.RateLimited,
		retried, honoured, live, repaired, bad, rep.Missing, len(r.al.List()))
}

// checkRows compares every stored quote with the market: a live row with
// the quote a poll at its fetch time gets, a repaired row with the minute's
// bar. It returns the rows that differ and the counts of each origin.
func (r *fhRig) checkRows() (bad, live, repaired int) {
	r.t.Helper()
	ds := finnhub.Quotes()
	rd, err := r.lake.Scan(r.ctx, ds, heal.Query{})
	if err != nil {
		r.t.Fatal(err)
	}
	defer rd.Release()
	col := func(rec arrow.Record, name string) arrow.Array { return rec.Column(rec.Schema().FieldIndices(name)[0]) }
	for rd.Next() {
		rec := rd.Record()
		syms := col(rec, finnhub.ColSymbol).(*array.String)
		minutes := col(rec, finnhub.ColMinute).(*array.Timestamp)
		price := col(rec, finnhub.ColPrice).(*array.Float64)
		origin := col(rec, finnhub.ColOrigin).(*array.String)
		fetched := col(rec, finnhub.ColFetchedAt).(*array.Timestamp)
		open := col(rec, finnhub.ColOpen).(*array.Float64)
		vol := col(rec, finnhub.ColVolume).(*array.Int64)
		for i := 0; i < int(rec.NumRows()); i++ {
			sym, minute := syms.Value(i), minutes.Value(i).ToTime(arrow.Millisecond)
			ok := price.Value(i) > 0
			switch origin.Value(i) {
			case finnhub.OriginLive:
				live++
				q, has := r.fake.Market.QuoteAt(sym, fetched.Value(i).ToTime(arrow.Millisecond))
				ok = ok && has && q.C == price.Value(i)
			case finnhub.OriginRepaired:
				repaired++
				b, has := r.fake.Market.Bar(sym, minute)
				ok = ok && has && b.C == price.Value(i) && b.O == open.Value(i) && b.V == vol.Value(i)
			default:
				ok = false
			}
			if !ok {
				bad++
				if bad <= 5 {
					r.t.Errorf("stored %s %s: price %v origin %s does not match the market", sym, minute.Format("15:04"), price.Value(i), origin.Value(i))
				}
			}
		}
	}
	if err := rd.Err(); err != nil {
		r.t.Fatal(err)
	}
	return bad, live, repaired
}

// TestSourceNeverHasData: TSLA's candles always fail (a 5xx, or a 403 as
// for a plan without the endpoint) and two of its live episodes are lost.
// The first episode is cut in two by the audits (its last minutes settle
// after the first heal), as outages usually are. Each episode costs its
// attempt budget per audit that finds a piece of it (one call for the
// permanent 403), raises exactly one alarm, and is recorded unrepairable;
// later cycles make no call for it (no retry storm) until ReprobeAfter,
// when one reprobe request covers both; a failed reprobe raises nothing
// new, and once the history comes back the next reprobe fills the gaps and
// sends one resolved notice per episode.
func TestSourceNeverHasData(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status int
		calls  int // per episode until given up
	}{
		{"always-503", http.StatusServiceUnavailable, 4},
		{"always-403", http.StatusForbidden, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newFHRig(t, []string{"AAPL", "TSLA"}, finnhubtest.Faults{}, nil, heal.RetryPolicy{MaxAttempts: 4}, 2*time.Hour)
			episodes := []heal.Window{
				{Start: fhOpen.Add(10 * time.Minute), End: fhOpen.Add(14 * time.Minute)},
				{Start: fhOpen.Add(40 * time.Minute), End: fhOpen.Add(43 * time.Minute)},
			}
			var historyBack bool
			r.px.force = func(path, sym string, now time.Time) int {
				if sym != "TSLA" {
					return 0
				}
				if path == "/quote" {
					for _, ep := range episodes {
						if ep.Contains(now.Truncate(time.Minute)) {
							return http.StatusServiceUnavailable // the live poll is lost
						}
					}
					return 0
				}
				if historyBack {
					return 0
				}
				return tc.status
			}
			candleCalls := func() int {
				n := 0
				for _, e := range r.px.exchanges() {
					if e.path == "/stock/candle" && e.sym == "TSLA" {
						n++
					}
				}
				return n
			}
			// Heals at :14, :29, :44, :59 (settled up to two minutes
			// before): each episode is found in two pieces, and each piece
			// costs the budget once.
			r.session(0, 60)
			if n := candleCalls(); n != 4*tc.calls {
				t.Errorf("%d candle calls for TSLA over four cycles; want %d per piece of an episode, 4 pieces", n, tc.calls)
			}
			if n := r.al.CountStage(heal.StageRepair, false); n != 2 {
				t.Errorf("%d alarms; want one per episode: %+v", n, r.al.List())
			}
			for _, a := range r.al.List() {
				if a.Key != "TSLA" || a.Attempts != tc.calls || !strings.Contains(a.LastError, strconv.Itoa(tc.status)) {
					t.Errorf("alarm %+v; want TSLA after %d attempts naming HTTP %d", a, tc.calls, tc.status)
				}
			}
			unrep := func() int {
				sts, err := r.eng.Status(r.ctx, heal.Window{Start: fhOpen, End: fhOpen.Add(2 * time.Hour)}, time.Hour)
				if err != nil {
					t.Fatal(err)
				}
				n := 0
				for _, s := range sts {
					n += s.Unrepairable
				}
				return n
			}
			if n := unrep(); n != 7 {
				t.Errorf("Status counts %d unrepairable minutes; want the episodes' 7", n)
			}

			// More cycles before ReprobeAfter: no calls, no alarms.
			before := candleCalls()
			for i := 0; i < 4; i++ {
				r.at(fhOpen.Add(time.Duration(65+10*i) * time.Minute))
				if _, err := r.eng.Heal(r.ctx, heal.Window{Start: fhOpen, End: fhOpen.Add(60 * time.Minute)}); err != nil {
					t.Fatal(err)
				}
			}
			if n := candleCalls() - before; n != 0 {
				t.Errorf("%d candle calls for unrepairable gaps before ReprobeAfter: a retry storm", n)
			}

			// After ReprobeAfter, still failing: one reprobe (the planner
			// covers both episodes with one request), no new alarm.
			r.at(fhOpen.Add(4 * time.Hour))
			before = candleCalls()
			if _, err := r.eng.Heal(r.ctx, heal.Window{Start: fhOpen, End: fhOpen.Add(60 * time.Minute)}); err != nil {
				t.Fatal(err)
			}
			if n := candleCalls() - before; n < 1 || n > 2 {
				t.Errorf("%d reprobe calls; want one request, at most one per episode", n)
			}
			if n := len(r.al.List()); n != 2 {
				t.Errorf("a failed reprobe alarmed again: %+v", r.al.List())
			}

			// The history comes back: the next reprobe heals both episodes.
			historyBack = true
			r.at(fhOpen.Add(6*time.Hour + time.Minute))
			rep, err := r.eng.Heal(r.ctx, heal.Window{Start: fhOpen, End: fhOpen.Add(60 * time.Minute)})
			if err != nil {
				t.Fatal(err)
			}
			if n := r.al.CountStage(heal.StageRepair, true); n != 2 || rep.Resolved != 2 {
				t.Errorf("%d resolved notices (report %d); want one per episode", n, rep.Resolved)
			}
			if n := unrep(); n != 0 {
				t.Errorf("%d minutes still unrepairable after the history came back", n)
			}
			a, err := r.eng.Audit(r.ctx, heal.Window{Start: fhOpen, End: fhOpen.Add(60 * time.Minute)})
			if err != nil {
				t.Fatal(err)
			}
			for _, k := range a.Keys {
				if k.Missing != 0 {
					t.Errorf("%s misses %v after recovery", k.Key, k.Gaps)
				}
			}
			t.Logf("reliability: never-has-data %s: episodes=2 alarms=%d resolved=%d candle-calls=%d (budget %d per piece, 4 pieces, then reprobes)",
				tc.name, r.al.CountStage(heal.StageRepair, false), r.al.CountStage(heal.StageRepair, true), candleCalls(), tc.calls)
		})
	}
}
