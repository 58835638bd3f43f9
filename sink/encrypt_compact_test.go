package sink_test

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/apache/arrow/go/v17/arrow/memory"

	"github.com/selfheal/heal"
	"github.com/selfheal/heal/sink"
)

// writeWith writes n minutes of m1 and m2 (two partitions) through a lake
// over store with opts: one more file in each partition.
func writeWith(t *testing.T, mem memory.Allocator, store sink.Store, opts *sink.Options, ds *heal.Dataset, n int) {
	t.Helper()
	o := *opts
	o.Allocator = mem
	rec := meterRecord(mem, ds, []string{"m1", "m2"}, n)
	defer rec.Release()
	if err := sink.NewLake(store, &o).Write(context.Background(), ds, rec); err != nil {
		t.Fatalf("Write: %v", err)
	}
}

// dataFiles returns the data files of store, by name.
func dataFiles(t *testing.T, store sink.Store) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for name, b := range objectBytes(t, store) {
		if strings.HasSuffix(name, ".parquet") && !strings.HasPrefix(name, "_quarantine/") {
			out[name] = b
		}
	}
	return out
}

// TestCompactKeepsInputsEncrypted: a lake whose Encryption.Columns does not
// name the dataset (the heal command, a process configured otherwise)
// compacts partitions whose files have encrypted columns. The merged file
// must keep every column encrypted that an input had encrypted, as well as
// the configured ones: nothing sensitive may land in clear.
func TestCompactKeepsInputsEncrypted(t *testing.T) {
	ds := meterDataset()
	ctx := context.Background()
	all := sink.SensitiveColumns(ds)
	for _, tc := range []struct {
		name   string
		inputs []map[string][]string // the Columns each input file was written with (nil: in clear)
		config map[string][]string   // the compacting lake's Columns
	}{
		// Every input encrypted; the compacting lake has keys, no columns.
		{"KeysOnly", []map[string][]string{{ds.Name: all}, {ds.Name: all}}, nil},
		// One input in clear (written before encryption was enabled), one
		// encrypted: the clear one's values are of the same sensitive
		// columns, and must not survive in clear.
		{"MixedWithClear", []map[string][]string{nil, {ds.Name: all}}, nil},
		// Inputs encrypt note only; the lake is configured for kwh only:
		// the merged file encrypts both.
		{"Union", []map[string][]string{{ds.Name: {"note"}}, {ds.Name: {"note"}}}, map[string][]string{ds.Name: {"kwh"}}},
		// The lake's columns name another dataset only.
		{"OtherDataset", []map[string][]string{{ds.Name: {"kwh", "note"}}, {ds.Name: {"note"}}}, map[string][]string{"other": {"x"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
			defer mem.AssertSize(t, 0)
			store := sink.NewMemStore()
			kek := newKEK(t)
			for i, cols := range tc.inputs {
				o := &sink.Options{}
				if cols != nil {
					o.Encryption = &sink.Encryption{Keys: kek, Columns: cols}
				}
				writeWith(t, mem, store, o, ds, 30*(i+1))
			}
			inputs := dataFiles(t, store)
			if len(inputs) != 2*len(tc.inputs) {
				t.Fatalf("%d data files written, want %d", len(inputs), 2*len(tc.inputs))
			}
			lake := sink.NewLake(store, &sink.Options{Allocator: mem, Encryption: &sink.Encryption{Keys: kek, Columns: tc.config}})
			n, err := lake.Compact(ctx, ds, heal.Query{})
			if err != nil || n != 2 {
				t.Fatalf("Compact = %d, %v; want both partitions compacted", n, err)
			}
			merged := dataFiles(t, store)
			if len(merged) != 2 {
				t.Fatalf("%d data files after compaction, want 2", len(merged))
			}
			for name := range merged {
				if _, ok := inputs[name]; ok {
					t.Fatalf("%s was not rewritten", name)
				}
			}
			if l := leaks(objectBytes(t, store)); len(l) > 0 {
				t.Fatalf("sensitive values in clear after compaction, in %v", l)
			}
			// Every row is there for a reader with the key...
			tbl, err := scanTable(t, lake, ds)
			if err != nil {
				t.Fatalf("Scan with the key: %v", err)
			}
			if want := int64(2 * 30 * len(tc.inputs)); tbl.NumRows() != want {
				t.Errorf("scanned %d rows, want %d", tbl.NumRows(), want)
			}
			tbl.Release()
			// ...and none for a reader without it.
			_, err = scanTable(t, sink.NewLake(store, &sink.Options{Allocator: mem}), ds)
			checkKeyError(t, err, true)
		})
	}
}

// TestCompactEncryptedWithoutKeys: a lake with no key provider cannot read
// the encrypted columns it would have to rewrite. Compaction must fail with
// a *KeyError naming a file and leave every object as it was: no merged
// file (in clear or not), no input deleted.
func TestCompactEncryptedWithoutKeys(t *testing.T) {
	ds := meterDataset()
	ctx := context.Background()
	for name, opts := range map[string]*sink.Options{
		"NoEncryption":        {},
		"NoKeys":              {Encryption: &sink.Encryption{}},
		"NoKeysOtherColumns":  {Encryption: &sink.Encryption{Columns: map[string][]string{"other": {"x"}}}},
		"NoKeysNamedDataset":  {Encryption: &sink.Encryption{Columns: map[string][]string{ds.Name: {"kwh"}}}},
		"WrongKeyNoColumns":   {Encryption: &sink.Encryption{Keys: newKEK(t)}},
		"WrongKeyAllColumns":  {Encryption: &sink.Encryption{Keys: newKEK(t), Columns: map[string][]string{ds.Name: sink.SensitiveColumns(ds)}}},
		"NoKeysStoredInClear": {Encryption: &sink.Encryption{}},
	} {
		t.Run(name, func(t *testing.T) {
			mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
			defer mem.AssertSize(t, 0)
			store := sink.NewMemStore()
			kek := newKEK(t)
			if name == "NoKeysStoredInClear" {
				writeWith(t, mem, store, &sink.Options{}, ds, 30) // a clear file from before encryption, beside an encrypted one
			} else {
				writeWith(t, mem, store, encOpts(mem, kek, ds), ds, 30)
			}
			writeWith(t, mem, store, encOpts(mem, kek, ds), ds, 60)
			before := objectBytes(t, store)
			o := *opts
			o.Allocator = mem
			n, err := sink.NewLake(store, &o).Compact(ctx, ds, heal.Query{})
			if n != 0 {
				t.Errorf("Compact rewrote %d partitions without the key", n)
			}
			checkKeyError(t, err, true)
			after := objectBytes(t, store)
			for name, b := range before {
				if !bytes.Equal(after[name], b) {
					t.Errorf("%s changed or vanished after a compaction without the key", name)
				}
			}
			for name := range after {
				if _, ok := before[name]; !ok {
					t.Errorf("%s stored by a compaction without the key", name)
				}
			}
		})
	}
}
