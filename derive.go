package heal

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"golang.org/x/sync/errgroup"

	"github.com/selfheal/heal/internal/span"
)

type deriveTask struct {
	t   Transformer
	key string
	out Window
}

// resynth recomputes, for every transformer, exactly the closed output
// windows (ending at or before limit) that the dirty input slots affect,
// and reports how many it recomputed. With persist, a key whose windows all
// succeeded is marked clean in the ledger; a failure is retried under the
// attempt budget, then alarmed once. A slot affecting a window still open
// stays dirty: the window is derived when its last slot lands, and if the
// process dies before that derive, the first heal after the window closes
// still knows to derive it.
func (e *Engine) resynth(ctx context.Context, dirty map[string]span.Set, persist bool, limit time.Time) (int, error) {
	clean := make(map[string]span.Set, len(dirty))
	for k, s := range dirty {
		var open []span.Range
		for _, t := range e.opts.Transformers {
			for _, r := range s {
				for _, out := range t.Affected(e.window(r)) {
					if out.End.After(limit) {
						open = append(open, e.toSet([]Window{out.Intersect(e.window(r))})...)
					}
				}
			}
		}
		clean[k] = span.Subtract(s, span.Normalize(open))
	}
	if len(e.opts.Transformers) == 0 || len(dirty) == 0 {
		if persist {
			for k, s := range clean {
				e.ledger.record(ledgerEvent{Kind: "clean", Key: k, Slots: s})
			}
		}
		return 0, nil
	}
	var tasks []deriveTask
	keys := make([]string, 0, len(dirty))
	for k := range dirty {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, t := range e.opts.Transformers {
		for _, k := range keys {
			seen := map[time.Time]bool{}
			for _, r := range dirty[k] {
				for _, out := range t.Affected(e.window(r)) {
					if !seen[out.Start] && !out.End.After(limit) {
						seen[out.Start] = true
						tasks = append(tasks, deriveTask{t, k, out})
					}
				}
			}
		}
	}
	return e.runDerives(ctx, tasks, clean, persist)
}

func (e *Engine) runDerives(ctx context.Context, tasks []deriveTask, dirty map[string]span.Set, persist bool) (int, error) {
	var (
		mu     sync.Mutex
		failed = map[string]bool{}
		done   int
	)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(e.opts.Concurrency)
	for _, task := range tasks {
		g.Go(func() error {
			err := e.deriveWithRetry(gctx, task)
			if gctx.Err() != nil {
				return gctx.Err()
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				failed[task.key] = true
				return nil
			}
			done++
			return nil
		})
	}
	err := g.Wait()
	e.stats.add(&e.stats.Resynthesized, done)
	if err != nil {
		return done, err
	}
	if persist {
		for k, s := range dirty {
			if !failed[k] {
				e.ledger.record(ledgerEvent{Kind: "clean", Key: k, Slots: s})
			}
		}
	}
	return done, nil
}

// deriveWithRetry derives one window with backoff; on giving up it opens
// one alarm for the window, and on success it resolves an open one.
func (e *Engine) deriveWithRetry(ctx context.Context, task deriveTask) error {
	id := fmt.Sprintf("%s/%s/%s/%d", StageResynth, task.t.Output().Name, task.key, task.out.Start.Unix())
	b := e.newBackOff()
	var err error
	attempt := 1
	for ; ; attempt++ {
		start := e.clock.Now()
		err = e.derive(ctx, task)
		e.observe(Event{Kind: EventDerived, Key: task.key, Window: task.out, Live: StageOf(ctx) == StageAcquire, Elapsed: e.clock.Now().Sub(start), Err: err})
		if err == nil || ctx.Err() != nil || IsPermanent(err) || attempt >= e.opts.Retry.MaxAttempts {
			break
		}
		e.log.Warn("derive failed", "output", task.t.Output().Name, "key", task.key, "window", task.out.String(), "attempt", attempt, "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-e.clock.After(b.NextBackOff()):
		}
	}
	var open, exists bool
	e.ledger.view(func(st *ledgerState) {
		a := st.Alarms[id]
		exists = a != nil
		open = a != nil && !a.Resolved
	})
	if err == nil {
		if open {
			e.ledger.record(ledgerEvent{Kind: "resolved", Alarm: &alarmRecord{ID: id}})
		}
		return nil
	}
	if ctx.Err() != nil {
		return err
	}
	if !open || !exists {
		e.ledger.record(ledgerEvent{Kind: "alarm", Alarm: &alarmRecord{
			ID: id, Key: task.key, Stage: StageResynth,
			Slots:    []span.Range{{Lo: e.idx(task.out.Start), Hi: e.idx(task.out.End)}},
			Attempts: attempt, LastError: err.Error(), At: e.clock.Now().UTC(),
		}})
	}
	return err
}

// derive recomputes one output window of one key from the input lake.
func (e *Engine) derive(ctx context.Context, task deriveTask) (err error) {
	defer func() {
		if r := recover(); r != nil { // a panicking Transformer must not take the engine down
			err = Permanent(fmt.Errorf("heal: transformer %s panicked: %v", task.t.Output().Name, r))
		}
	}()
	rd, err := e.lake.Scan(ctx, e.ds, Query{Keys: []string{task.key}, Window: task.out})
	if err != nil {
		return fmt.Errorf("heal: derive %s %s: scan: %w", task.key, task.out, err)
	}
	var recs []arrow.Record
	defer func() {
		for _, r := range recs {
			r.Release()
		}
	}()
	for rd.Next() {
		r := rd.Record()
		r.Retain()
		recs = append(recs, r)
	}
	rerr := rd.Err()
	rd.Release()
	if rerr != nil {
		return fmt.Errorf("heal: derive %s %s: scan: %w", task.key, task.out, rerr)
	}
	in, err := concatRecords(e.mem, e.ds.Schema, recs)
	if err != nil {
		return err
	}
	defer in.Release()
	res, err := task.t.Derive(ctx, task.key, task.out, in)
	if err != nil {
		return fmt.Errorf("heal: derive %s %s %s: %w", task.t.Output().Name, task.key, task.out, err)
	}
	defer res.Release()
	outDs := task.t.Output()
	kept, err := e.keepRowsOf(outDs, res, task.out, func(k string, _ time.Time) bool { return k == task.key })
	if err != nil {
		return Permanent(fmt.Errorf("heal: derive %s %s: %w", outDs.Name, task.key, err))
	}
	defer kept.Release()
	if kept.NumRows() == 0 {
		return nil
	}
	// Never under an idempotency key: a recomputation must replace an
	// older one even when it repeats a job.
	if err := e.lake.Write(WithIdempotencyKey(ctx, "", time.Time{}), outDs, kept); err != nil {
		return fmt.Errorf("heal: derive %s %s %s: write: %w", outDs.Name, task.key, task.out, err)
	}
	return nil
}

// deriveMissing derives output windows that have input in w but no output
// at all: data landed by another path (a stream consumer, a crash between a
// live write and its derive).
func (e *Engine) deriveMissing(ctx context.Context, w Window, a *auditResult) (int, error) {
	tasks, err := e.missingDerives(ctx, w, a)
	if err != nil || len(tasks) == 0 {
		return 0, err
	}
	return e.runDerives(ctx, tasks, nil, false)
}

// missingDerives lists the derivations deriveMissing runs.
func (e *Engine) missingDerives(ctx context.Context, w Window, a *auditResult) ([]deriveTask, error) {
	var tasks []deriveTask
	for _, t := range e.opts.Transformers {
		outDs := t.Output()
		have := map[string][]time.Time{}
		span := Window{outDs.Slot(w.Start), outDs.Slot(w.End).Add(outDs.Grain)}
		if err := e.lake.Inventory(ctx, outDs, Query{Keys: e.opts.Keys, Window: span}, func(p PartitionInfo) error {
			for t := range p.Present.All() {
				have[p.Partition.Key] = append(have[p.Partition.Key], t)
			}
			return nil
		}); err != nil {
			return nil, fmt.Errorf("heal: inventory of %s: %w", outDs.Name, err)
		}
		for _, k := range e.opts.Keys {
			h := have[k]
			slices.SortFunc(h, func(x, y time.Time) int { return x.Compare(y) })
			seen := map[time.Time]bool{}
			for _, r := range a.keys[k].present {
				for _, out := range t.Affected(e.window(r)) {
					if seen[out.Start] || out.End.After(w.End) {
						continue // an open window is derived when it closes
					}
					seen[out.Start] = true
					i, _ := slices.BinarySearchFunc(h, out.Start, func(x, y time.Time) int { return x.Compare(y) })
					if i < len(h) && h[i].Before(out.End) {
						continue // some output exists for the window
					}
					tasks = append(tasks, deriveTask{t, k, out})
				}
			}
		}
	}
	return tasks, nil
}

// resynthAll recomputes every derived window of w for every key: Run does
// it on start to close windows a crash may have left stale.
// Windows still open (their end is after w.End) are left to the tick that
// closes them.
func (e *Engine) resynthAll(ctx context.Context, w Window) {
	var tasks []deriveTask
	for _, t := range e.opts.Transformers {
		for _, out := range t.Affected(w) {
			if out.End.After(w.End) {
				continue
			}
			for _, k := range e.opts.Keys {
				tasks = append(tasks, deriveTask{t, k, out})
			}
		}
	}
	if _, err := e.runDerives(ctx, tasks, nil, false); err != nil && ctx.Err() == nil {
		e.log.Warn("startup resynthesis failed", "err", err)
	}
}
