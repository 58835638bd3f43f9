package heal

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/memory"
	"golang.org/x/sync/errgroup"

	"github.com/selfheal/heal/internal/ratelimit"
	"github.com/selfheal/heal/internal/span"
)

// Engine runs the cycle for one dataset: acquire, transform, audit, repair,
// resynthesize, alarm. What it must remember lives in the ledger inside the
// lake, not in the process, so one cycle can run per cron or Lambda
// invocation with [Engine.Heal], and a restarted engine carries on.
//
// An Engine is safe for concurrent use. Heal calls are serialized.
type Engine struct {
	ds        *Dataset
	src       Source
	lake      Lake
	meta      MetaStore
	compactor Compactor
	opts      Options
	limits    Limits
	limiter   *ratelimit.Limiter
	reserve   []int // per rate: calls a window keeps for the live path
	ledger    *ledger
	log       *slog.Logger
	mem       memory.Allocator
	clock     Clock
	stats     stats
	id        string   // this engine's owner id in the heal lease
	allKeys   []string // Options.Keys before sharding, for the descriptor

	healMu  sync.Mutex
	alarmMu sync.Mutex // giveUp: finding the alarm to extend and extending it

	lakeMu   sync.Mutex
	lakeDown bool // a lake write failed and none succeeded since: a lake-write alarm is out
}

// New returns an engine over ds, reading from src and storing into lake.
// The lake must implement [MetaStore] (the ledger lives in it); it may
// implement [Compactor]. src may be nil for an engine that only audits and
// reports (the heal command): Run, Acquire and Heal then fail. New
// validates its arguments and never panics on them.
func New(ds *Dataset, src Source, lake Lake, opts *Options) (*Engine, error) {
	if err := ds.Validate(); err != nil {
		return nil, err
	}
	if lake == nil {
		return nil, errors.New("heal: New: nil Lake")
	}
	meta, ok := lake.(MetaStore)
	if !ok {
		return nil, fmt.Errorf("heal: New: lake %T does not implement MetaStore, where the ledger lives", lake)
	}
	var o Options
	if opts != nil {
		o = *opts
	}
	for i, k := range o.Keys {
		if err := ValidKey(k); err != nil {
			return nil, fmt.Errorf("heal: New: Options.Keys[%d]: %w", i, err)
		}
	}
	if err := o.Shard.validate(); err != nil {
		return nil, fmt.Errorf("heal: New: Options.Shard: %w", err)
	}
	allKeys := o.Keys
	if o.Shard.sharded() {
		var own []string
		for _, k := range o.Keys {
			if o.Shard.Owns(k) {
				own = append(own, k)
			}
		}
		o.Keys = own
	}
	for i, t := range o.Transformers {
		if t == nil {
			return nil, fmt.Errorf("heal: New: Options.Transformers[%d] is nil", i)
		}
		if err := t.Output().Validate(); err != nil {
			return nil, fmt.Errorf("heal: New: Options.Transformers[%d]: %w", i, err)
		}
		if t.Output().Name == ds.Name {
			return nil, fmt.Errorf("heal: New: Options.Transformers[%d] writes to its own input %q", i, ds.Name)
		}
	}
	if o.Rule == nil {
		o.Rule = CompletenessRuleFunc(func(_ string, w Window, grain time.Duration) []Window {
			return []Window{w.Align(grain)}
		})
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Alarmer == nil {
		o.Alarmer = LogAlarmer(o.Logger)
	}
	if o.Clock == nil {
		o.Clock = SystemClock{}
	}
	if o.Allocator == nil {
		o.Allocator = memory.DefaultAllocator
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 4
	}
	if o.Lookback <= 0 {
		o.Lookback = 24 * time.Hour
	}
	if o.AuditEvery <= 0 {
		o.AuditEvery = time.Hour
	}
	if o.Settle <= 0 {
		o.Settle = ds.Grain
	}
	if o.LeaseTTL <= 0 {
		o.LeaseTTL = 15 * time.Minute
	}
	if o.CompactEvery <= 0 {
		o.CompactEvery = 60
	}
	if o.ReprobeAfter == 0 {
		o.ReprobeAfter = 6 * time.Hour
	}
	o.Retry = o.Retry.WithDefaults()
	var lim Limits
	if src != nil {
		lim = src.Limits()
	}
	if lim.MaxKeys <= 0 {
		lim.MaxKeys = 1
	}
	if lim.MaxWindow < 0 {
		return nil, fmt.Errorf("heal: New: Source.Limits().MaxWindow %s is negative", lim.MaxWindow)
	}
	if lim.MaxWindow > 0 && lim.MaxWindow < ds.Grain {
		return nil, fmt.Errorf("heal: New: Source.Limits().MaxWindow %s is shorter than the grain %s", lim.MaxWindow, ds.Grain)
	}
	share := o.RateShare
	if share == 0 {
		share = 1
	}
	if !(share > 0 && share <= 1) { // NaN too
		return nil, fmt.Errorf("heal: New: Options.RateShare %g is not in (0, 1]", o.RateShare)
	}
	var (
		rl      []ratelimit.Limit
		reserve []int
	)
	liveCalls := (len(o.Keys) + lim.MaxKeys - 1) / lim.MaxKeys // per tick
	for _, r := range lim.Rates {
		if r.Calls <= 0 || r.Per <= 0 {
			continue // ignored by the limiter, which numbers only the others
		}
		rl = append(rl, ratelimit.Limit{N: max(int(float64(r.Calls)*share+1e-9), 1), D: r.Per})
		ticks := int((r.Per + ds.Grain - 1) / ds.Grain) // ticks a window spans
		if o.NoLiveReserve {
			ticks = 0
		}
		reserve = append(reserve, liveCalls*ticks)
	}
	e := &Engine{
		ds: ds, src: src, lake: lake, meta: meta, opts: o, limits: lim,
		limiter: ratelimit.New(o.Clock.Now, o.Clock.After, rl...), reserve: reserve,
		ledger:  newLedger(meta, ds.Name, o.Clock),
		log:     o.Logger.With("dataset", ds.Name),
		mem:     o.Allocator,
		clock:   o.Clock,
		id:      newOwnerID(),
		allKeys: allKeys,
	}
	e.ledger.gate = e.snapshotGate // workers and shards append to the ledger too
	e.compactor, _ = lake.(Compactor)
	return e, nil
}

var errNoSource = errors.New("heal: the engine has no Source: it can audit and report, not acquire or repair")

// Dataset is the dataset the engine keeps whole.
func (e *Engine) Dataset() *Dataset { return e.ds }

// Run is the continuous loop. On every grain tick of the clock it acquires
// the live slot for every key and derives the windows it touched; every
// AuditEvery (and once at start, to catch up after a restart) it heals the
// last Lookback. It blocks until ctx ends and then returns ctx's error;
// cycle failures are logged, alarmed where they concern data, and retried
// on the next cycle, never fatal.
func (e *Engine) Run(ctx context.Context) error {
	if len(e.allKeys) == 0 {
		return errors.New("heal: Run: Options.Keys is empty")
	}
	if e.src == nil {
		return errNoSource
	}
	if err := e.recordDescriptors(ctx); err != nil {
		e.log.Warn("could not record the dataset descriptor", "err", err)
	}
	var healing sync.WaitGroup
	defer healing.Wait()
	healBusy := make(chan struct{}, 1)
	startHeal := func() {
		select {
		case healBusy <- struct{}{}:
		default:
			e.log.Warn("previous heal still running; skipping this one")
			return
		}
		healing.Add(1)
		go func() {
			defer healing.Done()
			defer func() { <-healBusy }()
			now := e.clock.Now()
			if _, err := e.Heal(ctx, Window{now.Add(-e.opts.Lookback), now}); err != nil && ctx.Err() == nil {
				e.log.Error("heal cycle failed", "err", err)
			}
		}()
	}

	// Close any derived window a crash left stale, then catch up.
	now := e.clock.Now()
	e.resynthAll(withStage(ctx, StageResynth), Window{now.Add(-e.opts.AuditEvery), now}.Align(e.ds.Grain))
	startHeal()

	nextTick := e.ds.Slot(now).Add(e.ds.Grain)
	nextAudit := now.UTC().Truncate(e.opts.AuditEvery).Add(e.opts.AuditEvery + e.opts.Settle)
	for {
		next := nextTick
		if nextAudit.Before(next) {
			next = nextAudit
		}
		if d := next.Sub(e.clock.Now()); d > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-e.clock.After(d):
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		now := e.clock.Now()
		if !now.Before(nextTick) {
			// The slot is the one the poll was scheduled for, even if the
			// clock woke us late; missed slots are left to repair.
			slot := nextTick
			if late := e.ds.Slot(now); late.After(slot) {
				slot = late
			}
			if _, err := e.Acquire(ctx, slot); err != nil && ctx.Err() == nil {
				e.log.Warn("acquire failed", "slot", slot, "err", err)
			}
			nextTick = slot.Add(e.ds.Grain)
		}
		if !now.Before(nextAudit) {
			startHeal()
			nextAudit = now.UTC().Truncate(e.opts.AuditEvery).Add(e.opts.AuditEvery + e.opts.Settle)
		}
	}
}

// Acquire polls the source for the live slot holding t, for every key, and
// lands what it gets; then it derives the windows the new rows touched. A
// key whose poll fails is logged and left to repair. It returns the rows
// written. With [Options.LiveSink] set the rows go there instead, and
// nothing is derived (Heal derives once they have landed); a failing sink
// raises the same StageLakeWrite alarm as a failing lake. With
// Options.Dispatcher set it dispatches the poll instead, as one acquire
// [Job] per request's worth of keys, and returns 0.
func (e *Engine) Acquire(ctx context.Context, t time.Time) (int, error) {
	if e.src == nil {
		return 0, errNoSource
	}
	if e.opts.Dispatcher != nil {
		return 0, e.dispatchAcquire(ctx, t)
	}
	return e.acquire(ctx, t, e.opts.Keys)
}

// acquire is Acquire for keys, run here.
func (e *Engine) acquire(ctx context.Context, t time.Time, keys []string) (int, error) {
	ctx = withStage(ctx, StageAcquire)
	slot := e.ds.Slot(t)
	w := Window{slot, slot.Add(e.ds.Grain)}
	var (
		mu   sync.Mutex
		recs []arrow.Record
		got  []string
	)
	defer func() {
		for _, r := range recs {
			r.Release()
		}
	}()
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(e.opts.Concurrency)
	for _, chunk := range chunks(keys, e.limits.MaxKeys) {
		g.Go(func() error {
			rec, err := e.fetch(gctx, Request{Keys: chunk, Window: w, Live: true})
			if err != nil {
				if errors.Is(err, ErrNoData) {
					return nil
				}
				if gctx.Err() != nil {
					return gctx.Err()
				}
				e.log.Warn("live fetch failed; the slot is left to repair", "keys", chunk, "slot", slot, "err", err)
				return nil
			}
			defer rec.Release()
			out, err := e.keepRows(rec, w, func(k string, _ int64) bool { return contains(chunk, k) })
			if err != nil {
				e.log.Warn("live record refused", "keys", chunk, "slot", slot, "err", err)
				return nil
			}
			mu.Lock()
			recs = append(recs, out)
			got = append(got, chunk...)
			mu.Unlock()
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return 0, err
	}
	rows := 0
	var dst Sink = e.lake
	if e.opts.LiveSink != nil {
		dst = e.opts.LiveSink
	}
	for _, r := range recs {
		if r.NumRows() == 0 {
			continue
		}
		if err := dst.Write(sourceWriteCtx(ctx, w.End), e.ds, r); err != nil {
			e.lakeWrite(ctx, w, err)
			return rows, fmt.Errorf("heal: acquire %s: write: %w", slot.Format(time.RFC3339), err)
		}
		rows += int(r.NumRows())
	}
	if rows > 0 {
		e.lakeWrite(ctx, w, nil)
	}
	e.stats.add(&e.stats.RowsWritten, rows)
	e.observe(Event{Kind: EventWrite, Window: w, Live: true, Rows: rows})
	if rows == 0 || e.opts.LiveSink != nil {
		// Rows sent to a stream are not in the lake yet: Heal derives
		// their windows once they have landed and settled.
		return rows, nil
	}
	// Derive the output windows this tick closes. An open window (the
	// current hour) is derived when its last slot lands, so a bar is never
	// published half-built; Heal derives any window the loop missed.
	end := slot.Add(e.ds.Grain)
	var tasks []deriveTask
	for _, t := range e.opts.Transformers {
		for _, out := range t.Affected(Window{end.Add(-e.ds.Grain), end}) {
			if !out.End.After(end) {
				for _, k := range got {
					tasks = append(tasks, deriveTask{t, k, out})
				}
			}
		}
	}
	if _, err := e.runDerives(ctx, tasks, nil, false); err != nil {
		return rows, err
	}
	// Micro-batches make one file per tick; fold them every CompactEvery
	// slots so partitions stay a handful of files between audits.
	if e.compactor != nil && (e.idx(slot)+1)%int64(e.opts.CompactEvery) == 0 {
		p := e.ds.PartitionOf("", slot)
		if _, err := e.compactor.Compact(withStage(ctx, StageCompaction), e.ds, Query{Keys: got, Window: p.Window()}); err != nil {
			e.log.Warn("compaction failed; it is retried later", "err", err)
		}
	}
	return rows, nil
}

// lakeWrite notes the outcome of a write to the lake: the first failure
// raises one StageLakeWrite alarm (disk full, permission denied, ...), the
// first success after it a resolved notice. The episode is kept in memory,
// not in the ledger: the ledger lives in the lake that is failing.
func (e *Engine) lakeWrite(ctx context.Context, w Window, err error) {
	var ie *InputError
	if err != nil && (ctx.Err() != nil || errors.As(err, &ie)) {
		return // not the lake's fault
	}
	e.lakeMu.Lock()
	changed := (err != nil) != e.lakeDown
	e.lakeDown = err != nil
	e.lakeMu.Unlock()
	if !changed {
		return
	}
	a := Alarm{Dataset: e.ds.Name, Window: w, Stage: StageLakeWrite, Resolved: err == nil, At: e.clock.Now().UTC()}
	if err != nil {
		a.LastError = err.Error()
		e.log.Error("the lake refuses writes", "err", err)
	}
	if aerr := e.opts.Alarmer.Alarm(context.WithoutCancel(ctx), a); aerr != nil {
		e.log.Error("alarmer failed", "err", aerr)
	}
	if err != nil {
		e.stats.add(&e.stats.Alarms, 1)
		e.observe(Event{Kind: EventAlarm, Window: w, Err: err})
	} else {
		e.stats.add(&e.stats.Resolved, 1)
		e.observe(Event{Kind: EventResolved, Window: w})
	}
}

// fetch makes one rate-limited source call and counts it.
func (e *Engine) fetch(ctx context.Context, req Request) (arrow.Record, error) {
	var err error
	if req.Live {
		_, err = e.limiter.Take(ctx)
	} else {
		_, err = e.limiter.TakeBelow(ctx, e.reserve)
	}
	if err != nil {
		return nil, err
	}
	start := e.clock.Now()
	rec, err := e.callSource(ctx, req)
	if req.Live {
		e.stats.add(&e.stats.LiveCalls, 1)
	} else {
		e.stats.add(&e.stats.RepairCalls, 1)
	}
	if err == nil && rec == nil {
		err = fmt.Errorf("heal: source returned a nil record and no error for %v", req.Keys)
	}
	if err != nil && !errors.Is(err, ErrNoData) {
		e.stats.add(&e.stats.FetchErrors, 1)
	}
	e.observe(Event{Kind: EventFetch, Window: req.Window, Key: firstKey(req.Keys), Live: req.Live, Elapsed: e.clock.Now().Sub(start), Err: err})
	return rec, err
}

// callSource calls Fetch, turning a panic in the user's code into a
// permanent error: errgroup does not propagate panics, and one bad Source
// must not take the pipeline down.
func (e *Engine) callSource(ctx context.Context, req Request) (rec arrow.Record, err error) {
	defer func() {
		if r := recover(); r != nil {
			rec, err = nil, Permanent(fmt.Errorf("heal: source panicked: %v", r))
		}
	}()
	return e.src.Fetch(ctx, req)
}

func (e *Engine) idx(t time.Time) int64 { return t.UnixNano() / int64(e.ds.Grain) }
func (e *Engine) at(i int64) time.Time  { return time.Unix(0, i*int64(e.ds.Grain)).UTC() }

func (e *Engine) toSet(ws []Window) span.Set {
	rs := make([]span.Range, 0, len(ws))
	for _, w := range ws {
		w = w.Align(e.ds.Grain)
		rs = append(rs, span.Range{Lo: e.idx(w.Start), Hi: e.idx(w.End)})
	}
	return span.Normalize(rs)
}

func (e *Engine) window(r span.Range) Window { return Window{e.at(r.Lo), e.at(r.Hi)} }

func (e *Engine) observe(ev Event) {
	if e.opts.Observer != nil {
		ev.Dataset = e.ds.Name
		e.opts.Observer.Observe(ev)
	}
}

func chunks(keys []string, n int) [][]string {
	if n <= 0 {
		n = 1
	}
	var out [][]string
	for len(keys) > 0 {
		m := min(n, len(keys))
		out = append(out, keys[:m:m])
		keys = keys[m:]
	}
	return out
}

func contains(ks []string, k string) bool {
	for _, x := range ks {
		if x == k {
			return true
		}
	}
	return false
}

func firstKey(ks []string) string {
	if len(ks) == 0 {
		return ""
	}
	return ks[0]
}
