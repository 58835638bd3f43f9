// Command finnhub is heal's reference pipeline: it polls a per-minute stock
// quote for eleven symbols, forgets one symbol each minute on purpose (the
// glitch the original pipeline was built with), and lets heal find the
// holes, repair them from one-minute candles, recompute the hourly bars the
// repairs touched, and alarm on what cannot be healed.
//
// With no FINNHUB_TOKEN it simulates a whole trading day against a fake
// Finnhub server in accelerated time (well under a minute) and prints what
// was there before and after healing. With FINNHUB_TOKEN set it polls the
// real API in real time with the same code. Run `go run ./examples/finnhub
// -h` for the flags.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/apache/arrow/go/v17/arrow"

	"github.com/selfheal/heal"
	"github.com/selfheal/heal/alarm"
	"github.com/selfheal/heal/audit"
	"github.com/selfheal/heal/cost"
	"github.com/selfheal/heal/examples/finnhub/finnhub"
	"github.com/selfheal/heal/examples/finnhub/finnhubtest"
	"github.com/selfheal/heal/metrics"
	"github.com/selfheal/heal/secret"
	"github.com/selfheal/heal/sink"
	"github.com/selfheal/heal/source"
)

// config is what the flags say.
type config struct {
	Day        time.Time // first trading day simulated (its date in New York)
	Days       int
	Speed      float64
	Drop       int
	Seed       int64
	Symbols    []string
	Lake       string // a directory or s3://bucket/prefix; "": a new folder under os.TempDir()
	Stream     string // kinesis://NAME: live quotes travel this stream into the lake ("": straight in)
	Alarm      string // alarm.Open URLs (sns://ARN, https://hook), comma-separated ("": printed only)
	Lookback   time.Duration
	AuditEvery time.Duration
	FaultRate  float64       // 5xx answers of the fake server, per request
	FreePlan   bool          // the fake answers candles with 403, as for a free key
	NoHistory  []string      // the fake answers these symbols' candles with 403
	PerMinute  int           // the source's declared per-minute limit, and the fake's
	Until      time.Duration // stop at this New York time of day (0: the close)
	Verbose    bool
	Quiet      bool        // no progress lines (tests)
	Metrics    string      // serve Prometheus metrics here ("": no)
	Prices     cost.Prices // what the cost summary charges

	collector *metrics.Collector // set by main when Metrics is

	serverPerMinute int // the fake's limit when a test sets it apart (0: PerMinute)

	// Real-API mode.
	Token       secret.Provider // FINNHUB_TOKEN or -token-secret
	TokenSecret string          // Secrets Manager secret name or ARN
	TokenKey    string          // JSON key inside it ("": the whole string)
	BaseURL     string
	Duration    time.Duration
}

func main() {
	cfg, err := parseFlags(os.Args[1:], os.Stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if cfg.Token, err = tokenProvider(ctx, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "finnhub:", err)
		os.Exit(1)
	}
	if cfg.Metrics != "" {
		c, stopMetrics, err := serveMetrics(cfg.Metrics, os.Stdout)
		if err != nil {
			fmt.Fprintln(os.Stderr, "finnhub: -metrics:", err)
			os.Exit(1)
		}
		defer stopMetrics()
		cfg.collector = c
	}
	if cfg.Token != nil {
		err = runReal(ctx, cfg, os.Stdout)
	} else {
		var r *run
		r, err = simulate(ctx, cfg, os.Stdout)
		if r != nil {
			if err == nil {
				err = r.report(ctx, os.Stdout)
			}
			r.Close()
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "finnhub:", err)
		os.Exit(1)
	}
}

func parseFlags(args []string, out io.Writer) (config, error) {
	var cfg config
	fs := flag.NewFlagSet("finnhub", flag.ContinueOnError)
	fs.SetOutput(out)
	day := fs.String("day", "", "first trading day to simulate, YYYY-MM-DD (default: the last NYSE trading day before today)")
	fs.IntVar(&cfg.Days, "days", 1, "number of trading days to simulate")
	until := fs.String("until", "", "simulation: stop each day at this whole hour, New York time, e.g. 11:00 (default: the session close)")
	fs.Float64Var(&cfg.Speed, "speed", 2000, "simulated seconds per real second, at most: the simulated clock waits for a poll that takes longer than a minute (2000: a 6.5-hour session in 12s or more)")
	fs.IntVar(&cfg.Drop, "drop", 1, "symbols the glitch skips each minute (0: no glitch)")
	fs.Int64Var(&cfg.Seed, "seed", 1, "seed of the simulated market, the glitch and the injected faults")
	syms := fs.String("symbols", strings.Join(finnhubtest.DefaultSymbols, ","), "comma-separated symbols to poll (a symbol with ':' such as BINANCE:BTCUSDT trades 24/7)")
	fs.StringVar(&cfg.Lake, "lake", "", "the lake: a directory, or s3://BUCKET/PREFIX (add ?use_path_style=true for most local S3 servers) with the standard AWS configuration (default: a new folder under "+os.TempDir()+")")
	fs.StringVar(&cfg.Stream, "stream", "", "kinesis://STREAM: live quotes go to this Kinesis stream, and a consumer in this process lands it in the lake (the original's Firehose)")
	fs.StringVar(&cfg.Alarm, "alarm", "", "also send alarms here: sns://TOPIC-ARN or an https:// webhook (Slack-compatible); several, comma-separated")
	fs.StringVar(&cfg.TokenSecret, "token-secret", "", "real API: read the token from this AWS Secrets Manager secret (name or ARN) instead of FINNHUB_TOKEN")
	fs.StringVar(&cfg.TokenKey, "token-key", "", `real API: the JSON key holding the token inside -token-secret, e.g. "token_finnhub" (default: the whole secret string)`)
	fs.DurationVar(&cfg.Lookback, "lookback", 2*time.Hour, "how far back each audit looks")
	fs.DurationVar(&cfg.AuditEvery, "audit-every", time.Hour, "how often to audit and repair, in simulated (or real) time")
	fs.Float64Var(&cfg.FaultRate, "fault-rate", 0, "simulation: share of fake API calls answered 500, 502 or 503 (retried by heal)")
	fs.BoolVar(&cfg.FreePlan, "free-plan", false, "simulation: act as a free Finnhub key, whose candle requests get 403 (repairs alarm)")
	noHistory := fs.String("no-history", "", "simulation: comma-separated symbols whose candles the fake refuses with 403, as for a plan without their exchange (their gaps alarm)")
	fs.IntVar(&cfg.PerMinute, "per-minute", 60, "API calls allowed per minute, live and repair together (60 on Finnhub's free plan)")
	fs.StringVar(&cfg.BaseURL, "base-url", finnhub.DefaultBaseURL, "real API: the API root")
	fs.DurationVar(&cfg.Duration, "duration", 0, "real API: stop after this long (0: at the session close, or Ctrl-C)")
	fs.BoolVar(&cfg.Verbose, "v", false, "log the engine's work (repairs, retries) to stderr")
	fs.StringVar(&cfg.Metrics, "metrics", "", `serve Prometheus metrics at http://ADDR/metrics, e.g. ":9090" (every interface) or "127.0.0.1:9090" (this machine only)`)
	cfg.Prices = cost.DefaultPrices()
	fs.Var(&cfg.Prices, "price", "prices of the cost summary, name=dollars,...: "+strings.Join(cost.PriceNames(), ", ")+" (put/get/list/delete per 1,000 requests)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), `Usage: go run ./examples/finnhub [flags]

Polls a per-minute quote for each symbol, skips -drop symbols a minute on
purpose, and lets heal audit, repair from one-minute candles, recompute
hourly bars and alarm on what it cannot heal.

Without FINNHUB_TOKEN: simulates -days trading days against a fake Finnhub
server, -speed times faster than real time, and prints before/after tables.
With FINNHUB_TOKEN set, or -token-secret: polls https://finnhub.io in real
time (stock candles are premium: with a free key every repair gets 403 and
alarms).

On AWS, as the original pipeline ran: -lake s3://BUCKET/PREFIX, -stream
kinesis://STREAM, -alarm sns://TOPIC-ARN, -token-secret NAME; credentials and
region come from the standard AWS configuration (environment, shared files,
instance role), and AWS_ENDPOINT_URL_<SERVICE> points a client at a local
server.

Flags:
`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(out, "unexpected arguments: %v\n", fs.Args())
		fs.Usage()
		return cfg, errors.New("unexpected arguments")
	}
	for _, s := range strings.Split(*syms, ",") {
		if s = strings.TrimSpace(s); s != "" {
			cfg.Symbols = append(cfg.Symbols, s)
		}
	}
	for _, s := range strings.Split(*noHistory, ",") {
		if s = strings.TrimSpace(s); s != "" {
			cfg.NoHistory = append(cfg.NoHistory, s)
		}
	}
	if *until != "" {
		u, err := time.Parse("15:04", *until)
		if err == nil && u.Minute() != 0 {
			err = errors.New("want a whole hour, such as 11:00, so the tables cover whole hours")
		}
		if err != nil {
			fmt.Fprintf(out, "-until: %v\n", err)
			return cfg, err
		}
		cfg.Until = time.Duration(u.Hour())*time.Hour + time.Duration(u.Minute())*time.Minute
	}
	us := audit.USEquities()
	if *day == "" {
		cfg.Day = lastTradingDay(us, time.Now())
	} else {
		d, err := time.ParseInLocation("2006-01-02", *day, us.Location)
		if err != nil {
			fmt.Fprintf(out, "-day: %v\n", err)
			return cfg, err
		}
		cfg.Day = d
	}
	switch {
	case len(cfg.Symbols) == 0:
		err := errors.New("-symbols: empty")
		fmt.Fprintln(out, err)
		return cfg, err
	case cfg.Days < 1 || cfg.Speed <= 0 || cfg.PerMinute < 1:
		err := errors.New("-days, -speed and -per-minute must be positive")
		fmt.Fprintln(out, err)
		return cfg, err
	}
	return cfg, nil
}

// lastTradingDay is the last NYSE trading day strictly before now's date
// in New York, at midnight New York time.
func lastTradingDay(us *audit.Session, now time.Time) time.Time {
	n := now.In(us.Location)
	d := time.Date(n.Year(), n.Month(), n.Day(), 12, 0, 0, 0, us.Location)
	for i := 0; i < 15; i++ {
		d = d.AddDate(0, 0, -1)
		if us.IsTradingDay(d) {
			break
		}
	}
	return time.Date(d.Year(), d.Month(), d.Day(), 0, 0, 0, 0, us.Location)
}

// run is one simulation: its lake and, per day, what happened.
type run struct {
	cfg    config
	Lake   *sink.Lake
	Dir    string
	Quotes *heal.Dataset
	Bars   *finnhub.Bars
	Rule   *audit.Session
	Days   []*simDay
	Wall   time.Duration

	alarms  *alarmLog
	alarmer heal.Alarmer // -alarm, or nil
	stream  *stream      // -stream, or nil
}

// simDay is one simulated session.
type simDay struct {
	Open, Close time.Time
	Engine      *heal.Engine
	Server      *finnhubtest.Server
	Glitch      *source.Glitcher
	Rec         *recorder
	Audits      []heal.Window // every audit's window, in order (from the engine's events)
	Final       *heal.CycleReport
	mu          sync.Mutex
}

// Close stops the fake servers and the stream's consumer.
func (r *run) Close() {
	for _, d := range r.Days {
		d.Server.Close()
	}
	if r.stream != nil {
		r.stream.Close()
	}
}

// simulate runs cfg.Days trading days against the fake server and returns
// what it did; the caller prints the report and closes the run.
func simulate(ctx context.Context, cfg config, out io.Writer) (*run, error) {
	start := time.Now()
	r := &run{cfg: cfg, Quotes: finnhub.Quotes(), Rule: audit.USEquities(), alarms: &alarmLog{out: out, quiet: cfg.Quiet}}
	r.Bars = finnhub.NewBars(r.Rule, nil)
	r.alarms.loc = r.Rule.Location
	lake, dir, err := openLake(ctx, cfg.Lake)
	if err != nil {
		return nil, err
	}
	r.Lake, r.Dir = lake, dir
	if cfg.Alarm != "" {
		if r.alarmer, err = alarm.Open(ctx, cfg.Alarm); err != nil {
			return nil, fmt.Errorf("-alarm: %w", err)
		}
	}
	if r.stream, err = openStream(ctx, cfg.Stream, r.Quotes, lake, true, cfg.Speed, r.logger(out)); err != nil {
		return nil, err
	}
	fmt.Fprintf(out, "Simulating %d trading day(s) from %s for %d symbols at %gx; the glitch skips %d symbol(s) a minute.\n",
		cfg.Days, cfg.Day.Format("Mon 2006-01-02"), len(cfg.Symbols), cfg.Speed, cfg.Drop)
	if r.stream != nil {
		fmt.Fprintf(out, "Live quotes travel Kinesis stream %s into the lake %s.\n", r.stream.name, dir)
	}
	d := cfg.Day.Add(12 * time.Hour)
	for n := 0; n < cfg.Days; d = d.AddDate(0, 0, 1) {
		if !r.Rule.IsTradingDay(d) {
			continue
		}
		n++
		day, err := r.simulateDay(ctx, d, out)
		if day != nil {
			r.Days = append(r.Days, day)
		}
		if err != nil {
			return r, err
		}
	}
	r.Wall = time.Since(start)
	return r, nil
}

func (r *run) simulateDay(ctx context.Context, day time.Time, out io.Writer) (*simDay, error) {
	cfg := r.cfg
	open, close, _ := r.Rule.Hours(day)
	if cfg.Until > 0 {
		l := open.In(r.Rule.Location)
		if u := time.Date(l.Year(), l.Month(), l.Day(), 0, 0, 0, 0, r.Rule.Location).Add(cfg.Until); u.After(open) && u.Before(close) {
			close = u
		}
	}
	// Start a few seconds before the bell so the 09:30 poll is the first tick.
	clock := newPacedClock(open.Add(-20*time.Second), cfg.Speed, open)
	defer clock.release()
	serverLimit := cfg.PerMinute
	if cfg.serverPerMinute > 0 {
		serverLimit = cfg.serverPerMinute
	}
	fake := finnhubtest.NewServer(&finnhubtest.Options{Clock: clock, Seed: cfg.Seed, Symbols: cfg.Symbols, PerMinute: serverLimit})
	if cfg.FaultRate > 0 || len(cfg.NoHistory) > 0 {
		f := finnhubtest.Faults{Forbidden: cfg.NoHistory}
		if cfg.FaultRate > 0 {
			f.Status = map[int]float64{500: cfg.FaultRate / 3, 502: cfg.FaultRate / 3, 503: cfg.FaultRate / 3}
		}
		fake.SetFaults(f)
	}
	token := finnhubtest.Token
	if cfg.FreePlan {
		token = finnhubtest.FreeToken
	}
	sd := &simDay{Open: open, Close: close, Server: fake}
	logger := r.logger(out)
	meter, lake := newMeter(r.Lake, clock, r.Quotes.Name, r.Bars.Output().Name)
	client, err := finnhub.NewClient(&finnhub.Options{BaseURL: fake.URL, Token: token, Clock: clock, Logger: logger,
		HTTPClient: &http.Client{Transport: meter.Transport(nil)}})
	if err != nil {
		return sd, err
	}
	limits := finnhub.DefaultLimits()
	limits.Rates[0].Calls = cfg.PerMinute
	src := finnhub.NewSource(client, &finnhub.SourceOptions{Limits: limits})
	sd.Glitch = source.Glitch(src, r.Quotes, cfg.Symbols, cfg.Drop, cfg.Seed)
	sd.Rec = &recorder{src: sd.Glitch, clock: clock, live: map[string]map[time.Time]bool{}}

	progress := &progress{out: out, quiet: cfg.Quiet, loc: r.Rule.Location}
	lastPoll, lastOnce := make(chan struct{}, 1), &sync.Once{}
	firstPoll, firstOnce := make(chan struct{}, 1), &sync.Once{}
	opts := &heal.Options{
		Keys:         cfg.Symbols,
		Rule:         r.Rule,
		Transformers: []heal.Transformer{r.Bars},
		Alarmer:      alarmers(heal.LogAlarmer(logger), r.alarms, r.alarmer),
		Logger:       logger,
		Clock:        clock,
		Lookback:     cfg.Lookback,
		AuditEvery:   cfg.AuditEvery,
		Retry:        heal.RetryPolicy{InitialInterval: 2 * time.Second, MaxInterval: time.Minute},
		Observer: observers(meter, collectorOf(cfg), heal.ObserverFunc(func(ev heal.Event) {
			if ev.Kind == heal.EventWrite && ev.Live {
				clock.polled(ev.Window.Start)
				firstOnce.Do(func() { firstPoll <- struct{}{} })
				if !ev.Window.Start.Before(close.Add(-time.Minute)) {
					lastOnce.Do(func() { lastPoll <- struct{}{} })
				}
			}
			if ev.Kind == heal.EventAudit && ev.Dataset == r.Quotes.Name {
				sd.mu.Lock()
				sd.Audits = append(sd.Audits, ev.Window)
				sd.mu.Unlock()
				progress.audit(ev)
			}
		})),
	}
	if r.stream != nil {
		opts.LiveSink = r.stream.sink
		_, _, opts.Settle = streamTimes(true, cfg.Speed)
	}
	eng, err := heal.New(r.Quotes, sd.Rec, lake, opts)
	if err != nil {
		return sd, err
	}
	sd.Engine = eng
	progress.eng, progress.rec = eng, sd.Rec

	// Run until just before the close: the 15:59 poll is the last one.
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- eng.Run(runCtx) }()
	go progress.loop(runCtx, clock, open, close, firstPoll)
	// The clock starts when the engine waits for its first tick; should
	// it never, start it anyway.
	go func() {
		time.Sleep(2 * time.Second)
		clock.begin()
	}()
	// Stop once the last minute's poll has landed (and not before the
	// close): stopping mid-poll would leave holes the glitch did not make.
	select {
	case <-ctx.Done():
		cancel()
		<-done
		return sd, ctx.Err()
	case <-lastPoll:
	case <-clock.After(close.Add(time.Minute).Sub(clock.Now())): // the poll was skipped after all
	}
	select {
	case <-ctx.Done():
	case <-clock.After(close.Add(-time.Second).Sub(clock.Now())):
	}
	cancel()
	if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
		return sd, err
	}
	clock.release()
	// Let the last minute settle, then one final pass over the session.
	settle := time.Minute
	if r.stream != nil {
		// Everything the live path sent must have landed first.
		if err := r.stream.drain(ctx, 30*time.Second); err != nil {
			return sd, err
		}
		_, _, settle = streamTimes(true, cfg.Speed)
	}
	if wait := close.Add(settle + time.Second).Sub(clock.Now()); wait > 0 {
		select {
		case <-ctx.Done():
			return sd, ctx.Err()
		case <-clock.After(wait):
		}
	}
	rep, err := eng.Heal(ctx, heal.NewWindow(open, close))
	sd.Final = rep
	if err != nil {
		return sd, fmt.Errorf("final heal: %w", err)
	}
	progress.line(close, "closed; final audit done")
	// One file per partition for readers of the derived dataset too (the
	// engine compacts the raw one as it audits).
	if _, err := lake.Compact(ctx, r.Bars.Output(), heal.Query{Keys: cfg.Symbols}); err != nil {
		return sd, fmt.Errorf("compact bars: %w", err)
	}
	if _, err := meter.Flush(ctx, lake); err != nil { // the day's cost record
		return sd, fmt.Errorf("cost record: %w", err)
	}
	return sd, nil
}

func (r *run) logger(out io.Writer) *slog.Logger {
	if !r.cfg.Verbose {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// pacedClock is the simulation's clock: a [heal.ScaledClock] that never
// gets more than one grain ahead of the live poller. When the machine is
// slow or busy, and a tick takes longer than a simulated minute, simulated
// time waits for the poll to land instead of running on and making the
// engine skip slots; the run then takes longer, but the holes it shows are
// only the glitch's. It changes nothing when the machine keeps up. After
// three real seconds standing still it creeps on at a hundred times real
// time, so a poller that is itself waiting for simulated time (a saturated
// rate limit) is not deadlocked.
type pacedClock struct {
	start time.Time
	speed float64

	mu      sync.Mutex
	base    *heal.ScaledClock // nil until begin: the clock stands still
	offset  time.Duration     // simulated time spent waiting for the poller
	ceiling time.Time         // the clock stops here until the next poll lands
	stalled time.Time         // wall time the clock first stood at ceiling
	gate    time.Time         // a wait for this instant or later starts the clock
	free    bool
}

// newPacedClock returns a clock standing at start until someone waits for
// the minute of firstSlot (the engine's first tick), so the first tick is
// firstSlot however long the engine takes to start. Until the first poll
// lands it may run to one grain past firstSlot.
func newPacedClock(start time.Time, speed float64, firstSlot time.Time) *pacedClock {
	c := &pacedClock{start: start, speed: speed, gate: firstSlot}
	c.polled(firstSlot.Add(-time.Minute))
	return c
}

// begin starts the clock if it stands still.
func (c *pacedClock) begin() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.beginLocked()
}

func (c *pacedClock) beginLocked() {
	if c.base == nil {
		c.base = heal.NewScaledClock(c.start, c.speed)
	}
}

// polled records that the live poll of slot landed: the clock may run to
// just before the slot after next, where the engine would skip a slot.
func (c *pacedClock) polled(slot time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ceil := slot.Add(2*time.Minute - time.Millisecond); ceil.After(c.ceiling) {
		c.ceiling = ceil
		c.stalled = time.Time{}
	}
}

// release lets the clock run freely (once the poller has stopped).
func (c *pacedClock) release() {
	c.mu.Lock()
	c.free = true
	c.mu.Unlock()
}

// Now implements [heal.Clock].
func (c *pacedClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.base == nil {
		return c.start
	}
	t := c.base.Now().Add(-c.offset)
	if c.free || !t.After(c.ceiling) {
		return t
	}
	ceiling := c.ceiling
	if c.stalled.IsZero() {
		c.stalled = time.Now()
	} else if d := time.Since(c.stalled) - 3*time.Second; d > 0 {
		// Stuck for long: the poller may be waiting for simulated time
		// itself (a saturated rate limit). Let time creep on, at a
		// hundred times real time.
		ceiling = ceiling.Add(100 * d)
	}
	if t.After(ceiling) {
		c.offset += t.Sub(ceiling)
		t = ceiling
	}
	return t
}

// After implements [heal.Clock].
func (c *pacedClock) After(d time.Duration) <-chan time.Time {
	ch := make(chan time.Time, 1)
	target := c.Now().Add(d)
	if !target.Before(c.gate) && target.Before(c.gate.Add(time.Minute)) {
		c.begin()
	}
	go func() {
		for {
			now := c.Now()
			if !now.Before(target) {
				ch <- now
				return
			}
			time.Sleep(max(time.Duration(float64(target.Sub(now))/c.speed), 200*time.Microsecond))
		}
	}()
	return ch
}

// recorder wraps the source to remember which live polls returned a row,
// and when each source call started (for the rate-limit check).
type recorder struct {
	src   heal.Source
	clock heal.Clock

	mu    sync.Mutex
	live  map[string]map[time.Time]bool
	calls []time.Time
	lives int
}

func (rc *recorder) Fetch(ctx context.Context, req heal.Request) (arrow.Record, error) {
	rc.mu.Lock()
	rc.calls = append(rc.calls, rc.clock.Now())
	rc.mu.Unlock()
	rec, err := rc.src.Fetch(ctx, req)
	if err == nil && req.Live {
		rc.mu.Lock()
		rc.lives++
		if rec.NumRows() > 0 {
			for _, k := range req.Keys {
				if rc.live[k] == nil {
					rc.live[k] = map[time.Time]bool{}
				}
				rc.live[k][req.Window.Start] = true
			}
		}
		rc.mu.Unlock()
	}
	return rec, err
}

func (rc *recorder) Limits() heal.Limits { return rc.src.Limits() }

// Live reports whether the live poll of key at slot returned a row.
func (rc *recorder) Live(key string, slot time.Time) bool {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.live[key][slot]
}

// MaxIn is the most source calls that started within any span of d.
func (rc *recorder) MaxIn(d time.Duration) int {
	rc.mu.Lock()
	ts := append([]time.Time(nil), rc.calls...)
	rc.mu.Unlock()
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

func (rc *recorder) polled() (calls, withRow int) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for _, m := range rc.live {
		withRow += len(m)
	}
	return rc.lives, withRow
}

// alarmLog prints alarms as they are raised and keeps them for the report.
type alarmLog struct {
	out   io.Writer
	loc   *time.Location
	quiet bool
	mu    sync.Mutex
	all   []heal.Alarm
}

func (l *alarmLog) Alarm(_ context.Context, a heal.Alarm) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.all = append(l.all, a)
	if !l.quiet {
		fmt.Fprintf(l.out, "          %s\n", describe(a, l.loc))
	}
	return nil
}

// describe is one line about an alarm, times in loc.
func describe(a heal.Alarm, loc *time.Location) string {
	what := "ALARM"
	if a.Resolved {
		what = "RESOLVED"
	}
	return fmt.Sprintf("%s %s %s %s %s–%s ET after %d attempt(s): %s", what, a.Stage, a.Dataset, a.Key,
		a.Window.Start.In(loc).Format("15:04"), a.Window.End.In(loc).Format("15:04"), a.Attempts, a.LastError)
}

func (l *alarmLog) list() []heal.Alarm {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]heal.Alarm(nil), l.all...)
}

// progress prints a line every simulated half hour and one per audit.
type progress struct {
	out   io.Writer
	quiet bool
	loc   *time.Location
	eng   *heal.Engine
	rec   *recorder
	mu    sync.Mutex
}

func (p *progress) loop(ctx context.Context, clock heal.Clock, open, close time.Time, started <-chan struct{}) {
	select { // waiting on the clock before the engine would start it
	case <-ctx.Done():
		return
	case <-started:
	}
	for next := open.Add(30 * time.Minute); next.Before(close); next = next.Add(30 * time.Minute) {
		select {
		case <-ctx.Done():
			return
		case <-clock.After(next.Sub(clock.Now())):
			p.line(next, "")
		}
	}
}

func (p *progress) line(at time.Time, note string) {
	if p.quiet || p.eng == nil {
		return
	}
	s := p.eng.Stats()
	calls, rows := p.rec.polled()
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.out, "%s ET  polled %4d, %4d rows (%3d skipped by the glitch)  gaps found %3d  repaired %3d  empty %2d  candle calls %2d  alarms %d  %s\n",
		at.In(p.loc).Format("15:04"), calls, rows, calls-rows, s.Gaps, s.Repaired, s.Empty, s.RepairCalls, s.Alarms, note)
}

func (p *progress) audit(ev heal.Event) {
	if p.quiet || ev.Window.Empty() {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.out, "          audit %s–%s ET: %d slot(s) missing\n",
		ev.Window.Start.In(p.loc).Format("15:04"), ev.Window.End.In(p.loc).Format("15:04"), ev.Rows)
}

// report prints the before/after table, the repair statistics and where the
// lake is.
func (r *run) report(ctx context.Context, out io.Writer) error {
	for _, d := range r.Days {
		if err := r.reportDay(ctx, out, d); err != nil {
			return err
		}
	}
	alarms := r.alarms.list()
	fmt.Fprintf(out, "\nAlarms: %d\n", len(alarms))
	for i, a := range alarms {
		if i == 5 {
			fmt.Fprintf(out, "  ... and %d more\n", len(alarms)-i)
			break
		}
		fmt.Fprintf(out, "  %s\n", describe(a, r.Rule.Location))
	}
	if len(r.Days) > 0 {
		if err := printCost(ctx, out, r.Lake, r.Quotes.Name, r.Days[0].Open.Add(-time.Hour), r.cfg.Prices, r.Dir); err != nil {
			return err
		}
	}
	fmt.Fprintf(out, "\nLake: %s\n  quotes:      %s/quotes/symbol=<SYMBOL>/date=<YYYY-MM-DD>/*.parquet\n  hourly bars: %s/bars_hourly/symbol=<SYMBOL>/month=<YYYY-MM>/*.parquet\n  ledger:      %s/_heal/\n",
		r.Dir, r.Dir, r.Dir, r.Dir)
	fmt.Fprintf(out, "Wall time: %s\n", r.Wall.Round(10*time.Millisecond))
	return nil
}

func (r *run) reportDay(ctx context.Context, out io.Writer, d *simDay) error {
	loc := r.Rule.Location
	sts, err := d.Engine.Status(ctx, heal.NewWindow(d.Open, d.Close), time.Hour)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "\n%s, regular session %s–%s New York time: before and after healing\n",
		d.Open.In(loc).Format("Monday 2006-01-02"), d.Open.In(loc).Format("15:04"), d.Close.In(loc).Format("15:04"))
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "symbol\thour (ET)\texpected\thad\trepaired\tempty\tunrepairable\tmissing\tcomplete\t")
	type tot struct{ exp, had, rep, emp, unr, mis int }
	var all tot
	per := map[string]*tot{}
	for _, s := range sts {
		if s.Expected == 0 {
			continue
		}
		had := s.Present - s.Repaired
		from := s.Window.Start
		if from.Before(d.Open) {
			from = d.Open // the 09:30 half hour
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t\n", s.Key, from.In(loc).Format("15:04"),
			s.Expected, had, s.Repaired, s.Empty, s.Unrepairable, s.Missing(), pct(s.Present+s.Empty, s.Expected))
		t := per[s.Key]
		if t == nil {
			t = &tot{}
			per[s.Key] = t
		}
		for _, x := range []*tot{t, &all} {
			x.exp += s.Expected
			x.had += had
			x.rep += s.Repaired
			x.emp += s.Empty
			x.unr += s.Unrepairable
			x.mis += s.Missing()
		}
	}
	fmt.Fprintln(tw, "\t\t\t\t\t\t\t\t\t")
	for _, k := range r.cfg.Symbols {
		if t := per[k]; t != nil {
			fmt.Fprintf(tw, "%s\tday\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t\n", k, t.exp, t.had, t.rep, t.emp, t.unr, t.mis, pct(t.had+t.rep+t.emp, t.exp))
		}
	}
	fmt.Fprintf(tw, "all\tday\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t\n", all.exp, all.had, all.rep, all.emp, all.unr, all.mis, pct(all.had+all.rep+all.emp, all.exp))
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(out, "  had = rows polled live; complete = (had + repaired + empty) / expected; empty = minutes with no trade, confirmed by the candles.\n")
	fmt.Fprintf(out, "  before healing the session was %s complete, after it %s.\n", pct(all.had, all.exp), pct(all.had+all.rep+all.emp, all.exp))

	s := d.Engine.Stats()
	c := d.Server.Counters()
	fmt.Fprintf(out, "\nRepair statistics\n")
	fmt.Fprintf(out, "  audits: %d   gaps found: %d slots   repaired: %d   confirmed empty: %d   unrepairable: %d\n",
		len(d.Audits), s.Gaps, s.Repaired, s.Empty, s.Unrepairable)
	fmt.Fprintf(out, "  source calls: live %d, repair %d (candle requests, retries included), failed %d\n", s.LiveCalls, s.RepairCalls, s.FetchErrors)
	fmt.Fprintf(out, "  hourly bars recomputed: %d   alarms: %d   resolved: %d\n", s.Resynthesized, s.Alarms, s.Resolved)
	fmt.Fprintf(out, "  fake API: %d quote + %d candle calls, %d faults injected, %d rate-limited; busiest minute %d calls, busiest second %d (limit %d/min, 30/s)\n",
		c.Calls["/quote"], c.Calls["/stock/candle"], c.Injected, c.RateLimited, c.MaxPerMinute, c.MaxPerSecond, r.cfg.PerMinute)
	return nil
}

func pct(n, of int) string {
	if of == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f%%", 100*float64(n)/float64(of))
}

// runReal polls the real Finnhub API in real time until the session
// closes, -duration passes or ctx ends, then heals what it polled and
// prints the same report.
func runReal(ctx context.Context, cfg config, out io.Writer) error {
	rule := audit.USEquities()
	quotes := finnhub.Quotes()
	bars := finnhub.NewBars(rule, nil)
	lake, dir, err := openLake(ctx, cfg.Lake)
	if err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	var extra heal.Alarmer
	if cfg.Alarm != "" {
		if extra, err = alarm.Open(ctx, cfg.Alarm); err != nil {
			return fmt.Errorf("-alarm: %w", err)
		}
	}
	meter, lake := newMeter(lake, heal.SystemClock{}, quotes.Name, bars.Output().Name)
	st, err := openStream(ctx, cfg.Stream, quotes, lake, false, 1, logger)
	if err != nil {
		return err
	}
	if st != nil {
		defer st.Close()
	}
	client, err := finnhub.NewClient(&finnhub.Options{BaseURL: cfg.BaseURL, TokenProvider: cfg.Token, Logger: logger,
		HTTPClient: &http.Client{Transport: meter.Transport(nil)}})
	if err != nil {
		return err
	}
	limits := finnhub.DefaultLimits()
	limits.Rates[0].Calls = cfg.PerMinute
	src := source.Glitch(finnhub.NewSource(client, &finnhub.SourceOptions{Limits: limits}), quotes, cfg.Symbols, cfg.Drop, cfg.Seed)
	alarms := &alarmLog{out: out, loc: rule.Location}
	opts := &heal.Options{
		Keys: cfg.Symbols, Rule: rule, Transformers: []heal.Transformer{bars},
		Alarmer: alarmers(heal.LogAlarmer(logger), alarms, extra), Logger: logger,
		Lookback: cfg.Lookback, AuditEvery: cfg.AuditEvery, Observer: observers(meter, collectorOf(cfg)),
	}
	if st != nil {
		opts.LiveSink = st.sink
		_, _, opts.Settle = streamTimes(false, 1)
	}
	eng, err := heal.New(quotes, src, lake, opts)
	if err != nil {
		return err
	}
	now := time.Now()
	open, close, trading := rule.Hours(now)
	stopAt := close.Add(time.Minute)
	if !trading || !now.Before(close) {
		fmt.Fprintln(out, "The US market is closed now: polling anyway (quotes stay at the last trade; no minute is expected).")
		stopAt = time.Time{}
	}
	if cfg.Duration > 0 {
		stopAt = now.Add(cfg.Duration)
	}
	fmt.Fprintf(out, "Polling %d symbols at %s every minute (the glitch skips %d); lake %s. Ctrl-C to stop.\n",
		len(cfg.Symbols), cfg.BaseURL, cfg.Drop, dir)
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	if !stopAt.IsZero() {
		runCtx, cancel = context.WithDeadline(runCtx, stopAt)
		defer cancel()
	}
	metered := make(chan struct{}, 1)
	go func() { meter.Run(runCtx, lake, time.Hour); metered <- struct{}{} }() // a cost record an hour
	if err := eng.Run(runCtx); err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	<-metered
	// A final pass with a fresh context, so Ctrl-C still leaves a report.
	fctx, fcancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer fcancel()
	if st != nil {
		if err := st.drain(fctx, time.Minute); err != nil {
			return err
		}
	}
	w := heal.NewWindow(now.Truncate(time.Minute), time.Now())
	if trading {
		w = heal.NewWindow(open, close)
	}
	if _, err := eng.Heal(fctx, w); err != nil {
		return err
	}
	r := &run{cfg: cfg, Lake: lake, Dir: dir, Quotes: quotes, Bars: bars, Rule: rule, alarms: alarms, Wall: time.Since(now)}
	d := &simDay{Open: w.Start, Close: w.End, Engine: eng, Server: nil}
	if _, err := meter.Flush(fctx, lake); err != nil {
		return err
	}
	if err := r.reportReal(fctx, out, d); err != nil {
		return err
	}
	return printCost(fctx, out, lake, quotes.Name, now.Add(-time.Hour), cfg.Prices, dir)
}

func (r *run) reportReal(ctx context.Context, out io.Writer, d *simDay) error {
	sts, err := d.Engine.Status(ctx, heal.NewWindow(d.Open, d.Close), time.Hour)
	if err != nil {
		return err
	}
	loc := r.Rule.Location
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "symbol\thour (ET)\texpected\thad\trepaired\tempty\tunrepairable\tmissing\t")
	for _, s := range sts {
		if s.Expected > 0 {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t\n", s.Key, s.Window.Start.In(loc).Format("15:04"),
				s.Expected, s.Present-s.Repaired, s.Repaired, s.Empty, s.Unrepairable, s.Missing())
		}
	}
	tw.Flush()
	s := d.Engine.Stats()
	fmt.Fprintf(out, "\nsource calls: live %d, repair %d, failed %d; gaps %d, repaired %d, empty %d, unrepairable %d, alarms %d\n",
		s.LiveCalls, s.RepairCalls, s.FetchErrors, s.Gaps, s.Repaired, s.Empty, s.Unrepairable, s.Alarms)
	fmt.Fprintf(out, "Lake: %s\n", r.Dir)
	return nil
}
