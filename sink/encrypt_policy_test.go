package sink_test

import (
	"context"
	"strings"
	"testing"

	"github.com/apache/arrow/go/v17/arrow/memory"

	"github.com/selfheal/heal"
	"github.com/selfheal/heal/healtest"
	"github.com/selfheal/heal/sink"
)

// TestEncryptionPolicy: once a lake configured to encrypt a dataset's
// columns has written it, the lake remembers them. A process configured
// otherwise then encrypts them too if it has the key, and cannot write the
// dataset at all if it has none; other datasets are not affected.
func TestEncryptionPolicy(t *testing.T) {
	ds := meterDataset()
	ctx := context.Background()
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	store := sink.NewMemStore()
	kek := newKEK(t)

	// A process from before encryption was enabled left a clear partition.
	write := func(o *sink.Options, keys []string) error {
		o.Allocator = mem
		rec := meterRecord(mem, ds, keys, 30)
		defer rec.Release()
		return sink.NewLake(store, o).Write(ctx, ds, rec)
	}
	if err := write(&sink.Options{}, []string{"old"}); err != nil {
		t.Fatal(err)
	}
	// The configured process: its first write records the policy.
	if err := write(encOpts(mem, kek, ds), []string{"m1"}); err != nil {
		t.Fatal(err)
	}
	policies := 0
	for name := range objectBytes(t, store) {
		if strings.HasPrefix(name, "_heal/keys/_columns/meters/") {
			policies++
		}
	}
	if policies != 1 {
		t.Fatalf("%d policy objects for meters; want 1", policies)
	}
	// A process with the key but no Columns encrypts the same columns.
	if err := write(&sink.Options{Encryption: &sink.Encryption{Keys: kek}}, []string{"m2"}); err != nil {
		t.Fatalf("write with the key and no columns: %v", err)
	}
	clear := leaks(dataFiles(t, store))
	if len(clear) != 1 || !strings.Contains(clear[0], "meter=old/") {
		t.Fatalf("files holding the planted values in clear: %v; want only the one written before encryption", clear)
	}
	// A process without the key cannot write the dataset, and stores nothing.
	before := objectBytes(t, store)
	for _, o := range []*sink.Options{{}, {Encryption: &sink.Encryption{Columns: map[string][]string{"other": {"x"}}}}} {
		err := write(o, []string{"m3"})
		if err == nil || !strings.Contains(err.Error(), "kwh, note") || !strings.Contains(err.Error(), "Encryption.Keys") || !heal.IsPermanent(err) {
			t.Errorf("write without a key: %v; want a permanent error naming the columns and Encryption.Keys", err)
		}
	}
	if after := objectBytes(t, store); len(after) != len(before) {
		t.Errorf("refused writes stored %d objects", len(after)-len(before))
	}
	// Other datasets are written as configured (in clear here).
	quotes := healtest.QuotesDataset()
	rec := healtest.Records(mem, quotes, healtest.Row{Key: "A", Time: meterDay, Price: 1})
	defer rec.Release()
	if err := sink.NewLake(store, &sink.Options{Allocator: mem}).Write(ctx, quotes, rec); err != nil {
		t.Errorf("write of another dataset without a key: %v", err)
	}

	// Without the key, compaction leaves the clear partition as it is...
	if _, err := sink.NewLake(store, &sink.Options{Allocator: mem}).Compact(ctx, ds, heal.Query{Keys: []string{"old"}}); err != nil {
		t.Fatalf("compaction of the clear partition without a key: %v", err)
	}
	// ...and with it, the merged file comes out encrypted.
	// (A second, encrypted file gives the partition something to merge.)
	if err := write(&sink.Options{Encryption: &sink.Encryption{Keys: kek}}, []string{"old"}); err != nil {
		t.Fatal(err)
	}
	lake := sink.NewLake(store, &sink.Options{Allocator: mem, Encryption: &sink.Encryption{Keys: kek}})
	if n, err := lake.Compact(ctx, ds, heal.Query{Keys: []string{"old"}}); err != nil || n != 1 {
		t.Fatalf("Compact with the key = %d, %v", n, err)
	}
	if clear := leaks(dataFiles(t, store)); len(clear) != 0 {
		t.Errorf("in clear after compacting with the key: %v", clear)
	}
	tbl, err := scanTable(t, lake, ds)
	if err != nil {
		t.Fatal(err)
	}
	defer tbl.Release()
	if tbl.NumRows() != 90 { // old, m1, m2: 30 minutes each
		t.Errorf("%d rows, want 90", tbl.NumRows())
	}
}
