package heal

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/cenkalti/backoff/v4"
	"golang.org/x/sync/errgroup"

	"github.com/selfheal/heal/internal/span"
)

// CycleReport says what one [Engine.Heal] did.
type CycleReport struct {
	Window        Window
	Expected      int   // slots the rule expects in the window, over all keys
	Present       int   // of those, slots held before repair
	Missing       int   // slots found missing (confirmed-empty ones excluded)
	Duplicates    int64 // stored copies beyond one per (key, time), before compaction
	Requests      int   // historical requests planned
	Calls         int   // historical source calls made, retries included
	Repaired      int   // slots filled
	Empty         int   // slots the source confirmed empty
	Unrepairable  int   // slots given up on this cycle
	Resynthesized int   // derived windows recomputed
	Compacted     int   // partitions compacted
	Alarms        int   // alarms raised
	Resolved      int   // resolved notices sent
	Dispatched    int   // jobs handed to Options.Dispatcher (repairs, resynthesis) instead of run here
	// LeaseHeldBy is set, and nothing else was done, when another engine
	// held the lake's heal lease for this dataset.
	LeaseHeldBy string
}

// repairJob is one planned historical request and the holes it serves.
type repairJob struct {
	req     Request
	holes   map[string]span.Set // per key: the missing slots inside req.Window
	budget  int                 // attempts allowed this cycle
	reprobe bool                // the holes were unrepairable; a success resolves their alarm
}

// Heal runs one cycle over w: audit the lake against the rule, plan the
// fewest source requests that cover the gaps, fetch them with backoff under
// the per-gap attempt budget, land what comes back, recompute the derived
// windows the repair touched, compact partitions holding duplicates, raise
// alarms for what cannot be healed and resolved notices for what healed,
// and record all of it in the ledger. Slots younger than Options.Settle are
// left alone. It is the one-shot entry point for cron and Lambda.
func (e *Engine) Heal(ctx context.Context, w Window) (*CycleReport, error) {
	if len(e.allKeys) == 0 {
		return nil, errors.New("heal: Heal: Options.Keys is empty")
	}
	if e.src == nil {
		return nil, errNoSource
	}
	e.healMu.Lock()
	defer e.healMu.Unlock()
	ctx = withStage(ctx, StageAudit)
	if err := e.recordDescriptors(ctx); err != nil {
		e.log.Warn("could not record the dataset descriptor", "err", err)
	}

	w = w.Align(e.ds.Grain)
	if limit := e.ds.Slot(e.clock.Now().Add(-e.opts.Settle)); w.End.After(limit) {
		w.End = limit
	}
	rep := &CycleReport{Window: w}
	if w.Empty() {
		return rep, nil
	}
	gen, ok, holder, err := e.acquireLease(ctx)
	if err != nil {
		return rep, err
	}
	if !ok {
		rep.LeaseHeldBy = holder
		e.log.Info("another engine is healing this dataset; skipping the cycle", "holder", holder)
		return rep, nil
	}
	lease := e.holdLease(e.leasePrefix(), gen)
	defer lease.release(ctx)
	if err := e.ledger.load(ctx); err != nil {
		return rep, err
	}
	a, err := e.audit(ctx, w)
	if err != nil {
		return rep, err
	}
	rep.Duplicates = a.dups
	now := e.clock.Now().UTC()
	jobs := e.plan(a, now, rep)
	e.observe(Event{Kind: EventAudit, Window: w, Rows: rep.Missing})

	// Persist the intent before writing: if we die mid-repair, the next
	// cycle still recomputes the derived windows of these slots.
	if len(e.opts.Transformers) > 0 {
		for _, j := range jobs {
			for k, h := range j.holes {
				e.ledger.record(ledgerEvent{Kind: "dirty", Key: k, Slots: h})
			}
		}
	}
	if err := e.ledger.flush(ctx); err != nil {
		e.lakeWrite(ctx, w, err)
		return rep, err
	}

	if err := lease.renew(ctx); err != nil {
		return rep, err
	}
	if e.opts.Dispatcher != nil {
		err = e.dispatchCycle(ctx, w, a, jobs, rep)
	} else {
		err = e.repairHere(ctx, w, a, jobs, rep, lease)
	}
	if err != nil {
		return rep, err
	}
	if err := lease.renew(ctx); err != nil {
		return rep, err
	}

	if e.compactor != nil && (len(a.crowded) > 0 || rep.Repaired > 0) {
		// One pass over the window: the partitions the audit found crowded
		// and those the repair just added files to.
		n, err := e.compactor.Compact(withStage(ctx, StageCompaction), e.ds, Query{Keys: e.opts.Keys, Window: w})
		rep.Compacted = n
		e.stats.add(&e.stats.Compacted, n)
		e.observe(Event{Kind: EventCompact, Window: w, Rows: n})
		if err != nil {
			e.log.Warn("compaction failed; it is retried next cycle", "err", err)
		}
	}

	e.resolveAlarms()
	al, res := e.deliverAlarms(ctx)
	rep.Alarms, rep.Resolved = al, res
	e.ledger.record(ledgerEvent{Kind: "audit", Audit: &AuditRecord{
		At: now, Window: w, Expected: rep.Expected, Present: rep.Present, Missing: rep.Missing,
		Duplicates: rep.Duplicates, Repaired: rep.Repaired, Empty: rep.Empty, Calls: rep.Calls, Alarms: rep.Alarms,
	}})
	if err := e.ledger.flush(ctx); err != nil {
		e.lakeWrite(ctx, w, err)
		return rep, err
	}
	e.lakeWrite(ctx, w, nil)
	e.log.Info("heal cycle", "window", w.String(), "missing", rep.Missing, "requests", rep.Requests,
		"calls", rep.Calls, "repaired", rep.Repaired, "empty", rep.Empty, "unrepairable", rep.Unrepairable,
		"resynthesized", rep.Resynthesized, "alarms", rep.Alarms, "resolved", rep.Resolved)
	return rep, nil
}

// Repair outcomes are flushed to the ledger every ledgerBatchJobs jobs or
// ledgerBatchWait of the engine's clock, whichever comes first.
const (
	ledgerBatchJobs = 16
	ledgerBatchWait = 5 * time.Second
)

// repairHere runs the planned repairs in this process, then recomputes the
// derived windows they and earlier cycles left dirty and derives those
// missing: the embedded mode.
func (e *Engine) repairHere(ctx context.Context, w Window, a *auditResult, jobs []repairJob, rep *CycleReport, lease *heldLease) error {
	var (
		mu        sync.Mutex
		unflushed int
		lastFlush = e.clock.Now()
	)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(e.opts.Concurrency)
	for _, j := range jobs {
		if gctx.Err() != nil {
			break // a job failed (or the lease was lost): start no more
		}
		g.Go(func() error {
			// Under the ID of the job it would be if dispatched: two
			// engines that plan the same repair (shards being re-balanced)
			// store its rows once.
			r := e.repair(withJob(withStage(gctx, StageRepair), e.jobOf(j)), j)
			mu.Lock()
			rep.Calls += r.Calls
			rep.Repaired += r.Repaired
			rep.Empty += r.Empty
			rep.Unrepairable += r.Unrepairable
			// The outcomes of several jobs share one ledger object (each
			// is a create-only file, synced): a crash loses at most the
			// attempt counts of the last few jobs, whose rows the lake
			// holds anyway.
			unflushed++
			now := e.clock.Now()
			flush := unflushed >= ledgerBatchJobs || now.Sub(lastFlush) >= ledgerBatchWait
			if flush {
				unflushed, lastFlush = 0, now
			}
			mu.Unlock()
			if r.LakeErr != nil {
				e.lakeWrite(gctx, w, r.LakeErr)
				return r.LakeErr
			}
			if flush {
				if err := e.ledger.flush(gctx); err != nil {
					e.lakeWrite(gctx, w, err)
					return err
				}
			}
			if err := lease.renew(gctx); err != nil {
				return err
			}
			return gctx.Err()
		})
	}
	werr := g.Wait()
	if err := e.ledger.flush(context.WithoutCancel(ctx)); err != nil { // what the last jobs recorded
		e.lakeWrite(ctx, w, err)
		return errors.Join(werr, err)
	}
	if werr != nil {
		return werr
	}
	if err := lease.renew(ctx); err != nil {
		return err
	}

	var dirty map[string]span.Set
	e.ledger.view(func(st *ledgerState) {
		dirty = make(map[string]span.Set, len(st.Dirty))
		for k, s := range st.Dirty {
			dirty[k] = append(span.Set(nil), s...)
		}
	})
	n, err := e.resynth(withStage(ctx, StageResynth), dirty, true, w.End)
	rep.Resynthesized += n
	if err != nil {
		return err
	}
	n, err = e.deriveMissing(withStage(ctx, StageResynth), w, a)
	rep.Resynthesized += n
	if err != nil {
		return err
	}
	return nil
}

// plan turns an audit into repair jobs and records what the audit learned.
func (e *Engine) plan(a *auditResult, now time.Time, rep *CycleReport) []repairJob {
	maxSpan := int64(0)
	if e.limits.MaxWindow > 0 {
		maxSpan = int64(e.limits.MaxWindow / e.ds.Grain)
	}
	type planned struct {
		r       span.Range
		key     string
		holes   span.Set
		budget  int
		reprobe bool
	}
	var ps []planned
	for _, k := range e.opts.Keys {
		ka := a.keys[k]
		rep.Expected += int(ka.expected.Count())
		rep.Present += int(span.Intersect(ka.expected, ka.present).Count())
		rep.Missing += int(ka.missing.Count())
		e.stats.add(&e.stats.Gaps, int(ka.missing.Count()))

		var fresh, filled, due, exhausted []int64
		attempts := map[int64]int{}
		e.ledger.view(func(st *ledgerState) {
			for i, s := range st.Slots[k] {
				if i < e.idx(a.w.Start) || i >= e.idx(a.w.End) {
					continue
				}
				if (s.Status == slotOpen || s.Status == slotUnrepairable) && ka.present.Contains(i) {
					filled = append(filled, i)
				}
			}
			for _, r := range ka.missing {
				for i := r.Lo; i < r.Hi; i++ {
					s := st.Slots[k][i]
					switch {
					case s == nil || (s.Status != slotOpen && s.Status != slotUnrepairable):
						fresh = append(fresh, i)
					case s.Status == slotUnrepairable:
						if e.opts.ReprobeAfter > 0 && !now.Before(s.Since.Add(e.opts.ReprobeAfter)) {
							due = append(due, i)
						}
					case s.Attempts >= e.opts.Retry.MaxAttempts:
						exhausted = append(exhausted, i)
					default:
						attempts[i] = s.Attempts
					}
				}
			}
		})
		sortInt64(filled)
		sortInt64(fresh)
		if len(filled) > 0 {
			e.ledger.record(ledgerEvent{Kind: "present", Key: k, Slots: span.FromSorted(filled)})
		}
		if len(fresh) > 0 {
			e.ledger.record(ledgerEvent{Kind: "gap", Key: k, Slots: span.FromSorted(fresh)})
			e.observe(Event{Kind: EventGap, Key: k, Window: a.w, Rows: len(fresh)})
		}
		if len(exhausted) > 0 { // budget spent by an earlier run that died before giving up
			sortInt64(exhausted)
			e.giveUp(k, span.FromSorted(exhausted), StageRepair, e.opts.Retry.MaxAttempts, "attempt budget spent")
		}
		sortInt64(due)
		dueSet := span.FromSorted(due)
		elig := append(append([]int64(nil), fresh...), due...)
		for i := range attempts {
			elig = append(elig, i)
		}
		sortInt64(elig)
		eligible := span.FromSorted(elig)
		for _, r := range span.Plan(eligible, maxSpan) {
			holes := eligible.Clip(r)
			p := planned{r: r, key: k, holes: holes, budget: e.opts.Retry.MaxAttempts}
			used := 0
			onlyDue := true
			for _, h := range holes {
				for i := h.Lo; i < h.Hi; i++ {
					used = max(used, attempts[i])
					if !dueSet.Contains(i) {
						onlyDue = false
					}
				}
			}
			p.budget -= used
			if onlyDue {
				p.budget, p.reprobe = 1, true
			}
			p.budget = max(p.budget, 1)
			ps = append(ps, p)
		}
	}
	// Keys whose requests cover the same window share a request, up to MaxKeys.
	ks := make([]span.Keyed, len(ps))
	for i, p := range ps {
		ks[i] = span.Keyed{Key: p.key, R: p.r}
	}
	sorted := make([]planned, len(ps))
	groups := span.Group(ks, e.limits.MaxKeys)
	byKey := map[span.Keyed]planned{}
	for _, p := range ps {
		byKey[span.Keyed{Key: p.key, R: p.r}] = p
	}
	for i, k := range ks {
		sorted[i] = byKey[k]
	}
	var jobs []repairJob
	for _, g := range groups {
		first := sorted[g[0]]
		job := repairJob{req: Request{Window: e.window(first.r)}, holes: map[string]span.Set{}, budget: first.budget, reprobe: true}
		for _, i := range g {
			p := sorted[i]
			job.req.Keys = append(job.req.Keys, p.key)
			job.holes[p.key] = p.holes
			job.budget = min(job.budget, p.budget)
			job.reprobe = job.reprobe && p.reprobe
		}
		jobs = append(jobs, job)
	}
	rep.Requests = len(jobs)
	return jobs
}

type repairResult struct {
	Calls, Repaired, Empty, Unrepairable int
	// LakeErr is set when the source delivered but the lake refused the
	// rows: not the source's fault, so no attempt is counted and the gap
	// is not given up on; the cycle fails and the next one retries.
	LakeErr error
}

// lakeWriteError marks a repair that failed writing to the lake.
type lakeWriteError struct{ err error }

func (e *lakeWriteError) Error() string { return e.err.Error() }
func (e *lakeWriteError) Unwrap() error { return e.err }

// repair runs one job: fetch with backoff until success, a permanent
// error, or the budget is spent.
func (e *Engine) repair(ctx context.Context, j repairJob) repairResult {
	var res repairResult
	b := e.newBackOff()
	for attempt := 1; ; attempt++ {
		res.Calls++
		rec, err := e.fetch(ctx, j.req)
		var got map[string]span.Set
		if err == nil {
			got, err = e.landRepair(ctx, j, rec)
			rec.Release()
		} else if errors.Is(err, ErrNoData) {
			got, err = map[string]span.Set{}, nil
		}
		if err == nil {
			for k, holes := range j.holes {
				filled := span.Intersect(holes, got[k])
				empty := span.Subtract(holes, filled)
				if len(filled) > 0 {
					e.ledger.record(ledgerEvent{Kind: "repaired", Key: k, Slots: filled})
					res.Repaired += int(filled.Count())
					e.observe(Event{Kind: EventRepaired, Key: k, Window: j.req.Window, Rows: int(filled.Count())})
				}
				if len(empty) > 0 {
					e.ledger.record(ledgerEvent{Kind: "empty", Key: k, Slots: empty})
					res.Empty += int(empty.Count())
					e.observe(Event{Kind: EventEmpty, Key: k, Window: j.req.Window, Rows: int(empty.Count())})
				}
			}
			e.stats.add(&e.stats.Repaired, res.Repaired)
			e.stats.add(&e.stats.Empty, res.Empty)
			return res
		}
		if ctx.Err() != nil {
			return res // interrupted: not the source's fault, nothing counted
		}
		if le := (*lakeWriteError)(nil); errors.As(err, &le) {
			res.LakeErr = le.err
			return res
		}
		for k, holes := range j.holes {
			e.ledger.record(ledgerEvent{Kind: "attempt", Key: k, Slots: holes, Err: err.Error()})
		}
		e.log.Warn("repair attempt failed", "keys", j.req.Keys, "window", j.req.Window.String(), "attempt", attempt, "err", err)
		if IsPermanent(err) || attempt >= j.budget {
			if !j.reprobe { // a failed reprobe stays under its first alarm
				for k, holes := range j.holes {
					e.giveUp(k, holes, StageRepair, attempt, err.Error())
					res.Unrepairable += int(holes.Count())
				}
			} else {
				for k, holes := range j.holes {
					e.ledger.record(ledgerEvent{Kind: "unrepairable", Key: k, Slots: holes, Err: err.Error()})
				}
			}
			e.stats.add(&e.stats.Unrepairable, res.Unrepairable)
			return res
		}
		wait := b.NextBackOff()
		var ra *RetryAfterError
		if errors.As(err, &ra) && ra.Wait > wait {
			wait = ra.Wait
		}
		select {
		case <-ctx.Done():
			return res
		case <-e.clock.After(wait):
		}
	}
}

// landRepair writes the fetched rows that fill the job's holes and
// reports, per key, the slots the source returned.
func (e *Engine) landRepair(ctx context.Context, j repairJob, rec arrow.Record) (map[string]span.Set, error) {
	if err := e.ds.CheckSchema(rec.Schema()); err != nil {
		return nil, Permanent(err)
	}
	got := map[string][]int64{}
	out, err := e.keepRows(rec, j.req.Window, func(k string, i int64) bool {
		h, ok := j.holes[k]
		if ok {
			got[k] = append(got[k], i)
		}
		return ok && h.Contains(i)
	})
	if err != nil {
		return nil, err
	}
	defer out.Release()
	if out.NumRows() > 0 {
		if err := e.lake.Write(sourceWriteCtx(ctx, j.req.Window.End), e.ds, out); err != nil {
			return nil, &lakeWriteError{fmt.Errorf("heal: repair %s: write: %w", j.req.Window, err)}
		}
		e.stats.add(&e.stats.RowsWritten, int(out.NumRows()))
		e.observe(Event{Kind: EventWrite, Key: firstKey(j.req.Keys), Window: j.req.Window, Rows: int(out.NumRows())})
	}
	res := make(map[string]span.Set, len(got))
	for k, idx := range got {
		sortInt64(idx)
		res[k] = span.FromSorted(idx)
	}
	return res, nil
}

// giveUp marks slots unrepairable and opens one alarm for them; when they
// continue an open alarm of the key (adjacent or overlapping: an outage that
// two audits, or two requests, cut in pieces), it extends that alarm
// instead, so that one outage raises one alarm.
func (e *Engine) giveUp(key string, slots span.Set, stage Stage, attempts int, lastErr string) {
	e.alarmMu.Lock()
	defer e.alarmMu.Unlock()
	now := e.clock.Now().UTC()
	e.ledger.record(ledgerEvent{Kind: "unrepairable", Key: key, Slots: slots, Err: lastErr})
	var open *alarmRecord
	e.ledger.view(func(st *ledgerState) {
		for _, a := range st.Alarms {
			if a.Key == key && a.Stage == stage && !a.Resolved && touches(a.Slots, slots) {
				c := *a
				open = &c
				break
			}
		}
	})
	if open != nil {
		open.Slots = span.Union(append(span.Set(nil), open.Slots...), slots)
		open.Attempts = max(open.Attempts, attempts)
		open.LastError = lastErr
		e.ledger.record(ledgerEvent{Kind: "alarm", Alarm: open})
		return
	}
	e.ledger.record(ledgerEvent{Kind: "alarm", Alarm: &alarmRecord{
		ID:  fmt.Sprintf("%s/%s/%d", stage, key, slots[0].Lo),
		Key: key, Stage: stage, Slots: slots, Attempts: attempts, LastError: lastErr, At: now,
	}})
}

// touches reports whether a range of a overlaps or adjoins a range of b.
func touches(a, b span.Set) bool {
	for _, x := range a {
		for _, y := range b {
			if x.Lo <= y.Hi && y.Lo <= x.Hi {
				return true
			}
		}
	}
	return false
}

// resolveAlarms marks alarms whose slots are all filled or confirmed empty.
func (e *Engine) resolveAlarms() {
	var done []string
	e.ledger.view(func(st *ledgerState) {
		for id, a := range st.Alarms {
			if a.Resolved || a.Stage != StageRepair || !e.opts.Shard.Owns(a.Key) {
				continue
			}
			ok := true
			for _, r := range a.Slots {
				for i := r.Lo; i < r.Hi && ok; i++ {
					s := st.Slots[a.Key][i]
					ok = s != nil && (s.Status == slotRepaired || s.Status == slotEmpty || s.Status == slotPresent)
				}
			}
			if ok {
				done = append(done, id)
			}
		}
	})
	for _, id := range done {
		e.ledger.record(ledgerEvent{Kind: "resolved", Alarm: &alarmRecord{ID: id}})
	}
}

// deliverAlarms sends every alarm and resolved notice not delivered yet.
// Delivery is at least once: a crash between sending and recording sends
// again on the next cycle.
func (e *Engine) deliverAlarms(ctx context.Context) (alarms, resolved int) {
	var todo []alarmRecord
	e.ledger.view(func(st *ledgerState) {
		for _, a := range st.Alarms {
			if !e.opts.Shard.Owns(a.Key) {
				continue // another shard's engine delivers it
			}
			if !a.Delivered || (a.Resolved && !a.Notified) {
				todo = append(todo, *a)
			}
		}
	})
	sort.Slice(todo, func(i, j int) bool { return todo[i].ID < todo[j].ID })
	for _, a := range todo {
		if !a.Delivered && !a.Resolved {
			if err := e.opts.Alarmer.Alarm(ctx, e.alarmOf(&a, false)); err != nil {
				e.log.Error("alarmer failed; the alarm is retried next cycle", "err", err)
				continue
			}
			a.Delivered = true
			e.ledger.record(ledgerEvent{Kind: "alarm", Alarm: &a})
			alarms++
			e.stats.add(&e.stats.Alarms, 1)
			e.observe(Event{Kind: EventAlarm, Key: a.Key, Window: e.spanWindow(a.Slots)})
			continue
		}
		if a.Resolved && !a.Notified {
			if a.Delivered { // a resolved notice only follows an alarm that was sent
				if err := e.opts.Alarmer.Alarm(ctx, e.alarmOf(&a, true)); err != nil {
					e.log.Error("alarmer failed; the notice is retried next cycle", "err", err)
					continue
				}
				resolved++
				e.stats.add(&e.stats.Resolved, 1)
				e.observe(Event{Kind: EventResolved, Key: a.Key, Window: e.spanWindow(a.Slots)})
			}
			a.Notified, a.Delivered = true, true
			e.ledger.record(ledgerEvent{Kind: "alarm", Alarm: &a})
		}
	}
	return alarms, resolved
}

func (e *Engine) spanWindow(s []span.Range) Window {
	if len(s) == 0 {
		return Window{}
	}
	return Window{e.at(s[0].Lo), e.at(s[len(s)-1].Hi)}
}

func (e *Engine) alarmOf(a *alarmRecord, resolved bool) Alarm {
	return Alarm{
		Dataset: e.ds.Name, Key: a.Key, Window: e.spanWindow(a.Slots), Stage: a.Stage,
		Attempts: a.Attempts, LastError: a.LastError, Resolved: resolved, At: e.clock.Now().UTC(),
	}
}

// newBackOff builds a fresh policy per operation: backoff's state is not
// safe to share.
func (e *Engine) newBackOff() backoff.BackOff {
	p := e.opts.Retry
	b := backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(p.InitialInterval),
		backoff.WithMaxInterval(p.MaxInterval),
		backoff.WithMultiplier(p.Multiplier),
		backoff.WithRandomizationFactor(p.Jitter),
		backoff.WithMaxElapsedTime(0),
		backoff.WithClockProvider(clockAdapter{e.clock}),
	)
	return b
}

type clockAdapter struct{ c Clock }

func (a clockAdapter) Now() time.Time { return a.c.Now() }
