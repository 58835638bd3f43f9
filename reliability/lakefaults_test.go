package reliability

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/memory"
	"github.com/apache/arrow/go/v17/parquet"
	"github.com/apache/arrow/go/v17/parquet/pqarrow"

	"github.com/selfheal/heal"
	"github.com/selfheal/heal/healtest"
	"github.com/selfheal/heal/sink"
)

// faultStore fails writes with a real errno while one is set, as a full
// disk (ENOSPC) or a read-only or foreign-owned directory (EACCES) does.
// As root, chmod does not stop writes, so the errno is injected here, in
// the shape os returns it (*fs.PathError).
type faultStore struct {
	sink.Store
	errno    atomic.Uintptr // a syscall.Errno; 0: healthy
	dataOnly bool           // fail data files only (the ledger's directory is fine)
	failed   atomic.Int64
}

func (f *faultStore) set(e syscall.Errno) { f.errno.Store(uintptr(e)) }

func (f *faultStore) fault(op, name string) error {
	e := syscall.Errno(f.errno.Load())
	if e == 0 || (f.dataOnly && strings.HasPrefix(name, "_")) {
		return nil
	}
	f.failed.Add(1)
	return fmt.Errorf("heal/sink: %s %s: %w", op, name, &fs.PathError{Op: "open", Path: name + ".tmp", Err: e})
}

func (f *faultStore) Put(ctx context.Context, name string, data []byte, ifAbsent bool) error {
	if err := f.fault("put", name); err != nil {
		return err
	}
	return f.Store.Put(ctx, name, data, ifAbsent)
}

func (f *faultStore) Delete(ctx context.Context, name string) error {
	if syscall.Errno(f.errno.Load()) == syscall.EACCES {
		if err := f.fault("delete", name); err != nil {
			return err
		}
	}
	return f.Store.Delete(ctx, name)
}

// lakeRig is an engine over a lake in a directory, on a clock that moves
// only when told (waits return at once).
type lakeRig struct {
	t     *testing.T
	ctx   context.Context
	mem   *memory.CheckedAllocator
	dir   string
	lake  *sink.Lake
	clock *stepClock
	al    *healtest.Alarms
	src   *synth
	eng   *heal.Engine
	logs  *bytes.Buffer
}

func newLakeRig(t *testing.T, dir string, wrap func(sink.Store) sink.Store) *lakeRig {
	t.Helper()
	r := &lakeRig{t: t, ctx: context.Background(), mem: memory.NewCheckedAllocator(memory.NewGoAllocator()),
		dir: dir, clock: newStepClock(origin, 1e9), al: &healtest.Alarms{}, logs: &bytes.Buffer{}}
	t.Cleanup(func() { r.mem.AssertSize(t, 0) })
	store, err := sink.NewDirStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	var s sink.Store = store
	if wrap != nil {
		s = wrap(store)
	}
	logger := slog.New(slog.NewTextHandler(r.logs, nil))
	r.lake = sink.NewLake(s, &sink.Options{Allocator: r.mem, Logger: logger})
	r.src = newSynth(r.mem)
	opts := childOptions(r.clock, r.mem, time.Minute)
	opts.Alarmer = r.al
	opts.Logger = logger
	if r.eng, err = heal.New(ticks(), r.src, r.lake, opts); err != nil {
		t.Fatal(err)
	}
	return r
}

// live polls minutes [from, to) of the timeline and returns the errors.
func (r *lakeRig) live(from, to int) []error {
	var errs []error
	for m := from; m < to; m++ {
		s := origin.Add(time.Duration(m) * time.Minute)
		r.clock.Set(s.Add(time.Second))
		if _, err := r.eng.Acquire(r.ctx, s); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

// heal runs a cycle at minute m over the whole timeline.
func (r *lakeRig) heal(m int) (*heal.CycleReport, error) {
	now := origin.Add(time.Duration(m) * time.Minute)
	r.clock.Set(now)
	return r.eng.Heal(r.ctx, heal.Window{Start: origin, End: now})
}

// complete checks that every slot of [0, m) minutes is held with the
// source's value or truly has no data, and that rows held before are kept.
func (r *lakeRig) complete(m int, before map[slotKey]float64) *lakeView {
	r.t.Helper()
	st := &crashState{dir: r.dir}
	v := st.check(r.t, r.ctx, r.lake, "after recovery")
	if v == nil {
		return nil
	}
	r.held(v, m, before)
	return v
}

func (r *lakeRig) held(v *lakeView, m int, before map[slotKey]float64) {
	r.t.Helper()
	for _, k := range childKeys {
		for i := 0; i < m; i++ {
			s := origin.Add(time.Duration(i) * time.Minute)
			if _, held := v.raw[slotKey{k, s.Unix()}]; held == noData(k, s) {
				r.t.Errorf("%s %s held=%v, the source has data=%v", k, s.Format("15:04"), held, !noData(k, s))
			}
		}
	}
	for k, x := range before {
		if v.raw[k] != x {
			r.t.Errorf("%s %s lost: was %v, now %v", k.key, k.time().Format("15:04"), x, v.raw[k])
		}
	}
}

// TestLakeWriteFaults: while the lake refuses writes (disk full, permission
// denied, on everything or only the data directories) a cycle fails with
// the errno, leaves nothing partial, spends no repair budget on it, and
// raises one lake-write alarm; once the lake takes writes again the next
// cycle repairs what was missed, sends the resolved notice, and nothing
// held before is lost.
func TestLakeWriteFaults(t *testing.T) {
	for _, tc := range []struct {
		name     string
		errno    syscall.Errno
		dataOnly bool
	}{
		{"disk-full", syscall.ENOSPC, false},
		{"permission-denied", syscall.EACCES, false},
		{"data-dirs-read-only", syscall.EACCES, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var fault *faultStore
			r := newLakeRig(t, t.TempDir(), func(s sink.Store) sink.Store {
				fault = &faultStore{Store: s, dataOnly: tc.dataOnly}
				return fault
			})
			if errs := r.live(0, 30); len(errs) > 0 {
				t.Fatal(errs[0])
			}
			if _, err := r.heal(33); err != nil {
				t.Fatal(err)
			}
			before, err := readLake(r.ctx, r.lake)
			if err != nil {
				t.Fatal(err)
			}

			fault.set(tc.errno)
			errs := r.live(30, 45)
			if len(errs) == 0 {
				t.Fatal("live ticks succeeded on a lake refusing writes")
			}
			for _, err := range errs {
				if !errors.Is(err, tc.errno) {
					t.Errorf("live tick error %v does not wrap %v", err, tc.errno)
				}
			}
			calls := r.src.hist.Load()
			rep, err := r.heal(48)
			if err == nil || !errors.Is(err, tc.errno) {
				t.Errorf("heal on a lake refusing writes returned %v (report %+v); want an error wrapping %v", err, rep, tc.errno)
			}
			if rep != nil && rep.Unrepairable != 0 {
				t.Errorf("the lake's fault made %d slots unrepairable", rep.Unrepairable)
			}
			faultCalls := r.src.hist.Load() - calls
			if rep != nil && faultCalls > int64(rep.Requests) {
				t.Errorf("%d source calls for %d planned requests: a lake fault must not spend the repair budget", faultCalls, rep.Requests)
			}
			if n := r.al.CountStage(heal.StageLakeWrite, false); n != 1 {
				t.Errorf("%d lake-write alarms during the episode, want 1: %+v", n, r.al.List())
			}
			for _, a := range r.al.List() {
				if a.Stage == heal.StageLakeWrite && !strings.Contains(a.LastError, tc.errno.Error()) {
					t.Errorf("lake-write alarm %+v does not say %q", a, tc.errno.Error())
				}
				if a.Stage == heal.StageRepair {
					t.Errorf("a repair alarm for a lake fault: %+v", a)
				}
			}
			if tmp := tempFiles(r.dir); len(tmp) > 0 {
				t.Errorf("temporary files left by failed writes: %v", tmp)
			}
			(&crashState{dir: r.dir}).check(t, r.ctx, r.lake, "during the fault")

			fault.set(0)
			if errs := r.live(45, 60); len(errs) > 0 {
				t.Fatal(errs[0])
			}
			rep, err = r.heal(63)
			if err != nil {
				t.Fatal(err)
			}
			r.complete(61, before.raw)
			if n := r.al.CountStage(heal.StageLakeWrite, true); n != 1 {
				t.Errorf("%d lake-write resolved notices after recovery, want 1: %+v", n, r.al.List())
			}
			if n := r.al.CountStage(heal.StageLakeWrite, false); n != 1 {
				t.Errorf("%d lake-write alarms in all, want 1", n)
			}
			sts, err := r.eng.Status(r.ctx, heal.Window{Start: origin, End: origin.Add(time.Hour)}, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range sts {
				if s.Unrepairable != 0 || s.Missing() != 0 {
					t.Errorf("status after recovery %+v", s)
				}
			}
			t.Logf("reliability: lake-fault %s: writes-refused=%d live-errors=%d source-calls-during-fault=%d repaired-after=%d",
				tc.name, fault.failed.Load(), len(errs), faultCalls, rep.Repaired)
		})
	}
}

// TestLakeOnFullTmpfs runs the same episode on a real filesystem that fills
// up: a 4 MiB tmpfs with a ballast file taking all but a few KiB. It needs
// mount(2) (root); it is skipped where that is not allowed.
func TestLakeOnFullTmpfs(t *testing.T) {
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here (%v: %s); the ENOSPC path is covered by TestLakeWriteFaults", err, bytes.TrimSpace(out))
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", mnt, err, out)
		}
	})
	dir := filepath.Join(mnt, "lake")
	r := newLakeRig(t, dir, nil)
	if errs := r.live(0, 30); len(errs) > 0 {
		t.Fatal(errs[0])
	}
	if _, err := r.heal(33); err != nil {
		t.Fatal(err)
	}
	before, err := readLake(r.ctx, r.lake)
	if err != nil {
		t.Fatal(err)
	}
	ballast := filepath.Join(mnt, "ballast")
	fill(t, ballast)

	errs := r.live(30, 45)
	full := 0
	for _, err := range errs {
		if errors.Is(err, syscall.ENOSPC) {
			full++
		}
	}
	if full == 0 {
		t.Fatalf("no live tick hit ENOSPC on the full tmpfs (errors: %v)", errs)
	}
	if _, err := r.heal(48); err == nil {
		t.Error("heal on a full disk succeeded")
	} else if !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("heal on a full disk: %v, want ENOSPC", err)
	}
	if n := r.al.CountStage(heal.StageLakeWrite, false); n != 1 {
		t.Errorf("%d lake-write alarms on a full disk, want 1: %+v", n, r.al.List())
	}
	if tmp := tempFiles(r.dir); len(tmp) > 0 {
		t.Errorf("temporary files left by writes that hit ENOSPC: %v", tmp)
	}
	(&crashState{dir: r.dir}).check(t, r.ctx, r.lake, "on the full disk")

	if err := os.Remove(ballast); err != nil {
		t.Fatal(err)
	}
	if errs := r.live(45, 60); len(errs) > 0 {
		t.Fatal(errs[0])
	}
	rep, err := r.heal(63)
	if err != nil {
		t.Fatal(err)
	}
	r.complete(61, before.raw)
	if n := r.al.CountStage(heal.StageLakeWrite, true); n != 1 {
		t.Errorf("%d resolved notices after the disk was freed, want 1", n)
	}
	t.Logf("reliability: lake-fault tmpfs: live-ticks-hitting-ENOSPC=%d repaired-after=%d", full, rep.Repaired)
}

// fill writes to name until the filesystem is full.
func fill(t *testing.T, name string) {
	t.Helper()
	f, err := os.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 4096)
	for {
		if _, err := f.Write(buf); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				return
			}
			t.Fatal(err)
		}
	}
}

// TestCorruptAndForeignFiles drops unusable files into a healthy lake: bytes
// that are not Parquet under a heal-style name, a truncated copy of a heal
// file, an empty file, and valid Parquet of another schema. The audit
// names each one in the log, moves it to _quarantine/ byte for byte (never
// deletes it), and carries on: the cycle succeeds and the lake is complete.
func TestCorruptAndForeignFiles(t *testing.T) {
	dir := t.TempDir()
	r := newLakeRig(t, dir, nil)
	if errs := r.live(0, 60); len(errs) > 0 {
		t.Fatal(errs[0])
	}
	if _, err := r.heal(63); err != nil {
		t.Fatal(err)
	}
	before, err := readLake(r.ctx, r.lake)
	if err != nil {
		t.Fatal(err)
	}
	part := filepath.Join(dir, "ticks", "symbol=A", "date=2024-03-04")
	heals := filesUnder(part, func(_, base string) bool { return strings.HasSuffix(base, ".parquet") })
	if len(heals) == 0 {
		t.Fatal("no heal file to copy")
	}
	good, err := os.ReadFile(filepath.Join(part, heals[0]))
	if err != nil {
		t.Fatal(err)
	}
	bad := map[string][]byte{
		"ticks/symbol=A/date=2024-03-04/99999999999999999999-deadbeef.parquet": []byte("this is not parquet at all"),
		"ticks/symbol=B/date=2024-03-04/99999999999999999998-0badf00d.parquet": good[:len(good)/2],
		"ticks/symbol=C/date=2024-03-04/empty.parquet":                         {},
		"ticks/symbol=A/date=2024-03-04/part-00000-other-tool.parquet":         otherSchemaParquet(t),
	}
	for name, b := range bad {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	rep, err := r.heal(70)
	if err != nil {
		t.Fatalf("heal with corrupt files in the lake: %v", err)
	}
	for name, b := range bad {
		if !logNames(r.logs.String(), "quarantine", name) {
			t.Errorf("the log does not name %s:\n%s", name, r.logs.String())
		}
		if _, err := os.Stat(filepath.Join(dir, filepath.FromSlash(name))); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s is still in place (%v)", name, err)
		}
		q, err := os.ReadFile(filepath.Join(dir, "_quarantine", filepath.FromSlash(name)))
		if err != nil {
			t.Errorf("%s not in quarantine: %v", name, err)
		} else if !bytes.Equal(q, b) {
			t.Errorf("%s quarantined with %d bytes, was %d", name, len(q), len(b))
		}
	}
	// The rest is intact and whole (the quarantined files are the only ones
	// under _quarantine/).
	v, err := readLake(r.ctx, r.lake)
	if err != nil {
		t.Fatal(err)
	}
	r.held(v, 60, before.raw)
	if q := quarantined(dir); len(q) != len(bad) {
		t.Errorf("quarantine holds %v, want the %d planted files", q, len(bad))
	}
	t.Logf("reliability: corrupt-files: planted=%d quarantined=%d (bytes intact) cycle-ok=true gaps-the-audit-found=%d", len(bad), len(quarantined(dir)), rep.Missing)
}

// otherSchemaParquet is a valid Parquet file another tool might leave in
// the dataset's directory: same column names, a different value type.
func otherSchemaParquet(t *testing.T) []byte {
	t.Helper()
	sc := arrow.NewSchema([]arrow.Field{
		{Name: "symbol", Type: arrow.BinaryTypes.String},
		{Name: "ts", Type: &arrow.TimestampType{Unit: arrow.Millisecond, TimeZone: "UTC"}},
		{Name: "value", Type: arrow.BinaryTypes.String},
	}, nil)
	b := array.NewRecordBuilder(memory.DefaultAllocator, sc)
	defer b.Release()
	b.Field(0).(*array.StringBuilder).Append("A")
	b.Field(1).(*array.TimestampBuilder).Append(arrow.Timestamp(origin.UnixMilli()))
	b.Field(2).(*array.StringBuilder).Append("one hundred")
	rec := b.NewRecord()
	defer rec.Release()
	return writeParquet(t, sc, rec)
}

func writeParquet(t *testing.T, sc *arrow.Schema, rec arrow.Record) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := pqarrow.NewFileWriter(sc, &buf, parquet.NewWriterProperties(), pqarrow.NewArrowWriterProperties(pqarrow.WithStoreSchema()))
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write(rec); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestPartitionWrittenByAnotherTool: a partition of plain pqarrow files,
// without heal's presence index, named as the other tool likes, holding a
// (key, time) twice and missing some minutes. The audit reads it (Scanned),
// counts what it holds and its duplicates, and the heal repairs exactly the
// minutes it lacks, keeping the other tool's rows.
func TestPartitionWrittenByAnotherTool(t *testing.T) {
	dir := t.TempDir()
	r := newLakeRig(t, dir, nil)
	ds := ticks()
	b := array.NewRecordBuilder(memory.DefaultAllocator, ds.Schema)
	defer b.Release()
	holes := map[int]bool{7: true, 8: true, 31: true, 59: true}
	held := 0
	for m := 0; m < 60; m++ {
		s := origin.Add(time.Duration(m) * time.Minute)
		if holes[m] || noData("A", s) {
			continue
		}
		rows := 1
		if m == 20 {
			rows = 2 // the other tool wrote minute 20 twice
		}
		for i := 0; i < rows; i++ {
			b.Field(0).(*array.StringBuilder).Append("A")
			b.Field(1).(*array.TimestampBuilder).Append(arrow.Timestamp(s.UnixMilli()))
			b.Field(2).(*array.Float64Builder).Append(value("A", s))
		}
		held++
	}
	rec := b.NewRecord()
	defer rec.Release()
	name := filepath.Join(dir, "ticks", "symbol=A", "date=2024-03-04", "part-00000-c000.snappy.parquet")
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(name, writeParquet(t, ds.Schema, rec), 0o644); err != nil {
		t.Fatal(err)
	}

	var info heal.PartitionInfo
	if err := r.lake.Inventory(r.ctx, ds, heal.Query{}, func(p heal.PartitionInfo) error { info = p; return nil }); err != nil {
		t.Fatal(err)
	}
	if !info.Scanned || info.Present.Count() != held || info.Duplicates() != 1 {
		t.Errorf("inventory of the foreign partition = %+v (count %d); want scanned, %d held, 1 duplicate", info, info.Present.Count(), held)
	}
	r.clock.Set(origin.Add(62 * time.Minute))
	a, err := r.eng.Audit(r.ctx, heal.Window{Start: origin, End: origin.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range a.Keys {
		if k.Key == "A" && (k.Present != held || k.Missing != len(holes)) {
			t.Errorf("audit of A: %+v; want %d present and the %d holes missing", k, held, len(holes))
		}
	}
	calls := r.src.hist.Load()
	rep, err := r.heal(62)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Duplicates != 1 || rep.Compacted == 0 {
		t.Errorf("heal report %+v; want the duplicate seen and the partition compacted", rep)
	}
	if len(quarantined(dir)) != 0 {
		t.Errorf("the other tool's file was quarantined: %v", quarantined(dir))
	}
	r.complete(60, nil)
	sts, err := r.eng.Status(r.ctx, heal.Window{Start: origin, End: origin.Add(time.Hour)}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range sts {
		if s.Key == "A" && (s.Repaired != len(holes) || s.Present != held+len(holes)) {
			t.Errorf("status of A %+v; want exactly the %d holes repaired, the other tool's %d rows kept", s, len(holes), held)
		}
	}
	t.Logf("reliability: foreign-partition: rows=%d held=%d duplicates=1 holes=%d repaired=%d source-calls=%d",
		rec.NumRows(), held, len(holes), rep.Repaired, r.src.hist.Load()-calls)
}

// logNames reports whether a line of logs holds both what and name.
func logNames(logs, what, name string) bool {
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, what) && strings.Contains(l, name) {
			return true
		}
	}
	return false
}
