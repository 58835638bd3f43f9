package heal_test

import (
	"context"
	"math"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/selfheal/heal"
)

// timedSource records when, by the engine's clock, each historical fetch
// was made.
type timedSource struct {
	*synth
	clock interface{ Now() time.Time }
	mu    sync.Mutex
	at    []time.Time
}

func (s *timedSource) Fetch(ctx context.Context, req heal.Request) (arrow.Record, error) {
	if !req.Live {
		s.mu.Lock()
		s.at = append(s.at, s.clock.Now())
		s.mu.Unlock()
	}
	return s.synth.Fetch(ctx, req)
}

// busiestMinute returns the most calls of at in any window of one minute.
func busiestMinute(at []time.Time) int {
	sort.Slice(at, func(i, j int) bool { return at[i].Before(at[j]) })
	most := 0
	for i := range at {
		n := sort.Search(len(at), func(j int) bool { return !at[j].Before(at[i].Add(time.Minute)) }) - i
		most = max(most, n)
	}
	return most
}

// TestRateShare runs a day's repair jobs through one worker of a fleet of
// three sharing a quota of 12 calls a minute: with RateShare 1/3 the
// worker makes at most 4 calls in any minute, so the fleet stays within
// the quota; with the whole rate it makes 12, and three such workers
// would triple it. A share outside (0, 1] is refused.
func TestRateShare(t *testing.T) {
	busiest := func(share float64) (int, int) {
		r := newRig(t)
		r.opts.Transformers = nil
		r.src.limits = heal.Limits{MaxWindow: time.Hour, Rates: []heal.Rate{{Calls: 12, Per: time.Minute}}}
		r.src.drop = func(_ string, s time.Time) bool { return s.Minute() == 17 }
		w := heal.NewWindow(day.Start, day.Start.Add(6*time.Hour))
		r.live(t, r.engine(t), w)
		r.clock.Set(w.End.Add(5 * time.Minute))
		var jobs []heal.Job
		r.opts.Dispatcher = heal.DispatcherFunc(func(_ context.Context, js []heal.Job) error {
			jobs = append(jobs, js...)
			return nil
		})
		if _, err := r.engine(t).Heal(r.ctx, w); err != nil {
			t.Fatal(err)
		}
		src := &timedSource{synth: r.src, clock: r.clock}
		wopts := *r.opts
		wopts.Keys, wopts.Dispatcher, wopts.RateShare = nil, nil, share
		worker, err := heal.New(ticks(), src, r.lake, &wopts)
		if err != nil {
			t.Fatal(err)
		}
		for _, j := range jobs { // one at a time: the fetch times read the clock the limiter advanced
			if err := worker.RunJob(r.ctx, j); err != nil {
				t.Fatal(err)
			}
		}
		return busiestMinute(src.at), len(src.at)
	}
	shared, calls := busiest(1.0 / 3)
	if calls != 30 {
		t.Fatalf("%d repair calls; want 30 (5 keys x 6 hours)", calls)
	}
	if shared != 4 {
		t.Errorf("with RateShare 1/3 of 12 a minute: %d calls in the busiest minute; want 4", shared)
	}
	if whole, _ := busiest(0); whole != 12 {
		t.Errorf("with the whole rate: %d calls in the busiest minute; want 12 (the test shows nothing otherwise)", whole)
	}

	for _, bad := range []float64{-0.5, 1.5, math.NaN()} {
		r := newRig(t)
		r.opts.RateShare = bad
		if _, err := heal.New(ticks(), r.src, r.lake, r.opts); err == nil {
			t.Errorf("RateShare %g: New accepted it", bad)
		}
	}
}
