package heal

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/selfheal/heal/internal/span"
)

// JobVersion is the version of the [Job] encoding this release writes. It
// reads only this version: a job of another one is refused as permanent, so
// a queue shared by two releases during an upgrade dead-letters what the
// older workers cannot read instead of misreading it.
const JobVersion = 1

// JobKind names what a [Job] does.
type JobKind string

// The kinds of job an engine plans.
const (
	// JobAcquire polls the live slot Window for Keys (a tick of Run).
	JobAcquire JobKind = "acquire"
	// JobRepair fetches the historical Window for Keys and lands the rows
	// that fill Slots, the holes an audit found; then it recomputes the
	// derived windows those holes affect.
	JobRepair JobKind = "repair"
	// JobResynth recomputes the derived windows that the input Slots of
	// each key affect and that end by Window.End.
	JobResynth JobKind = "resynthesize"
)

// Job is one unit of the work an [Engine] plans, small and serialisable so
// that it can travel through a queue to another process: a live tick for a
// set of keys, a repair of keys over a window, or a resynthesis of derived
// windows. An engine with Options.Dispatcher hands its jobs to the
// dispatcher instead of running them; a worker runs each with
// [Engine.RunJob], the same code the embedded engine runs.
//
// Jobs are idempotent: running one twice, or two workers running the same
// one at once, leaves the lake as running it once. A repair re-reads the
// lake's inventory for its keys and window when it starts and fetches and
// writes only the slots still missing, so a redelivered job whose first run
// committed does nothing but the (idempotent) resynthesis; a derivation
// replaces the rows of its window; a live tick skips the keys whose slot is
// already stored. Two runs racing through the same holes (both read the
// inventory before either wrote) write the source's rows under the job's
// ID ([WithIdempotencyKey]): on a lake that supports it, such as
// [github.com/selfheal/heal/sink.Lake], the file each names in a partition
// is the same, its create-only commit lets one run store it, and the other
// run's rows there are dropped, so no copy is left. On other lakes both
// store them; a (key, time) stored twice reads back once and the next
// audit compacts the copy away. Derived windows are recomputed by both
// runs, the newest computation winning, as in any resynthesis.
type Job struct {
	Version int      `json:"v"` // JobVersion
	Kind    JobKind  `json:"kind"`
	Dataset string   `json:"dataset"` // the engine's dataset
	Keys    []string `json:"keys"`
	// Window is the slot polled (acquire), the window requested (repair),
	// or the cycle's window, whose end bounds which derived windows are
	// closed (resynthesize).
	Window Window `json:"window"`
	// Slots are, per key, the holes to fill (repair) or the input slots
	// whose derived windows to recompute (resynthesize), aligned to the
	// grain.
	Slots   map[string][]Window `json:"slots,omitempty"`
	Budget  int                 `json:"budget,omitempty"`  // repair: fetch attempts allowed
	Reprobe bool                `json:"reprobe,omitempty"` // repair: the holes were given up on; a failure does not alarm again
}

// ID identifies the job by its content: the first 16 hex digits of the
// SHA-256 of its encoding. Two jobs with the same ID do the same work.
func (j Job) ID() string {
	b, _ := json.Marshal(j) // map keys are sorted: the encoding is stable
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:8])
}

// String is a short description for logs: kind, dataset, keys and window.
func (j Job) String() string {
	keys := fmt.Sprint(j.Keys)
	if len(j.Keys) > 3 {
		keys = fmt.Sprintf("[%s %s ... %d keys]", j.Keys[0], j.Keys[1], len(j.Keys))
	}
	return fmt.Sprintf("%s %s %s %s", j.Kind, j.Dataset, keys, j.Window)
}

// ParseJob decodes a job encoded with encoding/json. A job of another
// [JobVersion], or one that does not decode, is refused with an error for
// which [IsPermanent] is true: retrying it cannot help.
func ParseJob(b []byte) (Job, error) {
	var j Job
	if err := json.Unmarshal(b, &j); err != nil {
		return Job{}, Permanent(fmt.Errorf("heal: job: decode: %w", err))
	}
	if j.Version != JobVersion {
		return Job{}, Permanent(fmt.Errorf("heal: job: version %d, this release reads version %d", j.Version, JobVersion))
	}
	return j, nil
}

// Dispatcher receives the jobs an engine plans, to run them elsewhere (see
// Options.Dispatcher). [github.com/selfheal/heal/dispatch] sends them to an
// SQS queue.
type Dispatcher interface {
	// Dispatch hands jobs over. When it returns nil every job is durably
	// queued. On an error some may have been: the next cycle plans again
	// what is still missing, and a job queued twice runs twice harmlessly.
	// Dispatch may be called concurrently.
	Dispatch(ctx context.Context, jobs []Job) error
}

// DispatcherFunc adapts a function to a [Dispatcher].
type DispatcherFunc func(ctx context.Context, jobs []Job) error

// Dispatch calls f.
func (f DispatcherFunc) Dispatch(ctx context.Context, jobs []Job) error { return f(ctx, jobs) }

// RunJob runs one job, as a worker does with the jobs it takes from a
// queue, and returns when its writes and its ledger records are committed
// to the lake: only then may the job be deleted from the queue. An error
// means the job did not complete and should run again; one for which
// [IsPermanent] is true (a job for another dataset, a malformed job, an
// engine without a Source) cannot succeed by running again.
//
// A repair's failed fetches count against the job's attempt budget and,
// when it is spent, raise an alarm as in the embedded mode: the alarm is
// recorded in the ledger and delivered by the engine that audits the key.
// The worker's engine needs the same dataset, Source, Lake, Rule and
// Transformers as the engine that planned the job; it need not have Keys.
func (e *Engine) RunJob(ctx context.Context, j Job) error {
	if err := e.checkJob(j); err != nil {
		return Permanent(err)
	}
	e.ledger.mu.Lock()
	e.ledger.appendOnly = true // a worker appends; it need not fold the log
	e.ledger.mu.Unlock()
	ctx = withJob(ctx, j)
	switch j.Kind {
	case JobAcquire:
		keys, err := e.missingKeys(ctx, j)
		if err != nil || len(keys) == 0 {
			return err
		}
		_, err = e.acquire(ctx, j.Window.Start, keys)
		return err
	case JobRepair:
		return e.runRepair(ctx, j)
	default: // JobResynth
		_, err := e.resynth(withStage(ctx, StageResynth), e.jobSlots(j), true, j.Window.End)
		return errors.Join(err, e.ledger.flush(ctx))
	}
}

func (e *Engine) checkJob(j Job) error {
	if j.Version != JobVersion {
		return fmt.Errorf("heal: job %s: version %d, this release runs version %d", j.ID(), j.Version, JobVersion)
	}
	if j.Dataset != e.ds.Name {
		return fmt.Errorf("heal: job %s: dataset %q, this engine keeps %q", j.ID(), j.Dataset, e.ds.Name)
	}
	if len(j.Keys) == 0 {
		return fmt.Errorf("heal: job %s: no keys", j.ID())
	}
	for i, k := range j.Keys {
		if err := ValidKey(k); err != nil {
			return fmt.Errorf("heal: job %s: Keys[%d]: %w", j.ID(), i, err)
		}
	}
	if j.Window.Empty() || j.Window.Align(e.ds.Grain) != j.Window {
		return fmt.Errorf("heal: job %s: window %s is empty or not aligned to the grain %s", j.ID(), j.Window, e.ds.Grain)
	}
	switch j.Kind {
	case JobAcquire, JobRepair:
		if e.src == nil {
			return errNoSource
		}
		if len(j.Keys) > e.limits.MaxKeys {
			return fmt.Errorf("heal: job %s: %d keys, the source takes %d per request", j.ID(), len(j.Keys), e.limits.MaxKeys)
		}
		if j.Kind == JobRepair && e.limits.MaxWindow > 0 && j.Window.Duration() > e.limits.MaxWindow {
			return fmt.Errorf("heal: job %s: window %s is longer than the source's %s", j.ID(), j.Window, e.limits.MaxWindow)
		}
	case JobResynth:
	default:
		return fmt.Errorf("heal: job %s: unknown kind %q", j.ID(), j.Kind)
	}
	return nil
}

// present returns, per key of j, the slots of j.Window the lake holds now.
func (e *Engine) present(ctx context.Context, j Job) (map[string]span.Set, error) {
	runs := map[string][]span.Range{}
	err := e.lake.Inventory(ctx, e.ds, Query{Keys: j.Keys, Window: j.Window}, func(p PartitionInfo) error {
		runs[p.Partition.Key] = p.Present.appendRuns(runs[p.Partition.Key])
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("heal: job %s: inventory: %w", j.ID(), err)
	}
	out := make(map[string]span.Set, len(runs))
	for k, r := range runs {
		out[k] = span.Normalize(r)
	}
	return out, nil
}

// missingKeys returns the keys of an acquire job whose slot is not stored.
func (e *Engine) missingKeys(ctx context.Context, j Job) ([]string, error) {
	have, err := e.present(ctx, j)
	if err != nil {
		return nil, err
	}
	var keys []string
	for _, k := range j.Keys {
		if len(have[k]) == 0 {
			keys = append(keys, k)
		}
	}
	return keys, nil
}

// runRepair is RunJob for a repair: fetch and land only what is still
// missing, then recompute the derived windows of every hole of the job,
// filled now or by an earlier run that died before recomputing them.
func (e *Engine) runRepair(ctx context.Context, j Job) error {
	holes := e.jobSlots(j)
	have, err := e.present(ctx, j)
	if err != nil {
		return err
	}
	rj := repairJob{req: Request{Window: j.Window}, holes: map[string]span.Set{}, budget: max(j.Budget, 1), reprobe: j.Reprobe}
	for _, k := range j.Keys {
		h := holes[k]
		if done := span.Intersect(h, have[k]); len(done) > 0 {
			e.ledger.record(ledgerEvent{Kind: "present", Key: k, Slots: done})
		}
		if rest := span.Subtract(h, have[k]); len(rest) > 0 {
			rj.req.Keys = append(rj.req.Keys, k)
			rj.holes[k] = rest
		}
	}
	if len(rj.holes) > 0 {
		r := e.repair(withStage(ctx, StageRepair), rj)
		if r.LakeErr != nil {
			e.lakeWrite(ctx, j.Window, r.LakeErr)
			return errors.Join(r.LakeErr, e.ledger.flush(context.WithoutCancel(ctx)))
		}
		if err := ctx.Err(); err != nil {
			return err // interrupted: the job runs again
		}
	}
	if len(e.opts.Transformers) > 0 {
		limit := e.ds.Slot(e.clock.Now().Add(-e.opts.Settle))
		if _, err := e.resynth(withStage(ctx, StageResynth), holes, true, limit); err != nil {
			return err
		}
	}
	return e.ledger.flush(ctx)
}

// jobSlots converts the job's per-key windows to slot sets.
func (e *Engine) jobSlots(j Job) map[string]span.Set {
	out := make(map[string]span.Set, len(j.Slots))
	for k, ws := range j.Slots {
		out[k] = e.toSet(ws)
	}
	return out
}

func (e *Engine) windows(s span.Set) []Window {
	out := make([]Window, len(s))
	for i, r := range s {
		out[i] = e.window(r)
	}
	return out
}

// jobOf turns a planned repair into a Job.
func (e *Engine) jobOf(p repairJob) Job {
	j := Job{
		Version: JobVersion, Kind: JobRepair, Dataset: e.ds.Name,
		Keys: append([]string(nil), p.req.Keys...), Window: p.req.Window,
		Slots: make(map[string][]Window, len(p.holes)), Budget: p.budget, Reprobe: p.reprobe,
	}
	for k, h := range p.holes {
		j.Slots[k] = e.windows(h)
	}
	return j
}

// dispatchCycle is Heal's distributed mode: the planned repairs go to the
// dispatcher, with one resynthesis job per key for the derived windows left
// dirty by earlier cycles (those of this cycle's holes are the repair
// jobs' to recompute, after their rows land) or missing.
func (e *Engine) dispatchCycle(ctx context.Context, w Window, a *auditResult, planned []repairJob, rep *CycleReport) error {
	jobs := make([]Job, 0, len(planned))
	sent := map[string]span.Set{}
	for _, p := range planned {
		jobs = append(jobs, e.jobOf(p))
		for k, h := range p.holes {
			sent[k] = span.Union(sent[k], h)
		}
	}
	if len(e.opts.Transformers) > 0 {
		resyn := map[string]span.Set{}
		e.ledger.view(func(st *ledgerState) {
			for k, s := range st.Dirty {
				if rest := span.Subtract(s, sent[k]); len(rest) > 0 && e.opts.Shard.Owns(k) {
					resyn[k] = rest
				}
			}
		})
		tasks, err := e.missingDerives(withStage(ctx, StageResynth), w, a)
		if err != nil {
			return err
		}
		for _, t := range tasks {
			resyn[t.key] = span.Union(resyn[t.key], e.toSet([]Window{t.out}))
		}
		keys := make([]string, 0, len(resyn))
		for k := range resyn {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			jobs = append(jobs, Job{
				Version: JobVersion, Kind: JobResynth, Dataset: e.ds.Name, Keys: []string{k},
				Window: w, Slots: map[string][]Window{k: e.windows(resyn[k])},
			})
		}
	}
	if len(jobs) == 0 {
		return nil
	}
	if err := e.opts.Dispatcher.Dispatch(ctx, jobs); err != nil {
		return fmt.Errorf("heal: dispatch %d jobs: %w", len(jobs), err)
	}
	rep.Dispatched = len(jobs)
	e.log.Info("dispatched", "jobs", len(jobs), "repairs", len(planned), "window", w.String())
	return nil
}

// dispatchAcquire is Acquire's distributed mode: one job per request.
func (e *Engine) dispatchAcquire(ctx context.Context, t time.Time) error {
	slot := e.ds.Slot(t)
	var jobs []Job
	for _, c := range chunks(e.opts.Keys, e.limits.MaxKeys) {
		jobs = append(jobs, Job{
			Version: JobVersion, Kind: JobAcquire, Dataset: e.ds.Name,
			Keys: append([]string(nil), c...), Window: Window{slot, slot.Add(e.ds.Grain)},
		})
	}
	if len(jobs) == 0 {
		return nil
	}
	if err := e.opts.Dispatcher.Dispatch(ctx, jobs); err != nil {
		return fmt.Errorf("heal: dispatch the tick %s: %w", slot.Format(time.RFC3339), err)
	}
	return nil
}
