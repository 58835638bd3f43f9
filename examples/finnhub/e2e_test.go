package main

import (
	"context"
	"io"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"

	"github.com/selfheal/heal"
	"github.com/selfheal/heal/examples/finnhub/finnhub"
	"github.com/selfheal/heal/examples/finnhub/finnhubtest"
	"github.com/selfheal/heal/internal/awstest"
)

// simulateForTest runs the example's pipeline in-process, quietly.
func simulateForTest(t *testing.T, set func(*config), args ...string) *run {
	t.Helper()
	cfg, err := parseFlags(append([]string{"-lake", t.TempDir()}, args...), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Quiet = true
	if set != nil {
		set(&cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	r, err := simulate(ctx, cfg, io.Discard)
	if r != nil {
		t.Cleanup(r.Close)
	}
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestEndToEnd runs a whole simulated trading day with the glitch on and
// checks the outcome against the fake market's truth, not the engine's own
// account of itself.
func TestEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("simulates a trading day")
	}
	r := simulateForTest(t, nil, "-day", "2025-03-04", "-speed", "3000", "-seed", "7")
	ctx := context.Background()
	d := r.Days[0]
	keys := r.cfg.Symbols
	session := heal.NewWindow(d.Open, d.Close)
	t.Logf("wall %s, stats %+v", r.Wall, d.Engine.Stats())

	// The glitch dropped one symbol a minute, and only those were not
	// polled, save slots a very busy machine made the engine skip (the
	// clock waits for the poller, but only up to three real seconds).
	dropped, skipped := 0, 0
	for m := d.Open; m.Before(d.Close); m = m.Add(time.Minute) {
		gone := d.Glitch.Dropped(m)
		for _, k := range keys {
			live := d.Rec.Live(k, m)
			if live && contains(gone, k) {
				t.Fatalf("%s %s: polled, but dropped by the glitch", k, m)
			}
			if !live && !contains(gone, k) {
				skipped++
			}
		}
		dropped += len(gone)
	}
	// Under the race detector on a shared machine a tick can take seconds;
	// the holes it leaves are healed like the glitch's and checked below.
	if dropped != 390 || skipped > 390*len(keys)/2 {
		t.Errorf("glitch dropped %d slots, want 390; %d more not polled", dropped, skipped)
	}
	if skipped > 0 {
		t.Logf("%d slots skipped by a late engine", skipped)
	}
	// Complete, per symbol and hour, except minutes the market truly had no
	// trade in: exactly those are confirmed empty. No duplicates.
	sts, err := d.Engine.Status(ctx, session, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if len(sts) != len(keys)*7 {
		t.Fatalf("%d statuses", len(sts))
	}
	totalEmpty, totalRepaired := 0, 0
	for _, s := range sts {
		wantEmpty, wantRepaired := 0, 0
		for m := s.Window.Start; m.Before(s.Window.End); m = m.Add(time.Minute) {
			if !session.Contains(m) || d.Rec.Live(s.Key, m) {
				continue
			}
			if _, ok := d.Server.Market.Bar(s.Key, m); ok {
				wantRepaired++
			} else {
				wantEmpty++
			}
		}
		if s.Missing() != 0 || s.Unrepairable != 0 || s.Duplicates != 0 || s.Empty != wantEmpty || s.Repaired != wantRepaired {
			t.Errorf("%s %s: %+v (missing %d), want %d repaired and %d empty", s.Key, s.Window.Start.Format("15:04"), s, s.Missing(), wantRepaired, wantEmpty)
		}
		totalEmpty += s.Empty
		totalRepaired += s.Repaired
	}
	if totalRepaired+totalEmpty != dropped+skipped || totalEmpty == 0 {
		t.Errorf("repaired %d + empty %d, want %d with some empty", totalRepaired, totalEmpty, dropped+skipped)
	}
	dups := int64(0)
	if err := r.Lake.Inventory(ctx, r.Quotes, heal.Query{Keys: keys}, func(p heal.PartitionInfo) error {
		dups += p.Duplicates()
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if dups != 0 {
		t.Errorf("%d duplicate (symbol, minute) rows", dups)
	}

	// Repaired rows hold the market's bars; hourly bars equal bars
	// recomputed from the raw minutes.
	bars := readBars(t, r)
	for _, k := range keys {
		rows := readQuotes(t, r, k, session)
		for m, q := range rows {
			if q.origin != finnhub.OriginRepaired {
				continue
			}
			b, ok := d.Server.Market.Bar(k, m)
			if !ok || b.C != q.price || d.Rec.Live(k, m) {
				t.Fatalf("%s %s: repaired price %v, market bar %+v (exists %v)", k, m, q.price, b, ok)
			}
		}
		for h := d.Open.Truncate(time.Hour); h.Before(d.Close); h = h.Add(time.Hour) {
			want := recomputeBar(r, k, heal.NewWindow(h, h.Add(time.Hour)), rows)
			got, ok := bars[k][h]
			if !ok {
				t.Errorf("%s %s: no hourly bar", k, h.Format("15:04"))
				continue
			}
			if got != want {
				t.Errorf("%s %s: bar %+v, recomputed %+v", k, h.Format("15:04"), got, want)
			}
		}
	}

	// Candle calls: what coalescing predicts. Each audit asks, per symbol
	// with at least one missing minute in its window, one request covering
	// [first missing, last missing + 1m); a minute is missing in the first
	// audit whose window holds it, when no live poll filled it (later
	// audits find it repaired or confirmed empty).
	want := 0
	var seen []heal.Window
	for _, w := range d.Audits {
		for _, k := range keys {
			for _, e := range r.Rule.Expected(k, w, time.Minute) {
				hit := false
				for m := e.Start; m.Before(e.End) && !hit; m = m.Add(time.Minute) {
					hit = !d.Rec.Live(k, m) && !covered(seen, m)
				}
				if hit {
					want++
					break
				}
			}
		}
		seen = append(seen, w)
	}
	s := d.Engine.Stats()
	c := d.Server.Counters()
	if int(s.RepairCalls) != want || c.Calls["/stock/candle"] != want {
		t.Errorf("candle calls: engine %d, fake %d; coalescing predicts %d over %d audits", s.RepairCalls, c.Calls["/stock/candle"], want, len(d.Audits))
	}
	if want < 70 || want > len(keys)*7 {
		t.Errorf("predicted %d candle calls: about one per symbol per hour expected", want)
	}

	// The rate limit was never exceeded, as the fake counted calls.
	if c.RateLimited != 0 || c.MaxPerMinute > 60 || c.MaxPerSecond > 30 {
		t.Errorf("fake counters %+v", c)
	}
	if n := d.Rec.MaxIn(time.Minute); n > 60 {
		t.Errorf("%d source calls in one minute", n)
	}
	if s.FetchErrors != 0 || s.Alarms != 0 {
		t.Errorf("stats %+v", s)
	}

	// The report prints and adds up.
	var out strings.Builder
	if err := r.report(ctx, &out); err != nil {
		t.Fatal(err)
	}
	before := pct(4290-dropped-skipped, 4290)
	if !strings.Contains(out.String(), "before healing the session was "+before+" complete, after it 100.0%") {
		t.Errorf("report:\n%s", out.String())
	}
}

// TestTightRateLimit runs a morning with a per-minute limit of 20 calls, 10
// of which live polling takes, and server errors: repairs must queue behind
// the limit, and errors are retried until everything heals. The source
// declares 20 a minute; the fake enforces 21, a margin for the scheduling
// jitter of an accelerated clock (a millisecond of real time is 0.4
// simulated seconds here), and must never refuse a call.
func TestTightRateLimit(t *testing.T) {
	if testing.Short() {
		t.Skip("simulates a morning")
	}
	r := simulateForTest(t, func(c *config) { c.serverPerMinute = 21 },
		"-day", "2025-03-05", "-until", "11:00", "-speed", "400", "-per-minute", "20", "-fault-rate", "0.03")
	d := r.Days[0]
	c := d.Server.Counters()
	s := d.Engine.Stats()
	t.Logf("wall %s, stats %+v, fake %+v", r.Wall, s, c)
	if c.RateLimited != 0 || c.MaxPerSecond > 30 {
		t.Errorf("fake refused %d calls for the rate limit; counters %+v", c.RateLimited, c)
	}
	// Calls are stamped when the source is entered, a little after the
	// engine's limiter let them go: allow two simulated seconds of skew.
	if n := d.Rec.MaxIn(58 * time.Second); n > 20 {
		t.Errorf("%d source calls started within 58s, limit 20 a minute", n)
	}
	if busiest := d.Rec.MaxIn(time.Minute); busiest < 18 {
		t.Errorf("busiest minute held %d calls: the limit was not exercised", busiest)
	}
	if c.Injected == 0 || s.FetchErrors == 0 {
		t.Errorf("no fault was injected: %+v", c)
	}
	sts, err := d.Engine.Status(context.Background(), heal.NewWindow(d.Open, d.Close), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range sts {
		if st.Missing() != 0 || st.Unrepairable != 0 || st.Duplicates != 0 {
			t.Errorf("%s %s: %+v", st.Key, st.Window.Start.Format("15:04"), st)
		}
	}
}

// TestFreePlanAlarms: with a key whose plan lacks candles, every repair is
// refused with 403, alarmed once per gap episode with that reason, and
// nothing is invented.
func TestFreePlanAlarms(t *testing.T) {
	if testing.Short() {
		t.Skip("simulates a morning")
	}
	r := simulateForTest(t, nil, "-day", "2025-03-05", "-until", "11:00", "-speed", "3000", "-free-plan")
	d := r.Days[0]
	s := d.Engine.Stats()
	alarms := r.alarms.list()
	if len(alarms) == 0 || int64(len(alarms)) != s.Alarms || s.Repaired != 0 {
		t.Fatalf("%d alarms, stats %+v", len(alarms), s)
	}
	for _, a := range alarms {
		if a.Stage != heal.StageRepair || !strings.Contains(a.LastError, "403") || !strings.Contains(a.LastError, "premium") || a.Attempts != 1 {
			t.Errorf("alarm %+v", a)
		}
		if strings.Contains(a.LastError, "fake-free-token") {
			t.Errorf("token in alarm %q", a.LastError)
		}
	}
	// One request per symbol per audit (403 is permanent: no retries).
	if c := d.Server.Counters(); c.Calls["/stock/candle"] != int(s.RepairCalls) || s.RepairCalls > int64(2*len(r.cfg.Symbols)) {
		t.Errorf("candle calls %d, engine %d", c.Calls["/stock/candle"], s.RepairCalls)
	}
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

func covered(ws []heal.Window, t time.Time) bool {
	for _, w := range ws {
		if w.Contains(t) {
			return true
		}
	}
	return false
}

type quoteRow struct {
	price  float64
	origin string
}

func readQuotes(t *testing.T, r *run, key string, w heal.Window) map[time.Time]quoteRow {
	t.Helper()
	rd, err := r.Lake.Scan(context.Background(), r.Quotes, heal.Query{Keys: []string{key}, Window: w})
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Release()
	out := map[time.Time]quoteRow{}
	for rd.Next() {
		rec := rd.Record()
		s := rec.Schema()
		m := rec.Column(s.FieldIndices(finnhub.ColMinute)[0]).(*array.Timestamp)
		p := rec.Column(s.FieldIndices(finnhub.ColPrice)[0]).(*array.Float64)
		o := rec.Column(s.FieldIndices(finnhub.ColOrigin)[0]).(*array.String)
		for i := 0; i < int(rec.NumRows()); i++ {
			tm := m.Value(i).ToTime(arrow.Millisecond)
			if _, dup := out[tm]; dup {
				t.Errorf("%s %s scanned twice", key, tm)
			}
			out[tm] = quoteRow{p.Value(i), o.Value(i)}
		}
	}
	if err := rd.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

type bar struct {
	open, high, low, close     float64
	points, repaired, expected int64
	completeness               float64
}

// recomputeBar is the hourly bar of key computed the plain way.
func recomputeBar(r *run, key string, h heal.Window, rows map[time.Time]quoteRow) bar {
	b := bar{high: math.Inf(-1), low: math.Inf(1)}
	held := 0
	exp := r.Rule.Expected(key, h, time.Minute)
	for m := h.Start; m.Before(h.End); m = m.Add(time.Minute) {
		q, ok := rows[m]
		if ok {
			if b.points == 0 {
				b.open = q.price
			}
			b.close = q.price
			b.high, b.low = math.Max(b.high, q.price), math.Min(b.low, q.price)
			b.points++
			if q.origin == finnhub.OriginRepaired {
				b.repaired++
			}
		}
		if covered(exp, m) {
			b.expected++
			if ok {
				held++
			}
		}
	}
	b.completeness = float64(held) / float64(b.expected)
	return b
}

func readBars(t *testing.T, r *run) map[string]map[time.Time]bar {
	t.Helper()
	rd, err := r.Lake.Scan(context.Background(), r.Bars.Output(), heal.Query{Keys: r.cfg.Symbols})
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Release()
	out := map[string]map[time.Time]bar{}
	for rd.Next() {
		rec := rd.Record()
		col := func(name string) arrow.Array { return rec.Column(rec.Schema().FieldIndices(name)[0]) }
		for i := 0; i < int(rec.NumRows()); i++ {
			k := col("symbol").(*array.String).Value(i)
			h := col("hour").(*array.Timestamp).Value(i).ToTime(arrow.Millisecond)
			f := func(name string) float64 { return col(name).(*array.Float64).Value(i) }
			n := func(name string) int64 { return col(name).(*array.Int64).Value(i) }
			if out[k] == nil {
				out[k] = map[time.Time]bar{}
			}
			out[k][h] = bar{f("open"), f("high"), f("low"), f("close"), n("points"), n("repaired"), n("expected"), f("completeness")}
		}
	}
	if err := rd.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestRealModeSmoke runs the real-API path (wall clock) for two seconds
// against a fake server on the wall clock, with the token read from
// Secrets Manager as -token-secret asks (the original's
// {"token_finnhub": ...} secret, on awstest's in-process Secrets Manager
// fake: no emulator can be installed here).
func TestRealModeSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("runs for seconds")
	}
	srv := finnhubtest.NewServer(nil)
	defer srv.Close()
	sm := awstest.NewSecretsManager(t, map[string]string{"dev/token/finnhub": `{"token_finnhub":"` + finnhubtest.Token + `"}`})
	for k, v := range map[string]string{
		"AWS_ACCESS_KEY_ID": "heal-test", "AWS_SECRET_ACCESS_KEY": "heal-test-not-a-secret", "AWS_REGION": awstest.Region,
		"AWS_ENDPOINT_URL_SECRETS_MANAGER": sm.URL, "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
		"AWS_EC2_METADATA_DISABLED": "true", "FINNHUB_TOKEN": "",
	} {
		t.Setenv(k, v)
	}
	cfg, err := parseFlags([]string{"-lake", t.TempDir(), "-base-url", srv.URL, "-duration", "2s",
		"-token-secret", "dev/token/finnhub", "-token-key", "token_finnhub"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if cfg.Token, err = tokenProvider(ctx, cfg); err != nil || cfg.Token == nil {
		t.Fatalf("tokenProvider: %v, %v", cfg.Token, err)
	}
	var out strings.Builder
	if err := runReal(ctx, cfg, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "source calls: live") || strings.Contains(out.String(), finnhubtest.Token) {
		t.Errorf("output:\n%s", out.String())
	}
	// Two seconds may hold no poll (they run on the minute), so the token
	// the run would send is checked directly; the client sending it is
	// finnhub's TestTokenProvider.
	if c := srv.Counters(); c.Status[401] > 0 {
		t.Fatalf("the fake refused %d calls: the secret's token was not used", c.Status[401])
	}
	if tok, err := cfg.Token.Token(ctx); err != nil || tok != finnhubtest.Token {
		t.Fatalf("token from -token-secret: %v (matches: %v)", err, tok == finnhubtest.Token)
	}
	if n := sm.Calls(); n != 1 {
		t.Fatalf("Secrets Manager was asked %d times, want 1 (the token is cached)", n)
	}
}
