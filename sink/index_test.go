package sink_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/apache/arrow/go/v17/arrow/memory"
	"github.com/selfheal/heal"
	"github.com/selfheal/heal/healtest"
	"github.com/selfheal/heal/sink"
)

// dataOpens are the data files (not index objects) the store was asked to open.
func (s *countingStore) dataOpens() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, n := range s.opens {
		if !strings.HasPrefix(n, "_heal/") {
			out = append(out, n)
		}
	}
	return out
}

func (s *countingStore) dataLists() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, n := range s.lists {
		if !strings.HasPrefix(n, "_heal/") {
			out = append(out, n)
		}
	}
	return out
}

// summary renders an inventory for comparisons.
func summary(inv []heal.PartitionInfo) string {
	var b strings.Builder
	for _, pi := range inv {
		fmt.Fprintf(&b, "%s: %d slots, %d rows, %d files\n", pi.Partition, pi.Present.Count(), pi.Rows, pi.Files)
	}
	return b.String()
}

// truthOf is the inventory read from the data, ignoring every index.
func truthOf(t *testing.T, store sink.Store, ds *heal.Dataset, q heal.Query) string {
	t.Helper()
	scan := sink.NewLake(store, &sink.Options{Inventory: sink.InventoryScan})
	return summary(inventory(t, scan, ds, q))
}

func indexObjects(t *testing.T, store sink.Store, ds *heal.Dataset) []string {
	t.Helper()
	var out []string
	for _, n := range listNames(t, store, "_heal/index/"+ds.Name+"/") {
		if !strings.HasPrefix(n[len("_heal/index/"+ds.Name+"/"):], "r.") {
			out = append(out, n)
		}
	}
	return out
}

// TestIndexServesInventory: once written through the lake, every file is
// answered from the index, across lake instances, after compaction too.
func TestIndexServesInventory(t *testing.T) {
	mem := checkedMem(t)
	store := &countingStore{Store: sink.NewMemStore()}
	lake := sink.NewLake(store, &sink.Options{Allocator: mem})
	ds := healtest.QuotesDataset()
	for d := 0; d < 3; d++ {
		write(t, lake, mem, ds, append(rowsOf("A", d*1440, 10, 1), rowsOf("B", d*1440+5, 10, 1)...)...)
		write(t, lake, mem, ds, rowsOf("A", d*1440+5, 10, 2)...) // duplicates across files
	}
	want := truthOf(t, store, ds, heal.Query{})
	other := sink.NewLake(store, &sink.Options{Allocator: mem}) // another process
	for _, l := range []*sink.Lake{lake, other} {
		store.reset()
		if got := summary(inventory(t, l, ds, heal.Query{})); got != want {
			t.Fatalf("indexed inventory\n%s\nwant\n%s", got, want)
		}
		if opens := store.dataOpens(); len(opens) != 0 {
			t.Fatalf("indexed inventory opened %v", opens)
		}
	}
	if n, err := other.Compact(context.Background(), ds, heal.Query{}); err != nil || n != 3 {
		t.Fatalf("Compact = %d, %v", n, err)
	}
	want = truthOf(t, store, ds, heal.Query{})
	store.reset()
	if got := summary(inventory(t, lake, ds, heal.Query{})); got != want {
		t.Fatalf("after compaction\n%s\nwant\n%s", got, want)
	}
	if opens := store.dataOpens(); len(opens) != 0 {
		t.Fatalf("after compaction the inventory opened %v", opens)
	}
	rep, err := lake.Verify(context.Background(), ds, heal.Query{})
	if err != nil || rep.Indexed != rep.Files || rep.Files != 6 || len(rep.Stale) != 0 || !rep.Reconciled {
		t.Fatalf("Verify after compaction: %+v, %v", rep, err)
	}
}

// TestIndexFallback: a file without an entry (a crash between the file and
// its entry, an index object lost) is read from its footer, and its entry
// recorded, so the next inventory opens nothing.
func TestIndexFallback(t *testing.T) {
	mem := checkedMem(t)
	ctx := context.Background()
	store := &countingStore{Store: sink.NewMemStore()}
	lake := sink.NewLake(store, &sink.Options{Allocator: mem})
	ds := healtest.QuotesDataset()
	write(t, lake, mem, ds, rowsOf("A", 0, 10, 1)...)
	write(t, lake, mem, ds, rowsOf("B", 0, 10, 1)...)
	// Lose every index object: as if both writes crashed before recording.
	for _, n := range indexObjects(t, store, ds) {
		store.Delete(ctx, n)
	}
	want := truthOf(t, store, ds, heal.Query{})
	store.reset()
	inv := inventory(t, lake, ds, heal.Query{})
	if got := summary(inv); got != want {
		t.Fatalf("without entries\n%s\nwant\n%s", got, want)
	}
	if opens := store.dataOpens(); len(opens) != 2 || inv[0].Scanned {
		t.Fatalf("without entries the inventory opened %v (scanned %v); want both footers", opens, inv[0].Scanned)
	}
	store.reset()
	if got := summary(inventory(t, lake, ds, heal.Query{})); got != want {
		t.Fatalf("second inventory\n%s\nwant\n%s", got, want)
	}
	if opens := store.dataOpens(); len(opens) != 0 {
		t.Fatalf("the entries read from the footers were not recorded: opened %v", opens)
	}
	// A corrupt index object is ignored, not trusted.
	objs := indexObjects(t, store, ds)
	store.Put(ctx, objs[0], []byte("HIX1 not really"), false)
	store.reset()
	if got := summary(inventory(t, lake, ds, heal.Query{})); got != want {
		t.Fatalf("with a corrupt index object\n%s\nwant\n%s", got, want)
	}
}

// TestIndexStaleEntries: an entry whose file was deleted behind heal's back
// is ignored (the file is not listed), then removed; an entry whose file
// was replaced by another of the same name but another size is not used.
func TestIndexStaleEntries(t *testing.T) {
	mem := checkedMem(t)
	ctx := context.Background()
	store := &countingStore{Store: sink.NewMemStore()}
	lake := sink.NewLake(store, &sink.Options{Allocator: mem})
	ds := healtest.QuotesDataset()
	write(t, lake, mem, ds, rowsOf("A", 0, 10, 1)...)
	write(t, lake, mem, ds, rowsOf("A", 100, 10, 1)...)
	write(t, lake, mem, ds, rowsOf("B", 0, 10, 1)...)
	names := listNames(t, store, "quotes/symbol=A/")
	store.Delete(ctx, names[0])
	// B's file replaced by a plain file of the same name: another size.
	bName := listNames(t, store, "quotes/symbol=B/")[0]
	other := healtest.Records(memory.NewGoAllocator(), ds, rowsOf("B", 500, 3, 9)...)
	defer other.Release()
	store.Put(ctx, bName, plainParquet(t, other, nil), false)

	want := truthOf(t, store, ds, heal.Query{})
	store.reset()
	if got := summary(inventory(t, lake, ds, heal.Query{})); got != want {
		t.Fatalf("with a stale entry\n%s\nwant\n%s", got, want)
	}
	if opens := store.dataOpens(); !slices.Equal(opens, []string{bName}) {
		t.Fatalf("opened %v, want only the replaced file", opens)
	}
	// Verify finds nothing stale left (the inventory removed the entry)
	// and reports the replaced file as foreign-named? No: it keeps heal's
	// name, so it is indexed again from its data.
	rep, err := lake.Verify(ctx, ds, heal.Query{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Stale) != 0 || rep.Files != 2 {
		t.Fatalf("Verify: %+v", rep)
	}
	if !slices.Equal(rep.BadFooters, []string{bName}) {
		t.Fatalf("Verify did not notice a file of heal's name without heal's footer: %+v", rep)
	}
}

// TestIndexMerges: many writes leave a bounded number of index objects, and
// the inventory stays exact.
func TestIndexMerges(t *testing.T) {
	mem := checkedMem(t)
	store := &countingStore{Store: sink.NewMemStore()}
	lake := sink.NewLake(store, &sink.Options{Allocator: mem, Concurrency: 2})
	ds := healtest.QuotesDataset()
	for i := 0; i < 300; i++ {
		write(t, lake, mem, ds, healtest.Row{Key: fmt.Sprintf("K%d", i%7), Time: minute(i), Price: float64(i)})
		if i%50 == 49 {
			if _, err := lake.Compact(context.Background(), ds, heal.Query{Keys: []string{"K3"}}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if n := len(indexObjects(t, store, ds)); n > 3*16+1 {
		t.Fatalf("%d index objects after 300 writes", n)
	}
	want := truthOf(t, store, ds, heal.Query{})
	store.reset()
	if got := summary(inventory(t, lake, ds, heal.Query{})); got != want {
		t.Fatalf("after merges\n%s\nwant\n%s", got, want)
	}
	if opens := store.dataOpens(); len(opens) != 0 {
		t.Fatalf("after merges the inventory opened %v", opens)
	}
}

// TestIndexConcurrent: writers, compactions and inventories in two lakes
// over one store, at once; afterwards the index answers exactly.
func TestIndexConcurrent(t *testing.T) {
	mem := checkedMem(t)
	ctx := context.Background()
	store := sink.NewMemStore()
	lakes := []*sink.Lake{sink.NewLake(store, &sink.Options{Allocator: mem}), sink.NewLake(store, &sink.Options{Allocator: mem})}
	ds := healtest.QuotesDataset()
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lake := lakes[w%2]
			for i := 0; i < 40; i++ {
				rec := healtest.Records(mem, ds, rowsOf(fmt.Sprintf("K%d", w), (i%5)*1440+i, 3, float64(i))...)
				err := lake.Write(ctx, ds, rec)
				rec.Release()
				if err != nil {
					errs <- err
					return
				}
				if i%10 == 9 {
					if _, err := lake.Compact(ctx, ds, heal.Query{Keys: []string{fmt.Sprintf("K%d", (w+1)%4)}}); err != nil {
						errs <- err
						return
					}
				}
				if err := lakes[(w+1)%2].Inventory(ctx, ds, heal.Query{}, func(heal.PartitionInfo) error { return nil }); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	want := truthOf(t, store, ds, heal.Query{})
	for _, l := range lakes {
		if got := summary(inventory(t, l, ds, heal.Query{})); got != want {
			t.Fatalf("after concurrent work\n%s\nwant\n%s", got, want)
		}
	}
	rep, err := lakes[0].Verify(ctx, ds, heal.Query{})
	if err != nil || len(rep.Mismatched) != 0 || len(rep.BadFooters) != 0 {
		t.Fatalf("Verify after concurrent work: %+v, %v", rep, err)
	}
}

// TestInventoryTrusted: the index alone answers once Verify reconciled it,
// without listing the data; until then the lake lists.
func TestInventoryTrusted(t *testing.T) {
	mem := checkedMem(t)
	ctx := context.Background()
	store := &countingStore{Store: sink.NewMemStore()}
	lake := sink.NewLake(store, &sink.Options{Allocator: mem, Inventory: sink.InventoryTrusted})
	ds := healtest.QuotesDataset()
	for d := 0; d < 3; d++ {
		write(t, lake, mem, ds, append(rowsOf("A", d*1440, 10, 1), rowsOf("B", d*1440+5, 10, 1)...)...)
	}
	q := heal.Query{Keys: []string{"A"}, Window: heal.NewWindow(minute(1440+3), minute(3*1440))}
	want := truthOf(t, store, ds, q)
	store.reset()
	if got := summary(inventory(t, lake, ds, q)); got != want {
		t.Fatalf("trusted before Verify\n%s\nwant\n%s", got, want)
	}
	if lists := store.dataLists(); len(lists) == 0 {
		t.Fatal("an index never verified was trusted without listing the data")
	}
	if rep, err := lake.Verify(ctx, ds, heal.Query{}); err != nil || !rep.Reconciled {
		t.Fatalf("Verify: %+v, %v", rep, err)
	}
	write(t, lake, mem, ds, rowsOf("A", 1440+50, 5, 7)...)
	if _, err := lake.Compact(ctx, ds, heal.Query{Keys: []string{"A"}}); err != nil {
		t.Fatal(err)
	}
	want = truthOf(t, store, ds, q)
	store.reset()
	if got := summary(inventory(t, lake, ds, q)); got != want {
		t.Fatalf("trusted\n%s\nwant\n%s", got, want)
	}
	if lists, opens := store.dataLists(), store.dataOpens(); len(lists) != 0 || len(opens) != 0 {
		t.Fatalf("trusted inventory listed %v and opened %v", lists, opens)
	}
	// A file dropped in by another tool is not seen until Verify, which
	// then refuses to reconcile a dataset holding one.
	foreign := healtest.Records(memory.NewGoAllocator(), ds, rowsOf("A", 1440+200, 2, 1)...)
	defer foreign.Release()
	store.Put(ctx, "quotes/symbol=A/date=2024-01-03/other.parquet", plainParquet(t, foreign, nil), true)
	if got := summary(inventory(t, lake, ds, q)); got != want {
		t.Fatalf("trusted inventory saw a foreign file:\n%s", got)
	}
	rep, err := lake.Verify(ctx, ds, heal.Query{})
	if err != nil || rep.Reconciled || len(rep.Foreign) != 1 {
		t.Fatalf("Verify with a foreign file: %+v, %v", rep, err)
	}
}

// TestInventorySince: the first call inventories everything, later calls
// only the partitions written, compacted or repaired since.
func TestInventorySince(t *testing.T) {
	mem := checkedMem(t)
	ctx := context.Background()
	store := &countingStore{Store: sink.NewMemStore()}
	lake := sink.NewLake(store, &sink.Options{Allocator: mem})
	ds := healtest.QuotesDataset()
	for d := 0; d < 4; d++ {
		for _, k := range []string{"A", "B", "C"} {
			write(t, lake, mem, ds, rowsOf(k, d*1440, 5, 1)...)
		}
	}
	since := func(mark string, q heal.Query) ([]string, string) {
		t.Helper()
		var parts []string
		next, err := lake.InventorySince(ctx, ds, q, mark, func(pi heal.PartitionInfo) error {
			parts = append(parts, pi.Partition.String())
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return parts, next
	}
	parts, mark := since("", heal.Query{})
	if len(parts) != 12 || mark == "" {
		t.Fatalf("first call: %v, mark %q", parts, mark)
	}
	// Within a minute of the mark, what was written is reported again.
	if parts, next := since(mark, heal.Query{Keys: []string{"A"}}); len(parts) != 4 || next != mark {
		t.Fatalf("no changes, within the slack: %v, %q", parts, next)
	}
	if _, err := lake.InventorySince(ctx, ds, heal.Query{}, "bogus", func(heal.PartitionInfo) error { return nil }); err == nil {
		t.Fatal("a bad mark was accepted")
	}
}
