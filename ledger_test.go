package heal

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/selfheal/heal/internal/span"
)

// mapMeta is a MetaStore in a map, enough to test the ledger's log and
// snapshots from inside the package.
type mapMeta struct {
	mu sync.Mutex
	m  map[string][]byte
}

func (s *mapMeta) PutMeta(_ context.Context, n string, b []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.m[n]; ok {
		return fmt.Errorf("%s: %w", n, ErrExist)
	}
	s.m[n] = append([]byte(nil), b...)
	return nil
}
func (s *mapMeta) GetMeta(_ context.Context, n string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.m[n]
	if !ok {
		return nil, ErrNotFound
	}
	return b, nil
}
func (s *mapMeta) ListMeta(_ context.Context, p string) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for n := range s.m {
		if strings.HasPrefix(n, p) {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out, nil
}
func (s *mapMeta) DeleteMeta(_ context.Context, n string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, n)
	return nil
}

type stillClock struct{ t time.Time }

func (c *stillClock) Now() time.Time                       { return c.t }
func (c *stillClock) After(time.Duration) <-chan time.Time { return nil }

// TestLedgerSnapshotAndReload writes enough batches to force snapshots and
// checks a fresh ledger folds to the same state from far fewer objects,
// and that settled entries older than the retention are dropped.
func TestLedgerSnapshotAndReload(t *testing.T) {
	ctx := context.Background()
	meta := &mapMeta{m: map[string][]byte{}}
	clock := &stillClock{t: time.Date(2024, 1, 2, 0, 0, 0, 0, time.UTC)}
	l := newLedger(meta, "ticks", clock)
	l.record(ledgerEvent{Kind: "repaired", Key: "OLD", Slots: []span.Range{{Lo: 1, Hi: 3}}})
	if err := l.flush(ctx); err != nil {
		t.Fatal(err)
	}
	clock.t = clock.t.Add(retention + time.Hour)
	for i := 0; i < 2*snapshotEvery+5; i++ {
		l.record(ledgerEvent{Kind: "gap", Key: "AAPL", Slots: []span.Range{{Lo: int64(i), Hi: int64(i + 1)}}})
		l.record(ledgerEvent{Kind: "attempt", Key: "AAPL", Slots: []span.Range{{Lo: int64(i), Hi: int64(i + 1)}}, Err: "boom"})
		if i%3 == 0 {
			l.record(ledgerEvent{Kind: "repaired", Key: "AAPL", Slots: []span.Range{{Lo: int64(i), Hi: int64(i + 1)}}})
		}
		if err := l.flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	names, _ := meta.ListMeta(ctx, "ledger/ticks/")
	if len(names) > snapshotEvery {
		t.Errorf("%d ledger objects after snapshots; want at most %d", len(names), snapshotEvery)
	}
	fresh := newLedger(meta, "ticks", clock)
	if err := fresh.load(ctx); err != nil {
		t.Fatal(err)
	}
	var want, got map[int64]slotState
	l.view(func(st *ledgerState) { want = flat(st.Slots["AAPL"]) })
	fresh.view(func(st *ledgerState) {
		got = flat(st.Slots["AAPL"])
		if len(st.Slots["OLD"]) != 0 {
			t.Errorf("a repaired entry older than the retention survived the snapshot")
		}
	})
	if len(got) != 2*snapshotEvery+5 || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("reloaded %d slots, want %d equal to the writer's", len(got), len(want))
	}
	if s := got[3]; s.Status != slotRepaired || s.Attempts != 1 {
		t.Errorf("slot 3 = %+v, want repaired after 1 attempt", s)
	}
	if s := got[4]; s.Status != slotOpen || s.Attempts != 1 || s.Err != "boom" {
		t.Errorf("slot 4 = %+v, want open with 1 attempt and the error", s)
	}
}

func flat(m map[int64]*slotState) map[int64]slotState {
	out := map[int64]slotState{}
	for i, s := range m {
		c := *s
		c.Since = time.Time{}
		out[i] = c
	}
	return out
}

// TestLedgerWritersInterleaved has an engine's ledger, which snapshots, and
// a worker's, which only appends, write at once under one clock, so the
// worker's objects are named before and after the engine's snapshots. A
// fresh fold, and the engine's own, must hold every event of both.
func TestLedgerWritersInterleaved(t *testing.T) {
	ctx := context.Background()
	meta := &mapMeta{m: map[string][]byte{}}
	clock := &stillClock{t: time.Date(2024, 1, 2, 0, 0, 0, 0, time.UTC)}
	eng := newLedger(meta, "ticks", clock)
	if err := eng.load(ctx); err != nil {
		t.Fatal(err)
	}
	wrk := newLedger(meta, "ticks", clock)
	wrk.appendOnly = true
	n := 2*snapshotEvery + 7
	for i := 0; i < n; i++ {
		s := []span.Range{{Lo: int64(i), Hi: int64(i + 1)}}
		eng.record(ledgerEvent{Kind: "gap", Key: "E", Slots: s})
		wrk.record(ledgerEvent{Kind: "repaired", Key: "W", Slots: s})
		if err := wrk.flush(ctx); err != nil {
			t.Fatal(err)
		}
		if i%5 == 0 {
			if err := eng.load(ctx); err != nil {
				t.Fatal(err)
			}
		}
		if err := eng.flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	snaps := 0
	names, _ := meta.ListMeta(ctx, "ledger/ticks/")
	for _, name := range names {
		if strings.Contains(string(meta.m[name]), `"snapshot"`) {
			snaps++
		}
	}
	if snaps == 0 {
		t.Fatal("no snapshot was written; the test shows nothing")
	}
	fresh := newLedger(meta, "ticks", clock)
	if err := fresh.load(ctx); err != nil {
		t.Fatal(err)
	}
	if err := eng.load(ctx); err != nil {
		t.Fatal(err)
	}
	for name, l := range map[string]*ledger{"fresh": fresh, "engine": eng} {
		l.view(func(st *ledgerState) {
			if e, w := len(st.Slots["E"]), len(st.Slots["W"]); e != n || w != n {
				t.Errorf("%s fold: %d engine slots and %d worker slots; want %d of each", name, e, w, n)
			}
		})
	}
}
