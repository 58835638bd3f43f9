package sink_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/memory"
	"github.com/selfheal/heal"
	"github.com/selfheal/heal/crypt"
	"github.com/selfheal/heal/healtest"
	"github.com/selfheal/heal/internal/awstest"
	"github.com/selfheal/heal/internal/fakekms"
	"github.com/selfheal/heal/sink"
)

// The planted values: if any of them is found in a stored byte, the
// encryption leaked.
const (
	plantedNote  = "PLANTED-e9c41f-patient-is-allergic-to-penicillin"
	plantedValue = 271828.182845
)

// meterDataset has a key, a time, and two sensitive columns.
func meterDataset() *heal.Dataset {
	return &heal.Dataset{
		Name: "meters",
		Schema: arrow.NewSchema([]arrow.Field{
			{Name: "meter", Type: arrow.BinaryTypes.String},
			{Name: "at", Type: &arrow.TimestampType{Unit: arrow.Millisecond, TimeZone: "UTC"}},
			{Name: "kwh", Type: arrow.PrimitiveTypes.Float64},
			{Name: "note", Type: arrow.BinaryTypes.String, Nullable: true},
		}, nil),
		Key:       "meter",
		Time:      "at",
		Grain:     time.Minute,
		Partition: heal.PeriodDay,
	}
}

var meterDay = time.Date(2024, 3, 4, 0, 0, 0, 0, time.UTC)

// meterRecord holds n minutes of each key, every row carrying the planted
// values.
func meterRecord(mem memory.Allocator, ds *heal.Dataset, keys []string, n int) arrow.Record {
	b := array.NewRecordBuilder(mem, ds.Schema)
	defer b.Release()
	for _, k := range keys {
		for i := 0; i < n; i++ {
			b.Field(0).(*array.StringBuilder).Append(k)
			b.Field(1).(*array.TimestampBuilder).Append(arrow.Timestamp(meterDay.Add(time.Duration(i) * time.Minute).UnixMilli()))
			b.Field(2).(*array.Float64Builder).Append(plantedValue)
			b.Field(3).(*array.StringBuilder).Append(plantedNote)
		}
	}
	return b.NewRecord()
}

func newKEK(t testing.TB) *crypt.Local {
	t.Helper()
	k := make([]byte, crypt.DataKeySize)
	rand.Read(k)
	p, err := crypt.NewLocal(k)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func encOpts(mem memory.Allocator, keys crypt.KeyProvider, ds *heal.Dataset) *sink.Options {
	return &sink.Options{Allocator: mem, Encryption: &sink.Encryption{Keys: keys, Columns: map[string][]string{ds.Name: sink.SensitiveColumns(ds)}}}
}

// objectBytes returns every object of store, by name.
func objectBytes(t *testing.T, store sink.Store) map[string][]byte {
	t.Helper()
	ctx := context.Background()
	out := map[string][]byte{}
	err := store.List(ctx, "", func(oi sink.ObjectInfo) error {
		obj, err := store.Open(ctx, oi.Name)
		if err != nil {
			return err
		}
		defer obj.Close()
		b, err := io.ReadAll(io.NewSectionReader(obj, 0, obj.Size()))
		out[oi.Name] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// leaks returns the names of the files holding a planted value.
func leaks(files map[string][]byte) []string {
	var f64 [8]byte
	binary.LittleEndian.PutUint64(f64[:], math.Float64bits(plantedValue))
	var out []string
	for name, b := range files {
		if bytes.Contains(b, []byte(plantedNote)) || bytes.Contains(b, []byte(plantedNote[:16])) || bytes.Contains(b, f64[:]) {
			out = append(out, name)
		}
	}
	return out
}

// diskBytes returns every file under dir, temporary ones included.
func diskBytes(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		out[p] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func scanTable(t *testing.T, lake *sink.Lake, ds *heal.Dataset) (arrow.Table, error) {
	t.Helper()
	rr, err := lake.Scan(context.Background(), ds, heal.Query{})
	if err != nil {
		return nil, err
	}
	defer rr.Release()
	var recs []arrow.Record
	for rr.Next() {
		r := rr.Record()
		r.Retain()
		recs = append(recs, r)
	}
	defer func() {
		for _, r := range recs {
			r.Release()
		}
	}()
	if err := rr.Err(); err != nil {
		return nil, err
	}
	return array.NewTableFromRecords(ds.Schema, recs), nil
}

// checkRoundTrip writes to lake, scans it back and compares.
func checkRoundTrip(t *testing.T, mem memory.Allocator, lake *sink.Lake, ds *heal.Dataset) {
	t.Helper()
	ctx := context.Background()
	rec := meterRecord(mem, ds, []string{"m1", "m2"}, 90)
	defer rec.Release()
	if err := lake.Write(ctx, ds, rec); err != nil {
		t.Fatalf("Write: %v", err)
	}
	tbl, err := scanTable(t, lake, ds)
	if err != nil {
		t.Fatalf("Scan: %v", err)
	}
	defer tbl.Release()
	want := array.NewTableFromRecords(ds.Schema, []arrow.Record{rec})
	defer want.Release()
	if !array.TableEqual(tbl, want) {
		t.Fatalf("scanned %d rows unlike the %d written", tbl.NumRows(), want.NumRows())
	}
}

func TestEncryptedRoundTripNothingInClear(t *testing.T) {
	ds := meterDataset()
	t.Run("DirStore", func(t *testing.T) {
		mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
		defer mem.AssertSize(t, 0)
		dir := t.TempDir()
		lake, err := sink.OpenDir(dir, encOpts(mem, newKEK(t), ds))
		if err != nil {
			t.Fatal(err)
		}
		checkRoundTrip(t, mem, lake, ds)
		// Compaction rewrites encrypted too, and the index is written.
		if _, err := lake.Compact(context.Background(), ds, heal.Query{}); err != nil {
			t.Fatalf("Compact: %v", err)
		}
		files := diskBytes(t, dir)
		var index, keyRecords, data int
		for name := range files {
			switch {
			case strings.Contains(name, "/_heal/index/"):
				index++
			case strings.Contains(name, "/_heal/keys/"):
				keyRecords++
			case strings.HasSuffix(name, ".parquet"):
				data++
			}
		}
		if index == 0 || keyRecords < data || data == 0 {
			t.Fatalf("on disk: %d index objects, %d key records, %d data files; want each data file's key record and an index", index, keyRecords, data)
		}
		if l := leaks(files); len(l) > 0 {
			t.Fatalf("planted values in clear on disk in %v", l)
		}
	})
	t.Run("S3", func(t *testing.T) {
		mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
		defer mem.AssertSize(t, 0)
		client, bucket := awstest.GoFakeS3(t)
		store := sink.NewS3Store(client, bucket, "lake", nil)
		checkRoundTrip(t, mem, sink.NewLake(store, encOpts(mem, newKEK(t), ds)), ds)
		if l := leaks(objectBytes(t, store)); len(l) > 0 {
			t.Fatalf("planted values in clear in S3 objects %v", l)
		}
	})
	// The control: the same write in clear shows the planted values, so the
	// scan above can find them.
	t.Run("ControlInClear", func(t *testing.T) {
		mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
		defer mem.AssertSize(t, 0)
		dir := t.TempDir()
		lake, err := sink.OpenDir(dir, &sink.Options{Allocator: mem})
		if err != nil {
			t.Fatal(err)
		}
		checkRoundTrip(t, mem, lake, ds)
		if len(leaks(diskBytes(t, dir))) == 0 {
			t.Fatal("the planted values are not found in a lake written in clear: the leak scan sees nothing")
		}
	})
}

// TestEncryptedLakeConformance runs the Lake suite on an encrypted lake:
// its dataset's price column is encrypted.
func TestEncryptedLakeConformance(t *testing.T) {
	kek := newKEK(t)
	cols := map[string][]string{healtest.QuotesDataset().Name: {"price"}}
	healtest.RunLakeTests(t, func(_ context.Context, t *testing.T) (healtest.LakeHarness, error) {
		s, err := sink.NewDirStore(t.TempDir())
		if err != nil {
			return nil, err
		}
		return &harness{store: s, opts: sink.Options{Encryption: &sink.Encryption{Keys: kek, Columns: cols}}}, nil
	})
}

// denyDecrypt is a provider that may write but not read, as a principal
// allowed kms:GenerateDataKey but not kms:Decrypt.
type denyDecrypt struct{ crypt.KeyProvider }

func (denyDecrypt) Decrypt(context.Context, []byte, string) ([]byte, error) {
	return nil, fmt.Errorf("test: not authorized to perform kms:Decrypt: %w", crypt.ErrKeyUnavailable)
}

// checkKeyError checks that err is a *KeyError naming a data file, saying
// the key is unavailable.
func checkKeyError(t *testing.T, err error, wantUnavailable bool) {
	t.Helper()
	var ke *sink.KeyError
	if !errors.As(err, &ke) {
		t.Fatalf("Scan: %v; want a *sink.KeyError", err)
	}
	if !strings.HasSuffix(ke.File, ".parquet") || !strings.Contains(err.Error(), ke.File) || !strings.Contains(err.Error(), "data key") || !strings.Contains(err.Error(), "unavailable") {
		t.Errorf("the error does not name the file and the unavailable key: %v", err)
	}
	if wantUnavailable && (!errors.Is(err, crypt.ErrKeyUnavailable) || !heal.IsPermanent(err)) {
		t.Errorf("errors.Is(err, ErrKeyUnavailable) = %v, IsPermanent = %v; want both: %v", errors.Is(err, crypt.ErrKeyUnavailable), heal.IsPermanent(err), err)
	}
}

func TestAuditWithoutDecryptRights(t *testing.T) {
	ds := meterDataset()
	ctx := context.Background()
	srv := fakekms.New(t)
	srv.CreateKey("heal")
	kmsKeys := crypt.NewKMS(srv.Client(), "alias/heal")
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	store, err := sink.NewDirStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	writer := sink.NewLake(store, encOpts(mem, kmsKeys, ds))
	// Two writes: two files per partition.
	for _, n := range []int{30, 60} {
		rec := meterRecord(mem, ds, []string{"m1", "m2"}, n)
		err := writer.Write(ctx, ds, rec)
		rec.Release()
		if err != nil {
			t.Fatal(err)
		}
	}
	before := objectBytes(t, store)
	// From here on, KMS refuses Decrypt: the role of an auditor.
	srv.Deny("Decrypt", true)
	readers := map[string]*sink.Options{
		"KMSDenied":   encOpts(mem, kmsKeys, ds),
		"NoProvider":  {Allocator: mem},
		"WriteOnly":   encOpts(mem, denyDecrypt{kmsKeys}, ds),
		"NoEncOption": {Allocator: mem, Encryption: &sink.Encryption{}},
	}
	for name, base := range readers {
		for _, mode := range []sink.InventoryMode{sink.InventoryListed, sink.InventoryFooters, sink.InventoryScan} {
			t.Run(name+"/"+mode.String(), func(t *testing.T) {
				o := *base
				o.Inventory = mode
				lake := sink.NewLake(store, &o)
				var infos []heal.PartitionInfo
				err := lake.Inventory(ctx, ds, heal.Query{}, func(pi heal.PartitionInfo) error {
					infos = append(infos, pi)
					return nil
				})
				if err != nil {
					t.Fatalf("Inventory without decrypt rights: %v", err)
				}
				if len(infos) != 2 {
					t.Fatalf("Inventory found %d partitions, want 2", len(infos))
				}
				for _, pi := range infos {
					if pi.Present.Count() != 60 || pi.Files != 2 || pi.Rows != 90 {
						t.Errorf("%s: %d slots present in %d files, %d rows; want 60 in 2, 90 rows", pi.Partition, pi.Present.Count(), pi.Files, pi.Rows)
					}
				}
				_, err = scanTable(t, lake, ds)
				checkKeyError(t, err, true)
				// Verify reads the key and time columns of every file.
				if rep, err := lake.Verify(ctx, ds, heal.Query{}); err != nil || rep.Files != 4 || rep.Indexed != 4 || len(rep.BadFooters) > 0 {
					t.Errorf("Verify without decrypt rights = %+v, %v; want 4 files checked and indexed", rep, err)
				}
			})
		}
	}
	t.Run("EngineAudit", func(t *testing.T) {
		lake := sink.NewLake(store, encOpts(mem, kmsKeys, ds))
		eng, err := heal.New(ds, noSource{}, lake, &heal.Options{Keys: []string{"m1", "m2", "m3"}})
		if err != nil {
			t.Fatal(err)
		}
		rep, err := eng.Audit(ctx, heal.Window{Start: meterDay, End: meterDay.Add(2 * time.Hour)})
		if err != nil {
			t.Fatalf("Engine.Audit without decrypt rights: %v", err)
		}
		got := map[string][2]int{}
		for _, k := range rep.Keys {
			got[k.Key] = [2]int{k.Present, k.Missing}
		}
		want := map[string][2]int{"m1": {60, 60}, "m2": {60, 60}, "m3": {0, 120}}
		for k, w := range want {
			if got[k] != w {
				t.Errorf("audit of %s: present, missing = %v, want %v", k, got[k], w)
			}
		}
	})
	// Nothing was quarantined or changed by the failed reads.
	after := objectBytes(t, store)
	for name, b := range before {
		if !bytes.Equal(after[name], b) {
			t.Errorf("%s changed or vanished after reads without the key", name)
		}
	}
	for name := range after {
		if strings.HasPrefix(name, "_quarantine/") {
			t.Errorf("%s quarantined for a missing key", name)
		}
	}
	// With the right back, the same lake reads.
	srv.Deny("Decrypt", false)
	tbl, err := scanTable(t, sink.NewLake(store, encOpts(mem, kmsKeys, ds)), ds)
	if err != nil {
		t.Fatalf("Scan with decrypt rights: %v", err)
	}
	if tbl.NumRows() != 120 {
		t.Errorf("scanned %d rows, want 120", tbl.NumRows())
	}
	tbl.Release()
}

type noSource struct{}

func (noSource) Fetch(context.Context, heal.Request) (arrow.Record, error) {
	return nil, heal.Permanent(errors.New("test: no source"))
}
func (noSource) Limits() heal.Limits { return heal.Limits{} }

func TestEncryptedWrongKeyFailsClearly(t *testing.T) {
	ds := meterDataset()
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	store := sink.NewMemStore()
	right := sink.NewLake(store, encOpts(mem, newKEK(t), ds))
	checkRoundTrip(t, mem, right, ds)
	rec := meterRecord(mem, ds, []string{"m1"}, 1) // a second file to compact
	err := right.Write(context.Background(), ds, rec)
	rec.Release()
	if err != nil {
		t.Fatal(err)
	}
	before := objectBytes(t, store)
	wrong := sink.NewLake(store, encOpts(mem, newKEK(t), ds))
	_, err = scanTable(t, wrong, ds)
	checkKeyError(t, err, true)
	if !strings.Contains(err.Error(), "another key-encryption key") {
		t.Errorf("the error does not say the KEK is another: %v", err)
	}
	// Compaction needs the key too, and fails the same way, changing nothing.
	_, err = wrong.Compact(context.Background(), ds, heal.Query{})
	checkKeyError(t, err, true)
	after := objectBytes(t, store)
	if len(after) != len(before) {
		t.Errorf("%d objects before the failed reads, %d after", len(before), len(after))
	}
}

func TestRewrap(t *testing.T) {
	ds := meterDataset()
	ctx := context.Background()
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	store := sink.NewMemStore()
	oldKEK, nextKEK := newKEK(t), newKEK(t)
	lake := sink.NewLake(store, encOpts(mem, oldKEK, ds))
	checkRoundTrip(t, mem, lake, ds)
	rec := meterRecord(mem, ds, []string{"m3"}, 10)
	err := lake.Write(ctx, ds, rec)
	rec.Release()
	if err != nil {
		t.Fatal(err)
	}
	hashes := func() (data map[string][32]byte, keys int) {
		data = map[string][32]byte{}
		for name, b := range objectBytes(t, store) {
			switch {
			case strings.HasSuffix(name, ".parquet"):
				data[name] = sha256.Sum256(b)
			case strings.HasPrefix(name, "_heal/keys/") && !strings.HasPrefix(name, "_heal/keys/_columns/"): // not the encryption policy
				keys++
			}
		}
		return data, keys
	}
	dataBefore, nkeys := hashes()
	n, err := lake.Rewrap(ctx, ds, oldKEK, nextKEK)
	if err != nil {
		t.Fatalf("Rewrap: %v", err)
	}
	if n != nkeys || n != len(dataBefore) {
		t.Fatalf("Rewrap re-wrapped %d keys, want %d (one per file, %d files)", n, nkeys, len(dataBefore))
	}
	dataAfter, _ := hashes()
	if len(dataAfter) != len(dataBefore) {
		t.Fatalf("%d data files before, %d after", len(dataBefore), len(dataAfter))
	}
	for name, h := range dataBefore {
		if dataAfter[name] != h {
			t.Errorf("Rewrap changed the data file %s", name)
		}
	}
	// The new KEK alone reads everything; the old one no longer does.
	tbl, err := scanTable(t, sink.NewLake(store, encOpts(mem, nextKEK, ds)), ds)
	if err != nil {
		t.Fatalf("Scan with the new KEK only: %v", err)
	}
	if tbl.NumRows() != 190 {
		t.Errorf("scanned %d rows, want 190", tbl.NumRows())
	}
	tbl.Release()
	_, err = scanTable(t, sink.NewLake(store, encOpts(mem, oldKEK, ds)), ds)
	checkKeyError(t, err, true)
	// Again: nothing left to do.
	if n, err := lake.Rewrap(ctx, ds, oldKEK, nextKEK); n != 0 || err != nil {
		t.Errorf("a second Rewrap = %d, %v; want 0, nil", n, err)
	}
	// Without the old KEK a Rewrap of another dataset's keys fails by name.
	other := newKEK(t)
	lake2 := sink.NewLake(store, encOpts(mem, other, ds))
	rec = meterRecord(mem, ds, []string{"m4"}, 1)
	err = lake2.Write(ctx, ds, rec)
	rec.Release()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lake.Rewrap(ctx, ds, oldKEK, nextKEK); !errors.Is(err, crypt.ErrKeyUnavailable) || !strings.Contains(err.Error(), "_heal/keys/meters/") {
		t.Errorf("Rewrap of a key wrapped by a third KEK: %v; want ErrKeyUnavailable naming the record", err)
	}
}

func TestEncryptionConfigErrors(t *testing.T) {
	ds := meterDataset()
	ctx := context.Background()
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	rec := meterRecord(mem, ds, []string{"m1"}, 1)
	defer rec.Release()
	for name, enc := range map[string]*sink.Encryption{
		"KeyColumn":   {Keys: newKEK(t), Columns: map[string][]string{ds.Name: {"meter"}}},
		"TimeColumn":  {Keys: newKEK(t), Columns: map[string][]string{ds.Name: {"at", "kwh"}}},
		"NoSuchCol":   {Keys: newKEK(t), Columns: map[string][]string{ds.Name: {"kwhh"}}},
		"NoProvider":  {Columns: map[string][]string{ds.Name: {"kwh"}}},
		"RefusesKeys": {Keys: refuseAll{}, Columns: map[string][]string{ds.Name: {"kwh"}}},
	} {
		t.Run(name, func(t *testing.T) {
			store := sink.NewMemStore()
			err := sink.NewLake(store, &sink.Options{Allocator: mem, Encryption: enc}).Write(ctx, ds, rec)
			if err == nil || !heal.IsPermanent(err) {
				t.Fatalf("Write: %v; want a permanent error", err)
			}
			if n := len(objectBytes(t, store)); n != 0 {
				t.Errorf("%d objects stored by a refused write", n)
			}
		})
	}
}

type refuseAll struct{}

func (refuseAll) GenerateDataKey(context.Context) (*crypt.DataKey, error) {
	return nil, heal.Permanent(errors.New("test: not authorized to perform kms:GenerateDataKey"))
}
func (refuseAll) Decrypt(context.Context, []byte, string) ([]byte, error) {
	return nil, crypt.ErrKeyUnavailable
}
func (refuseAll) Encrypt(context.Context, []byte) ([]byte, string, error) {
	return nil, "", crypt.ErrKeyUnavailable
}

// TestEncryptedDamagedPageQuarantined flips a byte inside an encrypted
// column chunk: the page fails authentication, which arrow reports by
// panicking; the read must recover it (not crash the process) and
// quarantine the file like any damaged file.
func TestEncryptedDamagedPageQuarantined(t *testing.T) {
	ds := meterDataset()
	ctx := context.Background()
	store := sink.NewMemStore()
	kek := newKEK(t)
	lake := sink.NewLake(store, encOpts(memory.NewGoAllocator(), kek, ds))
	rec := meterRecord(memory.NewGoAllocator(), ds, []string{"m1"}, 200)
	defer rec.Release()
	if err := lake.Write(ctx, ds, rec); err != nil {
		t.Fatal(err)
	}
	var name string
	var data []byte
	for n, b := range objectBytes(t, store) {
		if strings.HasSuffix(n, ".parquet") {
			name, data = n, b
		}
	}
	// The encrypted chunks follow the clear key and time chunks; the byte
	// at 3/4 of the column data is well inside them.
	bad := bytes.Clone(data)
	bad[encryptedOffset(t, data)] ^= 0x40
	if err := store.Put(ctx, name, bad, false); err != nil {
		t.Fatal(err)
	}
	tbl, err := scanTable(t, lake, ds)
	if err != nil {
		t.Fatalf("Scan: %v (a damaged file is quarantined and skipped)", err)
	}
	defer tbl.Release()
	if tbl.NumRows() != 0 {
		t.Errorf("scanned %d rows from the damaged file", tbl.NumRows())
	}
	if _, ok := objectBytes(t, store)["_quarantine/"+name]; !ok {
		t.Errorf("%s not quarantined", name)
	}
}

// TestKeyRecordsHiddenFromMetaStore: the key records live under _heal/
// beside the ledger, which must neither list nor overwrite them.
func TestKeyRecordsHiddenFromMetaStore(t *testing.T) {
	ds := meterDataset()
	ctx := context.Background()
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	lake := sink.NewLake(sink.NewMemStore(), encOpts(mem, newKEK(t), ds))
	checkRoundTrip(t, mem, lake, ds)
	if err := lake.PutMeta(ctx, "ledger/x", []byte("{}")); err != nil {
		t.Fatal(err)
	}
	names, err := lake.ListMeta(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(names) != 1 || names[0] != "ledger/x" {
		t.Errorf("ListMeta = %v, want only the ledger's object", names)
	}
	var rec string
	err = lake.Store().List(ctx, "_heal/keys/", func(oi sink.ObjectInfo) error {
		rec = strings.TrimPrefix(oi.Name, "_heal/")
		return nil
	})
	if err != nil || rec == "" {
		t.Fatalf("no key record listed: %v", err)
	}
	if err := lake.PutMeta(ctx, "keys/meters/x", []byte("{}")); err == nil {
		t.Error("PutMeta wrote under keys/")
	}
	if err := lake.DeleteMeta(ctx, rec); err == nil {
		t.Errorf("DeleteMeta removed the key record %s", rec)
	}
	if _, err := lake.GetMeta(ctx, rec); err == nil {
		t.Errorf("GetMeta read the key record %s", rec)
	}
}

// TestRewrapLocalToKMS moves a lake from a local KEK to a KMS key (the
// real kms client against fakekms), readers using crypt.Multi meanwhile.
func TestRewrapLocalToKMS(t *testing.T) {
	ds := meterDataset()
	ctx := context.Background()
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	srv := fakekms.New(t)
	srv.CreateKey("heal")
	local, kmsKeys := newKEK(t), crypt.NewKMS(srv.Client(), "alias/heal")
	store := sink.NewMemStore()
	checkRoundTrip(t, mem, sink.NewLake(store, encOpts(mem, local, ds)), ds)
	// Writers move to KMS first; readers hold both until the Rewrap ends.
	writer := sink.NewLake(store, encOpts(mem, kmsKeys, ds))
	rec := meterRecord(mem, ds, []string{"m3"}, 5)
	err := writer.Write(ctx, ds, rec)
	rec.Release()
	if err != nil {
		t.Fatal(err)
	}
	reader := sink.NewLake(store, encOpts(mem, crypt.Multi(kmsKeys, local), ds))
	if tbl, err := scanTable(t, reader, ds); err != nil || tbl.NumRows() != 185 {
		t.Fatalf("Scan with Multi during the rotation: %v", err)
	} else {
		tbl.Release()
	}
	n, err := writer.Rewrap(ctx, ds, local, kmsKeys)
	if err != nil || n != 2 {
		t.Fatalf("Rewrap = %d, %v; want the 2 files written with the local KEK", n, err)
	}
	tbl, err := scanTable(t, writer, ds)
	if err != nil || tbl.NumRows() != 185 {
		t.Fatalf("Scan with the KMS key only: %v", err)
	}
	tbl.Release()
	// And the KMS key is really used: refused, nothing reads.
	srv.Deny("Decrypt", true)
	_, err = scanTable(t, writer, ds)
	checkKeyError(t, err, true)
	if !strings.Contains(err.Error(), "AccessDenied") {
		t.Errorf("the error does not carry KMS's refusal: %v", err)
	}
}
