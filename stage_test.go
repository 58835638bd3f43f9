package heal_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/apache/arrow/go/v17/arrow"

	"github.com/selfheal/heal"
	"github.com/selfheal/heal/sink"
)

// stageSource records the stage of every Fetch.
type stageSource struct {
	*synth
	mu     sync.Mutex
	stages map[bool][]heal.Stage // by Live
}

func (s *stageSource) Fetch(ctx context.Context, req heal.Request) (arrow.Record, error) {
	s.mu.Lock()
	s.stages[req.Live] = append(s.stages[req.Live], heal.StageOf(ctx))
	s.mu.Unlock()
	return s.synth.Fetch(ctx, req)
}

// stageStore records the stages of the store calls the lake makes.
type stageStore struct {
	sink.Store
	mu   sync.Mutex
	puts map[heal.Stage]int
	seen map[heal.Stage]bool
}

func (s *stageStore) note(ctx context.Context, put bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := heal.StageOf(ctx)
	s.seen[st] = true
	if put {
		s.puts[st]++
	}
}

func (s *stageStore) Put(ctx context.Context, name string, data []byte, ifAbsent bool) error {
	s.note(ctx, true)
	return s.Store.Put(ctx, name, data, ifAbsent)
}

func (s *stageStore) List(ctx context.Context, prefix string, fn func(sink.ObjectInfo) error) error {
	s.note(ctx, false)
	return s.Store.List(ctx, prefix, fn)
}

func TestStageOf(t *testing.T) {
	r := newRig(t)
	if got := heal.StageOf(context.Background()); got != "" {
		t.Fatalf("StageOf(Background) = %q", got)
	}
	src := &stageSource{synth: r.src, stages: map[bool][]heal.Stage{}}
	r.src.drop = func(k string, s time.Time) bool { return k == "AAPL" && s.Minute() == 7 }
	store := &stageStore{Store: sink.NewMemStore(), puts: map[heal.Stage]int{}, seen: map[heal.Stage]bool{}}
	lake := sink.NewLake(store, &sink.Options{Allocator: r.mem})
	e, err := heal.New(ticks(), src, lake, r.opts)
	if err != nil {
		t.Fatal(err)
	}
	w := heal.Window{Start: day.Start, End: day.Start.Add(time.Hour)}
	r.live(t, e, w)
	r.clock.Set(w.End.Add(5 * time.Minute))
	rep, err := e.Heal(r.ctx, w)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Repaired != 1 {
		t.Fatalf("repaired %d slots, want 1", rep.Repaired)
	}
	for _, s := range src.stages[true] {
		if s != heal.StageAcquire {
			t.Errorf("live fetch in stage %q, want %q", s, heal.StageAcquire)
		}
	}
	if len(src.stages[false]) == 0 {
		t.Fatal("no repair fetch")
	}
	for _, s := range src.stages[false] {
		if s != heal.StageRepair {
			t.Errorf("repair fetch in stage %q, want %q", s, heal.StageRepair)
		}
	}
	// Live ticks and the repair put data files; the audit lists and puts
	// the ledger; resynthesis puts the derived bars.
	for _, st := range []heal.Stage{heal.StageAcquire, heal.StageRepair, heal.StageAudit, heal.StageResynth} {
		if store.puts[st] == 0 {
			t.Errorf("no put in stage %q (puts %v)", st, store.puts)
		}
	}
	if !store.seen[heal.StageAudit] {
		t.Errorf("no store call in the audit stage: %v", store.seen)
	}

	// Alarms keep the time they were raised.
	r.src.broken["MSFT"] = heal.Permanent(errFlaky)
	r.src.drop = func(k string, s time.Time) bool { return k == "MSFT" && s.Minute() == 3 }
	w2 := heal.Window{Start: w.End, End: w.End.Add(time.Hour)}
	r.live(t, e, w2)
	raised := w2.End.Add(5 * time.Minute)
	r.clock.Set(raised)
	if _, err := e.Heal(r.ctx, w2); err != nil {
		t.Fatal(err)
	}
	r.clock.Set(raised.Add(3 * time.Hour))
	as, err := e.Alarms(r.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(as) != 1 || !as[0].At.Equal(raised) {
		t.Fatalf("alarms %+v, want one raised at %s", as, raised)
	}
}
