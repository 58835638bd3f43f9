package sink_test

import (
	"context"
	"sync"
	"testing"

	"github.com/apache/arrow/go/v17/arrow/memory"

	"github.com/selfheal/heal/sink"
)

// racingStore is a MemStore on which another process finishes a whole
// Rewrap right after our first key record was read: our re-wrap of that
// record then works from a stale copy.
type racingStore struct {
	*sink.MemStore
	once  sync.Once
	other func()
}

func (s *racingStore) ReadVersion(ctx context.Context, name string) ([]byte, string, error) {
	data, v, err := s.MemStore.ReadVersion(ctx, name)
	s.once.Do(s.other)
	return data, v, err
}

// TestRewrapRace: two rotations to the same key-encryption key racing over
// the same records re-wrap each record once in all. The one that read a
// record before the other replaced it loses its conditional write
// (If-Match on S3), reads the record again, finds it done and does not
// count it; a blind overwrite would have counted it twice.
func TestRewrapRace(t *testing.T) {
	ds := meterDataset()
	ctx := context.Background()
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	oldKEK, nextKEK := newKEK(t), newKEK(t)
	store := &racingStore{MemStore: sink.NewMemStore()}
	lake := sink.NewLake(store, encOpts(mem, oldKEK, ds))
	for _, m := range []string{"m1", "m2", "m3"} {
		rec := meterRecord(mem, ds, []string{m}, 5)
		err := lake.Write(ctx, ds, rec)
		rec.Release()
		if err != nil {
			t.Fatal(err)
		}
	}
	var theirs int
	var theirErr error
	store.other = func() {
		other := sink.NewLake(store.MemStore, encOpts(mem, oldKEK, ds))
		theirs, theirErr = other.Rewrap(ctx, ds, oldKEK, nextKEK)
	}
	ours, err := lake.Rewrap(ctx, ds, oldKEK, nextKEK)
	if err != nil || theirErr != nil {
		t.Fatalf("Rewrap: ours %v, theirs %v", err, theirErr)
	}
	if ours+theirs != 3 || theirs != 3 {
		t.Fatalf("re-wrapped %d (ours) + %d (theirs) of 3 records; want 0 + 3, each record once", ours, theirs)
	}
	tbl, err := scanTable(t, sink.NewLake(store.MemStore, encOpts(mem, nextKEK, ds)), ds)
	if err != nil {
		t.Fatalf("Scan with the new KEK only: %v", err)
	}
	defer tbl.Release()
	if tbl.NumRows() != 15 {
		t.Fatalf("scanned %d rows, want 15", tbl.NumRows())
	}
}
