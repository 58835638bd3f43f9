package sink_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/selfheal/heal"
	"github.com/selfheal/heal/healtest"
	"github.com/selfheal/heal/sink"
)

// TestIdempotentWrite checks Writes under heal.WithIdempotencyKey on every
// store: eight racing Writes under one key leave one file per partition,
// a later Write under that key stores nothing, a Write under another key
// stores again and, being at a later time, wins.
func TestIdempotentWrite(t *testing.T) {
	stores := map[string]func(t *testing.T) sink.Store{
		"mem": func(*testing.T) sink.Store { return sink.NewMemStore() },
		"dir": func(t *testing.T) sink.Store {
			s, err := sink.NewDirStore(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
	}
	for _, srv := range s3Servers {
		stores[srv.name] = func(t *testing.T) sink.Store {
			c, bucket := srv.client(t)
			return sink.NewS3Store(c, bucket, "lake", nil)
		}
	}
	for name, newStore := range stores {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			testIdempotentWrite(t, newStore(t))
		})
	}
}

func testIdempotentWrite(t *testing.T, store sink.Store) {
	ctx := s3Ctx(t)
	mem := checkedMem(t)
	lake := sink.NewLake(store, &sink.Options{Allocator: mem})
	ds := healtest.QuotesDataset()
	// Two keys over two days: four partitions.
	rows := func(price float64) []healtest.Row {
		var out []healtest.Row
		for _, k := range []string{"AAPL", "MSFT"} {
			out = append(out, rowsOf(k, 10, 3, price)...)
			out = append(out, rowsOf(k, 24*60+5, 2, price)...)
		}
		return out
	}
	at := day.Add(48 * time.Hour)
	writeUnder := func(key string, at time.Time, price float64) error {
		rec := healtest.Records(mem, ds, rows(price)...)
		defer rec.Release()
		return lake.Write(heal.WithIdempotencyKey(ctx, key, at), ds, rec)
	}
	dataFiles := func() []string {
		var out []string
		for _, n := range listNames(t, store, ds.Name+"/") {
			if strings.HasSuffix(n, ".parquet") {
				out = append(out, n)
			}
		}
		return out
	}

	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = writeUnder("job/1", at, 100+float64(i)*1000)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("racing Write %d: %v", i, err)
		}
	}
	if files := dataFiles(); len(files) != 4 {
		t.Fatalf("after 8 racing Writes under one key: %d data files, want 4 (one per partition): %v", len(files), files)
	}
	for _, p := range inventory(t, lake, ds, heal.Query{}) {
		if p.Duplicates() != 0 || p.Files != 1 {
			t.Errorf("%s: %d files, %d duplicates; want 1 file, no duplicate", p.Partition, p.Files, p.Duplicates())
		}
	}
	first := scan(t, lake, ds, heal.Query{})
	if len(first) != 10 {
		t.Fatalf("scan: %d rows, want 10", len(first))
	}
	// Each partition holds one racer's rows, whole (racer i's prices are
	// 100+1000i and up).
	racer := map[string]int{}
	for _, r := range first {
		part := r.Key + r.Time.Format("2006-01-02")
		i := int(r.Price) / 1000
		if j, ok := racer[part]; ok && j != i {
			t.Errorf("partition %s mixes the rows of racers %d and %d", part, j, i)
		}
		racer[part] = i
	}

	// Again under the same key, with other values: nothing changes.
	if err := writeUnder("job/1", at, -1); err != nil {
		t.Fatalf("repeated Write: %v", err)
	}
	if files := dataFiles(); len(files) != 4 {
		t.Fatalf("a repeated Write under the key added files: %d, want 4", len(files))
	}
	if got := scan(t, lake, ds, heal.Query{}); !equalRows(got, first) {
		t.Errorf("a repeated Write under the key changed the rows:\n got %v\nwant %v", got, first)
	}

	// Another key, at a later time: new files, and their rows win.
	if err := writeUnder("job/2", at.Add(time.Minute), 7); err != nil {
		t.Fatalf("Write under another key: %v", err)
	}
	if files := dataFiles(); len(files) != 8 {
		t.Fatalf("after a Write under another key: %d data files, want 8", len(files))
	}
	want := rows(7) // in Scan's order: by key, then time
	if got := scan(t, lake, ds, heal.Query{}); !equalRows(got, want) {
		t.Errorf("the later key's rows should win:\n got %v\nwant %v", got, want)
	}

	// Without a key, every Write stores.
	rec := healtest.Records(mem, ds, rows(9)...)
	defer rec.Release()
	if err := lake.Write(ctx, ds, rec); err != nil {
		t.Fatal(err)
	}
	if files := dataFiles(); len(files) != 12 {
		t.Fatalf("after a Write without a key: %d data files, want 12", len(files))
	}
	// Compaction merges them as any other files.
	if _, err := lake.Compact(ctx, ds, heal.Query{}); err != nil {
		t.Fatal(err)
	}
	if files := dataFiles(); len(files) != 4 {
		t.Fatalf("after Compact: %d data files, want 4", len(files))
	}
}

func equalRows(a, b []healtest.Row) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Key != b[i].Key || !a[i].Time.Equal(b[i].Time) || a[i].Price != b[i].Price {
			return false
		}
	}
	return true
}

// lostIndex is a store on which the lake index cannot be written, as when
// a writer dies between storing a data file and recording it.
type lostIndex struct{ sink.Store }

func (s lostIndex) Put(ctx context.Context, name string, data []byte, ifAbsent bool) error {
	if strings.Contains(name, "/_heal/index/") || strings.HasPrefix(name, "_heal/index/") {
		return errors.New("lost")
	}
	return s.Store.Put(ctx, name, data, ifAbsent)
}

// TestIdempotentWriteRecordsLostEntry: a Write under a key that finds its
// file already stored, by a writer that died before recording it in the
// lake index, records it, so an index-only inventory sees its rows.
func TestIdempotentWriteRecordsLostEntry(t *testing.T) {
	ctx := context.Background()
	mem := checkedMem(t)
	store := sink.NewMemStore()
	ds := healtest.QuotesDataset()
	trusted := sink.NewLake(store, &sink.Options{Allocator: mem, Inventory: sink.InventoryTrusted})
	write(t, trusted, mem, ds, rowsOf("AAPL", 0, 5, 1)...)
	if _, err := trusted.Verify(ctx, ds, heal.Query{}); err != nil {
		t.Fatal(err)
	}
	held := func() int {
		n := 0
		for _, p := range inventory(t, trusted, ds, heal.Query{}) {
			n += p.Present.Count()
		}
		return n
	}
	if n := held(); n != 5 {
		t.Fatalf("trusted inventory: %d slots, want 5", n)
	}

	rows := rowsOf("AAPL", 10, 3, 2)
	under := heal.WithIdempotencyKey(ctx, "job/x", day)
	rec := healtest.Records(mem, ds, rows...)
	defer rec.Release()
	dying := sink.NewLake(lostIndex{store}, &sink.Options{Allocator: mem})
	if err := dying.Write(under, ds, rec); err != nil {
		t.Fatal(err)
	}
	if n := held(); n != 5 {
		t.Fatalf("the entry was meant to be lost, yet the trusted inventory holds %d slots", n)
	}
	if err := trusted.Write(under, ds, rec); err != nil { // the job, run again
		t.Fatal(err)
	}
	if n := held(); n != 8 {
		t.Errorf("after the repeated Write the trusted inventory holds %d slots; want 8", n)
	}
}

// meetAtMerge holds the Put of every compaction output until n of them
// are waiting, so that n compactions have all read their inputs before
// any stores its merged file.
type meetAtMerge struct {
	sink.Store
	mu      sync.Mutex
	waiting int
	n       int
	release chan struct{}
}

func (s *meetAtMerge) Put(ctx context.Context, name string, data []byte, ifAbsent bool) error {
	if strings.Contains(name, ".c") && strings.HasSuffix(name, ".parquet") {
		s.mu.Lock()
		if s.waiting++; s.waiting == s.n {
			close(s.release)
		}
		s.mu.Unlock()
		select {
		case <-s.release:
		case <-time.After(10 * time.Second):
			return errors.New("the other compaction never reached its Put")
		}
	}
	return s.Store.Put(ctx, name, data, ifAbsent)
}

// TestRacingCompactions: two lakes (two engines) compact the same
// partition at once, both having read its files before either stores the
// merge. The merged file is named after its inputs, so one of them stores
// it and the other finds it there: one file is left, not two copies.
func TestRacingCompactions(t *testing.T) {
	ctx := context.Background()
	mem := checkedMem(t)
	base := sink.NewMemStore()
	ds := healtest.QuotesDataset()
	plain := sink.NewLake(base, &sink.Options{Allocator: mem})
	for m := range 4 {
		write(t, plain, mem, ds, rowsOf("AAPL", m*10, 5, float64(m))...)
	}
	want := scan(t, plain, ds, heal.Query{})
	st := &meetAtMerge{Store: base, n: 2, release: make(chan struct{})}
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range errs {
		lake := sink.NewLake(st, &sink.Options{Allocator: mem})
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = lake.Compact(ctx, ds, heal.Query{})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("compaction %d: %v", i, err)
		}
	}
	parts := inventory(t, plain, ds, heal.Query{})
	if len(parts) != 1 || parts[0].Files != 1 || parts[0].Duplicates() != 0 {
		for _, p := range parts {
			t.Errorf("%s: %d files, %d duplicate rows", p.Partition, p.Files, p.Duplicates())
		}
		t.Fatal("after two racing compactions: want one partition in one file, without duplicates")
	}
	if got := scan(t, plain, ds, heal.Query{}); !equalRows(got, want) {
		t.Errorf("rows changed by the compactions:\n got %v\nwant %v", got, want)
	}
}
