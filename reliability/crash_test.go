package reliability

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apache/arrow/go/v17/arrow/memory"

	"github.com/selfheal/heal"
	"github.com/selfheal/heal/healtest"
	"github.com/selfheal/heal/internal/span"
	"github.com/selfheal/heal/sink"
)

// crashLease is the children's heal lease: a killed child holds it this
// long (simulated), so the healing engine starts after it expires.
const crashLease = 10 * time.Minute

// targets are the kinds of store operation a targeted kill waits for (the
// probeStore's names), so that every kind is hit whatever the timing.
var targets = []string{
	"live-write", "repair-write", "resynth-write", "live-derive-write",
	"compact-write", "compact-delete", "ledger-append", "lease-put",
}

// TestCrashConsistency runs an engine (live ticks, heals, compaction,
// resynthesis) in a child process over a DirStore lake and kills it with
// SIGKILL at seeded moments: half of them just after the child announced a
// chosen kind of store operation (a live or repair write, a resynthesis, a
// compaction's merged file or its deletes, a ledger append, the lease),
// the others after a random delay. After each kill a fresh engine in this
// process heals the lake, and the test checks, before and after:
//
//   - Scan and Inventory succeed, nothing was quarantined (no partial or
//     unreadable file is visible), and Scan returns each (key, time) once;
//   - every row held before the kill is still there, with its value (no
//     lost write; completeness as before or better);
//   - after the heal every expected slot is held or confirmed empty, the
//     derived hours equal a recomputation from raw, the ledger agrees with
//     the data (repaired slots are present, empty slots are truly empty,
//     nothing unrepairable, no alarm);
//   - temporary files left by the kill are removed by Compact, after which
//     every partition is one file without duplicates.
func TestCrashConsistency(t *testing.T) {
	kills := *flagKills
	if kills <= 0 {
		kills = envInt("HEAL_KILLS", 50)
	}
	seed := *flagSeed
	if seed == 0 {
		seed = uint64(envInt("HEAL_CRASH_SEED", 1))
	}
	rng := rand.New(rand.NewPCG(seed, 0xc4a5))
	dir := t.TempDir()
	st := &crashState{dir: dir, next: origin, inside: map[string]int{}, phases: map[string]int{}}
	// The timeline starts with a few healthy hours, so that the first
	// kills land in a lake with history to lose.
	st.seed(t)
	start := time.Now()
	for i := 0; i < kills && !t.Failed(); i++ {
		st.killOne(t, i, rng)
		if t.Failed() {
			break
		}
		st.verify(t)
	}
	var kinds []string
	for k, n := range st.inside {
		kinds = append(kinds, fmt.Sprintf("%s=%d", k, n))
	}
	sort.Strings(kinds)
	var phases []string
	for k, n := range st.phases {
		phases = append(phases, fmt.Sprintf("%s=%d", k, n))
	}
	sort.Strings(phases)
	t.Logf("reliability: crash: kills=%d seed=%d targeted=%d random=%d in-flight-at-kill: %s; steps: %s; idle-at-kill=%d; temp-files-left=%d cleaned=%d; rows-checked=%d rows-lost=%d; derived-hours-checked=%d; slots-repaired-after-kills=%d; simulated=%s; wall=%s",
		st.kills, seed, st.targeted, st.kills-st.targeted, strings.Join(kinds, " "), strings.Join(phases, " "), st.idle, st.temps, st.cleaned,
		st.rowsChecked, st.rowsLost, st.hoursChecked, st.repaired, st.next.Sub(origin).Round(time.Minute), time.Since(start).Round(time.Second))
}

type crashState struct {
	dir  string
	next time.Time // where the next child's clock starts
	prev map[slotKey]float64
	// healEnd is the end of the window the last verification healed.
	healEnd time.Time

	kills, targeted, idle           int
	inside                          map[string]int // in-flight operations at kill time, by kind
	phases                          map[string]int // where in the store operation the kill landed
	temps, cleaned                  int
	rowsChecked, rowsLost, repaired int
	hoursChecked                    int
}

// seed lays down healthy history with one child run that is allowed to
// finish.
func (st *crashState) seed(t *testing.T) {
	t.Helper()
	stop := st.next.Add(90 * time.Minute)
	c, err := startChild(st.dir, st.next, stop, crashLease)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.wait(2 * time.Minute); err != nil {
		t.Fatal(err)
	}
	st.next = stop
	st.verify(t)
}

// killOne starts a child and kills it at the i-th kill point.
func (st *crashState) killOne(t *testing.T, i int, rng *rand.Rand) {
	t.Helper()
	c, err := startChild(st.dir, st.next, time.Time{}, crashLease)
	if err != nil {
		t.Fatal(err)
	}
	target, nth := "", 0
	var deadline <-chan time.Time
	if i%2 == 0 {
		target = targets[(i/2)%len(targets)]
		nth = 1 + rng.IntN(3)
		deadline = time.After(20 * time.Second) // a fallback; never reached in practice
	}
	delay := time.Duration(10+rng.IntN(250)) * time.Millisecond
	// A put takes about half a millisecond (temp file, write, fsync, link,
	// directory fsync), a delete a tenth of that: pause for a random part of
	// it, so that the kill lands at any step.
	pause := time.Duration(rng.IntN(600)) * time.Microsecond
	if strings.HasSuffix(target, "delete") {
		pause /= 10
	}
	seen := 0
	var timer <-chan time.Time
wait:
	for {
		select {
		case line, ok := <-c.lines:
			if !ok {
				t.Fatalf("kill %d: child exited early:\n%s", i, c.stderr.String())
			}
			if line == "ready" && target == "" {
				timer = time.After(delay)
			}
			if target != "" && strings.HasPrefix(line, "B ") && strings.Fields(line)[2] == target {
				if seen++; seen == nth {
					time.Sleep(pause)
					break wait
				}
			}
		case <-timer:
			break wait
		case <-deadline:
			t.Logf("kill %d: no %s operation in 20s; killing anyway", i, target)
			target = ""
			break wait
		}
	}
	inflight, err := c.kill()
	if err != nil {
		t.Fatal(err)
	}
	st.kills++
	if target != "" {
		st.targeted++
	}
	if len(inflight) == 0 {
		st.idle++
	}
	for _, op := range inflight {
		f := strings.Fields(op)
		st.inside[f[0]]++
		st.phases[st.phase(f[0], f[1])]++
	}
	if r := c.lastSlot(); !r.IsZero() && r.After(st.next) {
		st.next = r
	}
	if testing.Verbose() {
		t.Logf("kill %d (target %q #%d): in flight %v; reached %s", i, target, nth, inflight, st.next.Format("Jan 2 15:04"))
	}
}

// phase tells, from what is on disk after a kill, where inside an
// operation on name the process died. DirStore.Put writes a temporary file
// in the target's directory, fsyncs it, links it to the name (create-only)
// and removes the temporary name.
func (st *crashState) phase(kind, name string) string {
	p := filepath.Join(st.dir, filepath.FromSlash(name))
	_, err := os.Stat(p)
	exists := err == nil
	if strings.HasSuffix(kind, "delete") || kind == "ledger-prune" || kind == "compact-delete" {
		if exists {
			return "delete:before-unlink"
		}
		return "delete:after-unlink"
	}
	temps, _ := filepath.Glob(filepath.Join(filepath.Dir(p), ".tmp-*"))
	switch {
	case !exists && len(temps) == 0:
		return "put:before-temp-file"
	case !exists:
		return "put:temp-written-not-linked"
	case len(temps) > 0:
		return "put:linked-temp-not-removed"
	}
	return "put:linked-syncing-directory"
}

// verify checks the lake a child left, heals it with a fresh engine and
// checks it again.
func (st *crashState) verify(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	var logs bytes.Buffer
	lake, err := sink.OpenDir(st.dir, &sink.Options{Allocator: mem, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	temps := tempFiles(st.dir)
	st.temps += len(temps)

	// 1. The lake as the kill left it.
	before := st.check(t, ctx, lake, "after the kill")
	if t.Failed() {
		return
	}
	for k, v := range st.prev {
		st.rowsChecked++
		if got, ok := before.raw[k]; !ok || got != v {
			st.rowsLost++
			t.Errorf("after the kill, %s %s is %v (held: %v), was %v before", k.key, k.time().Format(time.RFC3339), got, ok, v)
		}
	}

	// 2. A fresh engine heals everything so far.
	now := st.next.Add(crashLease + 3*time.Minute)
	clock := newStepClock(now, 1e9)
	al := &healtest.Alarms{}
	opts := childOptions(clock, mem, crashLease)
	opts.Alarmer = al
	eng, err := heal.New(ticks(), newSynth(mem), lake, opts)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := eng.Heal(ctx, heal.Window{Start: origin, End: now})
	if err != nil {
		t.Fatalf("heal after the kill: %v", err)
	}
	if rep.LeaseHeldBy != "" {
		t.Fatalf("a dead child's lease (%s) outlived its TTL", rep.LeaseHeldBy)
	}
	st.repaired += rep.Repaired
	healEnd := rep.Window.End
	after := st.check(t, ctx, lake, "after healing")
	if t.Failed() {
		return
	}
	// Every slot up to the heal's end is held, with the source's value, or
	// truly has no data.
	a, err := eng.Audit(ctx, heal.Window{Start: origin, End: healEnd})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range a.Keys {
		if k.Missing != 0 {
			t.Errorf("after healing, %s misses %d slots: %v", k.Key, k.Missing, k.Gaps)
		}
	}
	for _, k := range childKeys {
		for s := st.next.Add(-24 * time.Hour).Truncate(time.Minute); s.Before(healEnd); s = s.Add(time.Minute) {
			if s.Before(origin) {
				continue
			}
			_, held := after.raw[slotKey{k, s.Unix()}]
			if held == noData(k, s) {
				t.Errorf("after healing, %s %s held=%v but the source has data=%v", k, s.Format(time.RFC3339), held, !noData(k, s))
			}
		}
	}
	// The derived hours equal a full recomputation from raw, for every
	// hour that closed before the heal's end.
	want := recompute(after.raw)
	for k, w := range want {
		if k.time().Add(time.Hour).After(healEnd) {
			continue
		}
		st.hoursChecked++
		if got, ok := after.derived[k]; !ok || !sameAgg(got, w) {
			t.Errorf("derived %s %s = %+v (held %v), a recomputation gives %+v", k.key, k.time().Format(time.RFC3339), got, ok, w)
		}
	}
	for k, got := range after.derived {
		if _, ok := want[k]; !ok && got.n != 0 {
			t.Errorf("derived %s %s = %+v without any input", k.key, k.time().Format(time.RFC3339), got)
		}
	}
	// The ledger agrees with the data.
	st.healEnd = healEnd
	st.checkLedger(t, after.raw)
	sts, err := eng.Status(ctx, heal.Window{Start: origin, End: healEnd.Truncate(time.Hour)}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range sts {
		if s.Unrepairable != 0 || s.Missing() != 0 {
			t.Errorf("status %+v: want nothing unrepairable or missing", s)
		}
	}
	if got := al.List(); len(got) != 0 {
		t.Errorf("alarms after healing: %+v", got)
	}

	// 3. Temporary files a kill left behind are removed by Compact (it
	// removes those older than an hour: age them), and compaction leaves
	// one file per partition, without duplicates.
	if left := tempFiles(st.dir); len(left) > 0 {
		if err := ageFiles(st.dir, left, 2*time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	for _, ds := range []*heal.Dataset{ticks(), hourlyDataset()} {
		if _, err := lake.Compact(ctx, ds, heal.Query{}); err != nil {
			t.Fatalf("compact %s: %v", ds.Name, err)
		}
		err := lake.Inventory(ctx, ds, heal.Query{}, func(p heal.PartitionInfo) error {
			if p.Files != 1 || p.Duplicates() != 0 {
				t.Errorf("%s after compaction: %d files, %d duplicates", p.Partition, p.Files, p.Duplicates())
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if left := tempFiles(st.dir); len(left) > 0 {
		t.Errorf("temporary files left after Compact: %v", left)
	}
	st.cleaned += len(temps)
	if q := quarantined(st.dir); len(q) > 0 {
		t.Errorf("quarantined: %v; lake log:\n%s", q, logs.String())
	}
	st.prev = after.raw
	st.next = now.Add(time.Minute)
}

// check reads the lake: Scan and Inventory must succeed on both datasets,
// nothing may be quarantined, every (key, time) comes back once, with the
// source's value.
func (st *crashState) check(t *testing.T, ctx context.Context, lake *sink.Lake, when string) *lakeView {
	t.Helper()
	v, err := readLake(ctx, lake)
	if err != nil {
		t.Errorf("%s: scan: %v", when, err)
		return nil
	}
	for _, ds := range []*heal.Dataset{ticks(), hourlyDataset()} {
		if err := lake.Inventory(ctx, ds, heal.Query{}, func(heal.PartitionInfo) error { return nil }); err != nil {
			t.Errorf("%s: inventory %s: %v", when, ds.Name, err)
		}
	}
	if q := quarantined(st.dir); len(q) > 0 {
		t.Errorf("%s: files quarantined (a partial or unreadable file was visible): %v", when, q)
	}
	if v.rawRows != len(v.raw) || v.derRows != len(v.derived) {
		t.Errorf("%s: scan returned %d raw rows for %d (key, time), %d derived for %d", when, v.rawRows, len(v.raw), v.derRows, len(v.derived))
	}
	if len(v.rawBad) > 0 {
		t.Errorf("%s: rows not as the source sent them: %v", when, v.rawBad[:min(5, len(v.rawBad))])
	}
	return v
}

// checkLedger folds the ledger's log as the engine does (by name, a
// snapshot replacing the state) and checks it against the data: a slot
// recorded repaired is held; a slot recorded empty truly has no data.
func (st *crashState) checkLedger(t *testing.T, raw map[slotKey]float64) {
	t.Helper()
	type event struct {
		Kind     string       `json:"kind"`
		Key      string       `json:"key"`
		Slots    []span.Range `json:"slots"`
		Snapshot *struct {
			Slots map[string][]struct { // slots in one state, as delta-coded ranges
				S string            `json:"s"`
				R []json.RawMessage `json:"r"`
			} `json:"slots"`
		} `json:"snapshot"`
	}
	dir := filepath.Join(st.dir, "_heal", "ledger", "ticks")
	names, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	state := map[slotKey]string{}
	for _, n := range names {
		if !strings.HasSuffix(n.Name(), ".json") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, n.Name()))
		if err != nil {
			t.Fatal(err)
		}
		var evs []event
		if err := json.Unmarshal(b, &evs); err != nil {
			t.Fatalf("ledger object %s does not decode: %v", n.Name(), err)
		}
		for _, ev := range evs {
			if ev.Kind == "snapshot" && ev.Snapshot != nil {
				state = map[slotKey]string{}
				for k, groups := range ev.Snapshot.Slots {
					for _, g := range groups {
						var prev int64
						for _, raw := range g.R { // d: the slot prev+d; [d, n]: n slots from prev+d
							var d, n int64 = 0, 1
							var pair [2]int64
							if json.Unmarshal(raw, &pair) == nil {
								d, n = pair[0], pair[1]
							} else if err := json.Unmarshal(raw, &d); err != nil {
								t.Fatalf("ledger slot range %s: %v", raw, err)
							}
							for idx := prev + d; idx < prev+d+n; idx++ {
								state[slotKey{k, idx * 60}] = g.S
							}
							prev += d + n
						}
					}
				}
				continue
			}
			for _, r := range ev.Slots {
				for i := r.Lo; i < r.Hi; i++ {
					k := slotKey{ev.Key, i * 60}
					switch ev.Kind {
					case "repaired", "empty", "unrepairable":
						state[k] = ev.Kind
					case "gap":
						if state[k] != "unrepairable" {
							state[k] = "open"
						}
					case "present":
						if state[k] == "open" || state[k] == "unrepairable" {
							state[k] = "present"
						}
					}
				}
			}
		}
	}
	for k, s := range state {
		_, held := raw[k]
		switch {
		case s == "repaired" && !held:
			t.Errorf("ledger: %s %s recorded repaired but not held", k.key, k.time().Format(time.RFC3339))
		case s == "empty" && !noData(k.key, k.time()):
			t.Errorf("ledger: %s %s recorded empty but the source has data", k.key, k.time().Format(time.RFC3339))
		case s == "unrepairable":
			t.Errorf("ledger: %s %s recorded unrepairable", k.key, k.time().Format(time.RFC3339))
		case s == "open" && !k.time().Before(origin) && k.time().Before(st.healEnd) && !held && !noData(k.key, k.time()):
			t.Errorf("ledger: %s %s still open after healing", k.key, k.time().Format(time.RFC3339))
		}
	}
}

// blockingStore makes every Put of a derived file on the live path wait
// for its ctx to end: the process "dies" inside the live derive.
type blockingStore struct {
	sink.Store
	blocked chan struct{}
	once    sync.Once
}

func (b *blockingStore) Put(ctx context.Context, name string, data []byte, ifAbsent bool) error {
	if strings.HasPrefix(name, "hourly/") && heal.StageOf(ctx) == heal.StageAcquire {
		b.once.Do(func() { close(b.blocked) })
		<-ctx.Done()
		return ctx.Err()
	}
	return b.Store.Put(ctx, name, data, ifAbsent)
}

// TestCrashBetweenLiveWriteAndDerive is the deterministic form of a case
// the kills found: an hour repaired while still open, whose closing tick
// lands and whose derive then dies. A fresh engine's Heal must derive the
// hour from all its minutes. (Heal used to publish the open hour's bar
// from the minutes it had, mark the repair clean, and, the closing derive
// having died, never derive the hour again.)
func TestCrashBetweenLiveWriteAndDerive(t *testing.T) {
	ctx := context.Background()
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	dir := t.TempDir()
	store, err := sink.NewDirStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	bs := &blockingStore{Store: store, blocked: make(chan struct{})}
	lake := sink.NewLake(bs, &sink.Options{Allocator: mem})
	// An hour whose last three minutes arrive live for every key, so that
	// nothing after the first heal makes Heal touch the hour again.
	base := origin
	for ; ; base = base.Add(time.Hour) {
		ok := true
		for _, k := range childKeys {
			for m := 57; m < 60; m++ {
				s := base.Add(time.Duration(m) * time.Minute)
				ok = ok && !liveDropped(k, s) && !noData(k, s)
			}
		}
		if ok {
			break
		}
	}
	clock := newStepClock(base, 1e9)
	eng, err := heal.New(ticks(), newSynth(mem), lake, childOptions(clock, mem, crashLease))
	if err != nil {
		t.Fatal(err)
	}
	live := func(from, to int) {
		for m := from; m < to; m++ {
			s := base.Add(time.Duration(m) * time.Minute)
			clock.Set(s.Add(time.Second))
			if _, err := eng.Acquire(ctx, s); err != nil {
				t.Fatal(err)
			}
		}
	}
	live(0, 57)
	clock.Set(base.Add(59 * time.Minute)) // settled up to :57
	rep, err := eng.Heal(ctx, heal.Window{Start: base, End: base.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Repaired == 0 {
		t.Fatal("the heal inside the open hour repaired nothing; the case needs a repair")
	}
	if v, err := readLake(ctx, lake); err != nil {
		t.Fatal(err)
	} else if len(v.derived) != 0 {
		t.Errorf("the heal published %d bars of the open hour; a bar is derived when its hour closes", len(v.derived))
	}
	live(57, 59)
	dctx, die := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		clock.Set(base.Add(59*time.Minute + time.Second))
		eng.Acquire(dctx, base.Add(59*time.Minute))
	}()
	<-bs.blocked
	die()
	<-done

	fresh, err := sink.OpenDir(dir, &sink.Options{Allocator: mem})
	if err != nil {
		t.Fatal(err)
	}
	clock.Set(base.Add(time.Hour + 20*time.Minute))
	eng2, err := heal.New(ticks(), newSynth(mem), fresh, childOptions(clock, mem, crashLease))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := eng2.Heal(ctx, heal.Window{Start: base, End: base.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	v, err := readLake(ctx, fresh)
	if err != nil {
		t.Fatal(err)
	}
	want := recompute(v.raw)
	for _, k := range childKeys {
		h := slotKey{k, base.Unix()}
		if got := v.derived[h]; !sameAgg(got, want[h]) {
			t.Errorf("%s hour %s = %+v after the heal, a recomputation gives %+v", k, base.Format("15:04"), got, want[h])
		}
	}
}
