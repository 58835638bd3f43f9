package heal_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/apache/arrow/go/v17/arrow"

	"github.com/selfheal/heal"
)

// heldStream is a Sink that holds what it is sent until deliver moves it
// into the lake: a stream and its consumer, with the delay made explicit.
type heldStream struct {
	mu   sync.Mutex
	recs []arrow.Record
	ds   *heal.Dataset
}

func (s *heldStream) Write(_ context.Context, ds *heal.Dataset, rec arrow.Record) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec.Retain()
	s.recs = append(s.recs, rec)
	s.ds = ds
	return nil
}

func (s *heldStream) deliver(t *testing.T, ctx context.Context, lake heal.Lake) int {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, r := range s.recs {
		if err := lake.Write(ctx, s.ds, r); err != nil {
			t.Fatal(err)
		}
		n += int(r.NumRows())
		r.Release()
	}
	s.recs = nil
	return n
}

// TestLiveSink: with Options.LiveSink the live path's rows go to the sink,
// not the lake, and nothing is derived from rows the lake does not hold
// yet; once the stream delivers them, Heal derives the hours, and repairs
// (which always write to the lake) fill only what the stream never carried.
func TestLiveSink(t *testing.T) {
	r := newRig(t)
	stream := &heldStream{}
	r.opts.LiveSink = stream
	e := r.engine(t)
	hour := heal.NewWindow(day.Start, day.Start.Add(time.Hour))
	r.src.drop = func(k string, t time.Time) bool { return k == "TSLA" && t.Minute()%10 == 0 }
	r.live(t, e, hour)

	if rows, n, err := scanAll(r.ctx, r.lake, ticks()); err != nil || n != 0 || len(rows) != 0 {
		t.Fatalf("the lake holds %d rows before the stream delivered (err %v); want none", n, err)
	}
	if _, n, err := scanAll(r.ctx, r.lake, hourly{r.mem}.Output()); err != nil || n != 0 {
		t.Fatalf("%d hourly rows derived from rows not in the lake (err %v); want none", n, err)
	}
	delivered := stream.deliver(t, r.ctx, r.lake)
	if want := len(keys)*60 - 6; delivered != want {
		t.Fatalf("the stream carried %d rows, want %d (TSLA skipped 6 minutes)", delivered, want)
	}

	r.clock.Set(hour.End.Add(5 * time.Minute))
	rep, err := e.Heal(r.ctx, hour)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Missing != 6 || rep.Repaired != 6 {
		t.Fatalf("heal after delivery: missing %d repaired %d, want 6 and 6 (only TSLA's skipped minutes)", rep.Missing, rep.Repaired)
	}
	rows, n, err := scanAll(r.ctx, r.lake, ticks())
	if err != nil || n != len(keys)*60 || len(rows) != n {
		t.Fatalf("lake after heal: %d rows, %d distinct (err %v); want %d, no copies", n, len(rows), err, len(keys)*60)
	}
	bars, _, err := scanAll(r.ctx, r.lake, hourly{r.mem}.Output())
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		b, ok := bars[rowKey{k, hour.Start}]
		if !ok || b[2].(int64) != 60 {
			t.Fatalf("hourly bar of %s: %v, want one built from all 60 minutes", k, b)
		}
	}
}
