package heal_test

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/selfheal/heal"
)

// collect is a Dispatcher that runs every job it is handed through a
// worker engine, twice, as a queue redelivering each job would: the
// distributed mode with the queue taken out.
type collect struct {
	mu     sync.Mutex
	worker *heal.Engine
	jobs   []heal.Job
	runs   int
}

func (c *collect) Dispatch(ctx context.Context, jobs []heal.Job) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, j := range jobs {
		b := mustJSON(j)
		got, err := heal.ParseJob(b) // through the wire format
		if err != nil {
			return err
		}
		if got.ID() != j.ID() {
			return fmt.Errorf("job %s decodes as %s", j.ID(), got.ID())
		}
		for range 2 {
			if err := c.worker.RunJob(ctx, got); err != nil {
				return err
			}
			c.runs++
		}
		c.jobs = append(c.jobs, j)
	}
	return nil
}

// TestDistributedMatchesEmbedded runs the same day, with the same glitches,
// once embedded and once with every job handed to a worker engine and run
// twice: the lakes end equal, raw and derived, and the jobs of every kind
// were planned.
func TestDistributedMatchesEmbedded(t *testing.T) {
	drop := func(k string, s time.Time) bool { return (s.Minute()+len(k))%7 == 0 }
	run := func(distributed bool) (*rig, *collect, []*heal.CycleReport) {
		r := newRig(t)
		r.src.drop = drop
		var c *collect
		if distributed {
			wopts := *r.opts
			wopts.Keys = nil // a worker needs the pipeline, not the key list
			w, err := heal.New(ticks(), r.src, r.lake, &wopts)
			if err != nil {
				t.Fatal(err)
			}
			c = &collect{worker: w}
			r.opts.Dispatcher = c
		}
		e := r.engine(t)
		win := heal.Window{Start: day.Start, End: day.Start.Add(2 * time.Hour)}
		r.live(t, e, heal.Window{Start: win.Start, End: win.Start.Add(time.Hour)})
		r.clock.Set(win.End.Add(5 * time.Minute))
		var reps []*heal.CycleReport
		for range 2 {
			rep, err := e.Heal(r.ctx, win)
			if err != nil {
				t.Fatal(err)
			}
			reps = append(reps, rep)
		}
		return r, c, reps
	}
	emb, _, embReps := run(false)
	dist, c, distReps := run(true)

	if embReps[0].Repaired == 0 || embReps[0].Dispatched != 0 {
		t.Fatalf("embedded cycle: %+v; want repairs done here", embReps[0])
	}
	if distReps[0].Dispatched == 0 || distReps[0].Repaired != 0 {
		t.Fatalf("distributed cycle: %+v; want repairs dispatched, none done here", distReps[0])
	}
	if distReps[1].Missing != 0 {
		t.Errorf("after the distributed cycle's jobs ran, the next audit found %d slots missing", distReps[1].Missing)
	}
	kinds := map[heal.JobKind]int{}
	for _, j := range c.jobs {
		kinds[j.Kind]++
	}
	t.Logf("jobs by kind: %v", kinds)
	if kinds[heal.JobAcquire] == 0 || kinds[heal.JobRepair] == 0 || kinds[heal.JobResynth] == 0 {
		t.Errorf("jobs by kind %v; want jobs of every kind", kinds)
	}
	for _, ds := range []*heal.Dataset{ticks(), hourly{}.Output()} {
		a, an, err := scanAll(emb.ctx, emb.lake, ds)
		if err != nil {
			t.Fatal(err)
		}
		b, bn, err := scanAll(dist.ctx, dist.lake, ds)
		if err != nil {
			t.Fatal(err)
		}
		if an == 0 || an != bn || !reflect.DeepEqual(a, b) {
			t.Errorf("%s: embedded lake has %d rows, distributed %d; want the same rows", ds.Name, an, bn)
		}
	}
	// Each job ran twice: the second run wrote nothing.
	inv := 0
	if err := dist.lake.Inventory(dist.ctx, ticks(), heal.Query{}, func(p heal.PartitionInfo) error {
		inv += int(p.Duplicates())
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if inv != 0 {
		t.Errorf("%d duplicate rows after every job ran twice; want 0", inv)
	}
}

// holeyHour returns a rig without transformers whose first hour was
// polled live with a slot of every key in seven dropped, and the clock
// past that hour.
func holeyHour(t *testing.T) (*rig, heal.Window) {
	r := newRig(t)
	r.opts.Transformers = nil
	r.src.drop = func(k string, s time.Time) bool { return (s.Minute()+len(k))%7 == 0 }
	hour := heal.Window{Start: day.Start, End: day.Start.Add(time.Hour)}
	r.live(t, r.engine(t), hour)
	r.clock.Set(hour.End.Add(5 * time.Minute))
	return r, hour
}

// TestRacingRunsWriteOnce hands each repair job to two workers at once,
// both past their inventory read before either writes (the source holds
// their fetches until both are in): the lake ends with each hole filled by
// one file, without the copy that two plain writes would leave until
// compaction.
func TestRacingRunsWriteOnce(t *testing.T) {
	r, hour := holeyHour(t)

	var jobs []heal.Job
	r.opts.Dispatcher = heal.DispatcherFunc(func(_ context.Context, js []heal.Job) error {
		jobs = append(jobs, js...)
		return nil
	})
	if _, err := r.engine(t).Heal(r.ctx, hour); err != nil {
		t.Fatal(err)
	}
	r.opts.Dispatcher = nil
	wopts := *r.opts
	wopts.Keys = nil
	workers := make([]*heal.Engine, 2)
	for i := range workers {
		w, err := heal.New(ticks(), r.src, r.lake, &wopts)
		if err != nil {
			t.Fatal(err)
		}
		workers[i] = w
	}
	files := func() (n int) {
		if err := r.lake.Inventory(r.ctx, ticks(), heal.Query{}, func(p heal.PartitionInfo) error {
			n += p.Files
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return n
	}
	repairs := 0
	for _, j := range jobs {
		if j.Kind != heal.JobRepair {
			continue
		}
		repairs++
		before, calls := files(), r.src.calls.Load()
		gate := make(chan struct{})
		r.src.mu.Lock()
		for _, k := range j.Keys {
			r.src.block[k] = gate
		}
		r.src.mu.Unlock()
		var wg sync.WaitGroup
		errs := make([]error, len(workers))
		for i, w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = w.RunJob(r.ctx, j)
			}()
		}
		for deadline := time.Now().Add(30 * time.Second); r.src.calls.Load() < calls+2; {
			if time.Now().After(deadline) {
				t.Fatalf("job %s: the two runs did not both fetch", j)
			}
			time.Sleep(time.Millisecond)
		}
		close(gate)
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("job %s, run %d: %v", j, i, err)
			}
		}
		// One file per key (the job's window lies in one day), not two.
		if added := files() - before; added != len(j.Keys) {
			t.Errorf("job %s run twice at once added %d files; want %d, one per key", j, added, len(j.Keys))
		}
	}
	if repairs == 0 {
		t.Fatal("no repair job planned")
	}
	t.Logf("%d repair jobs, each run by two workers at once", repairs)
	dups := 0
	if err := r.lake.Inventory(r.ctx, ticks(), heal.Query{}, func(p heal.PartitionInfo) error {
		dups += int(p.Duplicates())
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if dups != 0 {
		t.Errorf("%d duplicate rows after every repair job ran twice at once; want 0", dups)
	}
	rep, err := r.engine(t).Audit(r.ctx, hour)
	if err != nil {
		t.Fatal(err)
	}
	if g := gapsOf(rep); len(g) != 0 {
		t.Errorf("gaps left after the racing runs: %v", g)
	}
}

// noCompact hides a lake's Compactor, so that the copies a test looks for
// are not merged away at the end of a cycle.
type noCompact struct {
	heal.Lake
	heal.MetaStore
}

// TestOverlappingShardsStoreOnce: while the shard count changes, an engine
// of the old count (1) and one of the new (2) both own a key and repair
// its holes at once, each under its own lease. Both fetch them; the rows
// are stored once, because each engine writes them under the ID of the
// same planned job. (Compaction is off: it would merge a copy away.)
func TestOverlappingShardsStoreOnce(t *testing.T) {
	r, hour := holeyHour(t)

	key := keys[0]
	gate := make(chan struct{})
	r.src.mu.Lock()
	r.src.block[key] = gate
	r.src.mu.Unlock()
	fetched := func() (n int) {
		for _, q := range r.src.requests() {
			if slices.Contains(q.Keys, key) {
				n++
			}
		}
		return n
	}
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, sh := range []heal.Shard{{Index: 0, Count: 1}, {Index: heal.ShardOf(key, 2), Count: 2}} {
		o := *r.opts
		o.Shard = sh
		e, err := heal.New(ticks(), r.src, noCompact{r.lake, r.lake}, &o)
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = e.Heal(r.ctx, hour)
		}()
	}
	for deadline := time.Now().Add(30 * time.Second); fetched() < 2; {
		if time.Now().After(deadline) {
			close(gate)
			wg.Wait()
			t.Fatalf("%s: %d fetches; want both engines to fetch its holes", key, fetched())
		}
		time.Sleep(time.Millisecond)
	}
	close(gate)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("engine %d: %v", i, err)
		}
	}
	if err := r.lake.Inventory(r.ctx, ticks(), heal.Query{Keys: []string{key}}, func(p heal.PartitionInfo) error {
		if d := p.Duplicates(); d != 0 {
			t.Errorf("%s: %d duplicate rows after two engines repaired it at once; want 0", p.Partition, d)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// TestRunJobRefuses checks a worker refuses, as permanent, what it cannot run.
func TestRunJobRefuses(t *testing.T) {
	r := newRig(t)
	e := r.engine(t)
	ok := heal.Job{Version: heal.JobVersion, Kind: heal.JobRepair, Dataset: "ticks", Keys: []string{"A"},
		Window: heal.Window{Start: day.Start, End: day.Start.Add(time.Minute)}}
	for name, mut := range map[string]func(j *heal.Job){
		"version":   func(j *heal.Job) { j.Version = 2 },
		"dataset":   func(j *heal.Job) { j.Dataset = "quotes" },
		"kind":      func(j *heal.Job) { j.Kind = "explode" },
		"no keys":   func(j *heal.Job) { j.Keys = nil },
		"unaligned": func(j *heal.Job) { j.Window.End = j.Window.End.Add(time.Second) },
		"too long":  func(j *heal.Job) { j.Window.End = j.Window.Start.Add(2 * time.Hour) },
	} {
		j := ok
		mut(&j)
		if err := e.RunJob(r.ctx, j); err == nil || !heal.IsPermanent(err) {
			t.Errorf("%s: RunJob = %v; want a permanent error", name, err)
		}
	}
	if _, err := heal.ParseJob([]byte(`{"v":9,"kind":"repair"}`)); !heal.IsPermanent(err) {
		t.Errorf("ParseJob of version 9 = %v; want a permanent error", err)
	}
	if err := e.RunJob(r.ctx, ok); err != nil {
		t.Errorf("RunJob of a valid job: %v", err)
	}
}

// TestShardsSplitKeys checks that shards of one count audit disjoint keys
// covering all of them, repairing each gap once, and that after the count
// changes the new owners carry on from the ledger: a slot the source
// confirmed empty under three shards is not fetched again under two.
func TestShardsSplitKeys(t *testing.T) {
	for _, n := range []int{2, 3, 7} {
		moved := 0
		for _, k := range []string{"AAPL", "MSFT", "NVDA", "TSLA", "V", "AMZN", "GOOG", "META", "IBM", "KO"} {
			s := heal.ShardOf(k, n)
			if s < 0 || s >= n || s != heal.ShardOf(k, n) {
				t.Fatalf("ShardOf(%q, %d) = %d", k, n, s)
			}
			if s2 := heal.ShardOf(k, n+1); s2 != s {
				moved++
				if s2 != n {
					t.Errorf("going from %d to %d shards moved %q to shard %d; keys move only to the new shard", n, n+1, k, s2)
				}
			}
		}
		if moved > 5 {
			t.Errorf("going from %d to %d shards moved %d of 10 keys", n, n+1, moved)
		}
	}

	r := newRig(t)
	r.opts.Transformers = nil
	r.src.drop = func(_ string, s time.Time) bool { return s.Minute()%10 == 0 }
	empty := day.Start.Add(30 * time.Minute) // dropped live, and the source has nothing for it
	for _, k := range keys {
		r.src.noData[k] = map[time.Time]bool{empty: true}
	}
	hour := heal.Window{Start: day.Start, End: day.Start.Add(time.Hour)}
	r.live(t, r.engine(t), hour)
	r.clock.Set(hour.End.Add(time.Minute))

	heals := func(n int) (missing int) {
		var wg sync.WaitGroup
		var mu sync.Mutex
		for i := range n {
			o := *r.opts
			o.Shard = heal.Shard{Index: i, Count: n}
			e, err := heal.New(ticks(), r.src, r.lake, &o)
			if err != nil {
				t.Fatal(err)
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				rep, err := e.Heal(r.ctx, hour)
				if err != nil {
					t.Error(err)
					return
				}
				if rep.LeaseHeldBy != "" {
					t.Errorf("shard %d of %d found its lease held by %s; shards must not share one", i, n, rep.LeaseHeldBy)
				}
				mu.Lock()
				missing += rep.Missing
				mu.Unlock()
			}()
		}
		wg.Wait()
		return missing
	}
	if m := heals(3); m != 6*len(keys) {
		t.Errorf("three shards found %d slots missing; want %d, each key's once", m, 6*len(keys))
	}
	seen := map[string]int{}
	for _, req := range r.src.requests() {
		for _, k := range req.Keys {
			seen[k]++
		}
	}
	for _, k := range keys {
		if seen[k] != 1 {
			t.Errorf("key %s was repaired by %d requests; want 1", k, seen[k])
		}
	}
	calls := len(r.src.requests())
	if m := heals(2); m != 0 {
		t.Errorf("two shards after three found %d slots missing; want 0 (the empty slot is confirmed in the shared ledger)", m)
	}
	if n := len(r.src.requests()); n != calls {
		t.Errorf("two shards made %d more requests; want none", n-calls)
	}
	o := *r.opts
	o.Shard = heal.Shard{Index: 3, Count: 3}
	if _, err := heal.New(ticks(), r.src, r.lake, &o); err == nil {
		t.Errorf("New accepted shard 3 of 3")
	}
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}
