package bench

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/compute"
	"github.com/apache/arrow/go/v17/arrow/memory"
	"github.com/apache/arrow/go/v17/parquet"
	"github.com/apache/arrow/go/v17/parquet/compress"
	"github.com/apache/arrow/go/v17/parquet/file"
	"github.com/apache/arrow/go/v17/parquet/pqarrow"
	"golang.org/x/sync/errgroup"

	"github.com/selfheal/heal"
	"github.com/selfheal/heal/sink"
)

// Result is what one step measured.
type Result struct {
	Step     string  `json:"step"`
	Seconds  float64 `json:"seconds"`           // the timed part
	Rows     int64   `json:"rows,omitempty"`    // rows written or read
	Files    int64   `json:"files,omitempty"`   // data files written or read
	Missing  int64   `json:"missing,omitempty"` // slots found missing (audits) or filled (repair)
	Dups     int64   `json:"dups,omitempty"`    // duplicate rows found
	Calls    int64   `json:"calls,omitempty"`   // source calls (repair)
	Windows  int64   `json:"windows,omitempty"` // derived windows recomputed
	Parts    int64   `json:"parts,omitempty"`   // partitions inventoried or compacted
	Inv      float64 `json:"inventory_seconds,omitempty"`
	PeakRSS  int64   `json:"peak_rss_bytes"`
	PeakHeap int64   `json:"peak_heap_bytes"`
	Note     string  `json:"note,omitempty"`
	Failed   string  `json:"failed,omitempty"` // an assertion that did not hold

	Runs    []float64 `json:"runs,omitempty"` // a repeated step: the seconds of each run; Seconds is their median
	invRuns []float64
}

// steps are the benchmark's steps, in the order they run: each leaves the
// lake as the next expects.
var steps = []struct {
	name   string
	desc   string
	run    func(context.Context, *env, *Result) error
	repeat bool // the step leaves the lake as it found it, or rebuilds what it writes: it runs Config.Runs times
}{
	{"ingest", "land the lake through the Lake, one Write per trading day (all symbols) and one of redelivered copies", stepIngest, true},
	{"bare", "the same rows, the same files, written with pqarrow alone", stepBare(false), true},
	{"bare-sync", "the same, each file and new directory synced to disk as the Lake's DirStore does", stepBare(true), true},
	{"floor", "read and decode the time column of every file with pqarrow", stepFloor, true},
	{"audit-scan", "Engine.Audit, the lake reading every file's key and time columns (InventoryScan)", stepAudit(sink.InventoryScan), true},
	{"audit-index", "Engine.Audit from the lake index, checked against a listing (InventoryListed, the default)", stepAudit(sink.InventoryListed), true},
	{"verify", "Lake.Verify: every file's data against the index (deep mode)", stepVerify, true},
	{"audit-trusted", "Engine.Audit from the lake index alone (InventoryTrusted)", stepAudit(sink.InventoryTrusted), true},
	{"repair", "Engine.Heal: audit, plan, refetch every gap from an in-process source, write", stepRepair, false},
	{"compact", "Lake.Compact of the whole dataset after the repair", stepCompact, false},
	{"resynth-full", "derive every hourly bar from scratch (Engine.Heal deriving the missing output)", stepResynthFull, false},
	{"resynth", "Engine.Heal after punching holes into k symbol-hours: repair, then resynthesis", stepResynth, false},
}

// env is what a step works on.
type env struct {
	cfg   Config
	w     *world
	truth truth
	mem   memory.Allocator
}

func (e *env) lakeDir() string { return filepath.Join(e.cfg.Dir, "lake") }
func (e *env) bareDir() string { return filepath.Join(e.cfg.Dir, "bare") }

func (e *env) openLake(mode sink.InventoryMode) (*sink.Lake, error) {
	return sink.OpenDir(e.lakeDir(), &sink.Options{Concurrency: e.cfg.Concurrency, Inventory: mode, Allocator: e.mem})
}

func (e *env) check(r *Result, ok bool, format string, args ...any) {
	if !ok && r.Failed == "" {
		r.Failed = fmt.Sprintf(format, args...)
	}
}

// timer measures the timed part of a step: wall time and peak memory.
type timer struct {
	start time.Time
	peak  *peakMeter
}

func startTimer() *timer { return &timer{peak: startPeak(), start: time.Now()} }

func (t *timer) stop(r *Result) {
	r.Seconds = time.Since(t.start).Seconds()
	r.PeakRSS, r.PeakHeap = t.peak.finish()
}

func stepIngest(ctx context.Context, e *env, r *Result) error {
	if err := os.RemoveAll(e.lakeDir()); err != nil {
		return err
	}
	settle()
	lake, err := e.openLake(sink.InventoryListed)
	if err != nil {
		return err
	}
	var busy time.Duration
	t := startTimer()
	for d := range e.w.days {
		main, dups := e.w.dayBatches(e.mem, d)
		for _, rec := range []arrow.Record{main, dups} {
			start := time.Now()
			if err := lake.Write(ctx, e.w.ds, rec); err != nil {
				return err
			}
			busy += time.Since(start)
			r.Rows += rec.NumRows()
			rec.Release()
		}
	}
	t.stop(r)
	r.Seconds = busy.Seconds() // only the writes: building the records is not ingest
	r.Files, _ = countFiles(filepath.Join(e.lakeDir(), e.w.ds.Name))
	e.check(r, r.Rows == e.truth.Rows, "wrote %d rows, want %d", r.Rows, e.truth.Rows)
	return nil
}

// stepBare writes the same rows into the same files with pqarrow alone:
// the same codec, the same parallelism, no index, no checks; with sync,
// each file, its directory and the directories created for it are synced,
// as DirStore does (without it, nothing is).
func stepBare(sync bool) func(context.Context, *env, *Result) error {
	return func(ctx context.Context, e *env, r *Result) error {
		return bare(ctx, e, r, sync)
	}
}

func bare(ctx context.Context, e *env, r *Result, sync bool) error {
	if err := os.RemoveAll(e.bareDir()); err != nil {
		return err
	}
	settle()
	ds := e.w.ds
	props := parquet.NewWriterProperties(parquet.WithCompression(compress.Codecs.Snappy), parquet.WithAllocator(e.mem))
	aprops := pqarrow.NewArrowWriterProperties(pqarrow.WithStoreSchema(), pqarrow.WithAllocator(e.mem))
	writeFile := func(path string, rec arrow.Record) error {
		dir := filepath.Dir(path)
		var created []string // directories to sync: the file's, and the parents of those created
		if sync {
			for d := dir; ; d = filepath.Dir(d) {
				if _, err := os.Stat(d); err == nil {
					break
				}
				created = append(created, filepath.Dir(d))
			}
			created = append(created, dir)
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		f, err := os.Create(path)
		if err != nil {
			return err
		}
		fw, err := pqarrow.NewFileWriter(ds.Schema, nopCloser{f}, props, aprops)
		if err != nil {
			f.Close()
			return err
		}
		err = fw.Write(rec)
		if cerr := fw.Close(); err == nil {
			err = cerr
		}
		if err == nil && sync {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		for _, d := range created {
			if err == nil {
				err = syncDir(d)
			}
		}
		return err
	}
	var busy time.Duration
	t := startTimer()
	for d, day := range e.w.days {
		main, dups := e.w.dayBatches(e.mem, d)
		for i, rec := range []arrow.Record{main, dups} {
			start := time.Now()
			g, _ := errgroup.WithContext(ctx)
			g.SetLimit(e.cfg.Concurrency)
			keys := rec.Column(0).(*array.String)
			for lo := 0; lo < int(rec.NumRows()); {
				hi := lo + 1
				for hi < int(rec.NumRows()) && keys.Value(hi) == keys.Value(lo) {
					hi++
				}
				sym, lo0, hi0 := keys.Value(lo), lo, hi
				g.Go(func() error {
					part := rec.NewSlice(int64(lo0), int64(hi0))
					defer part.Release()
					path := filepath.Join(e.bareDir(), ds.Name, ds.Key+"="+sym, "date="+day.Format("2006-01-02"), fmt.Sprintf("part-%d.parquet", i))
					return writeFile(path, part)
				})
				lo = hi
			}
			if err := g.Wait(); err != nil {
				return err
			}
			busy += time.Since(start)
			r.Rows += rec.NumRows()
			rec.Release()
		}
	}
	t.stop(r)
	r.Seconds = busy.Seconds()
	r.Files, _ = countFiles(filepath.Join(e.bareDir(), ds.Name))
	return nil
}

// nopCloser keeps pqarrow from closing the file before it is synced.
type nopCloser struct{ *os.File }

func (nopCloser) Close() error { return nil }

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// countFiles counts the .parquet files under dir.
func countFiles(dir string) (int64, error) {
	var n int64
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".parquet") {
			n++
		}
		return err
	})
	return n, err
}

// stepFloor finds every data file (a directory walk, as a glob would) and
// reads and decodes its time column with pqarrow, as many files at once as
// the lake reads.
func stepFloor(ctx context.Context, e *env, r *Result) error {
	root := filepath.Join(e.lakeDir(), e.w.ds.Name)
	ti := e.w.ds.TimeIndex()
	var rows, files atomic.Int64
	t := startTimer()
	paths := make(chan string, 256)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		defer close(paths)
		return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(p, ".parquet") {
				return err
			}
			select {
			case paths <- p:
				return nil
			case <-gctx.Done():
				return gctx.Err()
			}
		})
	})
	for range e.cfg.Concurrency {
		g.Go(func() error {
			for p := range paths {
				pf, err := file.OpenParquetFile(p, false, file.WithReadProps(parquet.NewReaderProperties(e.mem)))
				if err != nil {
					return err
				}
				fr, err := pqarrow.NewFileReader(pf, pqarrow.ArrowReadProperties{}, e.mem)
				if err != nil {
					pf.Close()
					return err
				}
				rgs := make([]int, pf.NumRowGroups())
				for i := range rgs {
					rgs[i] = i
				}
				tbl, err := fr.ReadRowGroups(gctx, []int{ti}, rgs)
				pf.Close()
				if err != nil {
					return err
				}
				rows.Add(tbl.NumRows())
				files.Add(1)
				tbl.Release()
			}
			return nil
		})
	}
	err := g.Wait()
	t.stop(r)
	r.Rows, r.Files = rows.Load(), files.Load()
	e.check(r, r.Rows == e.truth.Rows, "read %d rows, want %d", r.Rows, e.truth.Rows)
	return err
}

// stepAudit runs Engine.Audit over the whole lake with the lake inventorying
// in mode, checks it against the generated truth, and then times
// Lake.Inventory alone for the breakdown.
func stepAudit(mode sink.InventoryMode) func(context.Context, *env, *Result) error {
	return func(ctx context.Context, e *env, r *Result) error {
		lake, err := e.openLake(mode)
		if err != nil {
			return err
		}
		eng, err := heal.New(e.w.ds, nil, lake, &heal.Options{Keys: e.w.symbols, Rule: e.w.rule, Concurrency: e.cfg.Concurrency, Allocator: e.mem})
		if err != nil {
			return err
		}
		t := startTimer()
		rep, err := eng.Audit(ctx, e.w.window)
		if err != nil {
			return err
		}
		t.stop(r)
		for _, k := range rep.Keys {
			r.Missing += int64(k.Missing)
		}
		r.Dups = rep.Duplicates
		e.check(r, r.Missing == e.truth.Missing, "found %d missing slots, want %d", r.Missing, e.truth.Missing)
		e.check(r, r.Dups == e.truth.Duplicates, "found %d duplicates, want %d", r.Dups, e.truth.Duplicates)
		rep = nil
		start := time.Now()
		err = lake.Inventory(ctx, e.w.ds, heal.Query{Keys: e.w.symbols, Window: e.w.window}, func(p heal.PartitionInfo) error {
			r.Parts++
			r.Rows += p.Rows
			return nil
		})
		r.Inv = time.Since(start).Seconds()
		e.check(r, r.Rows == e.truth.Rows, "inventory counted %d rows, want %d", r.Rows, e.truth.Rows)
		return err
	}
}

func stepVerify(ctx context.Context, e *env, r *Result) error {
	lake, err := e.openLake(sink.InventoryListed)
	if err != nil {
		return err
	}
	t := startTimer()
	rep, err := lake.Verify(ctx, e.w.ds, heal.Query{})
	if err != nil {
		return err
	}
	t.stop(r)
	r.Files = int64(rep.Files)
	r.Note = fmt.Sprintf("%d indexed, %d unindexed, %d mismatched, %d stale", rep.Indexed, len(rep.Unindexed), len(rep.Mismatched), len(rep.Stale))
	e.check(r, rep.Reconciled && rep.Indexed == rep.Files, "verify: %s, reconciled %v", r.Note, rep.Reconciled)
	return nil
}

// lakeOnly hides the lake's Compactor, so that the repair step measures
// the repair alone; the compact step follows it.
type lakeOnly struct {
	heal.Lake
	heal.MetaStore
}

func stepRepair(ctx context.Context, e *env, r *Result) error {
	lake, err := e.openLake(sink.InventoryListed)
	if err != nil {
		return err
	}
	eng, err := heal.New(e.w.ds, e.w.source(e.mem), lakeOnly{lake, lake}, &heal.Options{
		Keys: e.w.symbols, Rule: e.w.rule, Concurrency: e.cfg.Concurrency, Allocator: e.mem,
	})
	if err != nil {
		return err
	}
	t := startTimer()
	rep, err := eng.Heal(ctx, e.w.window)
	if err != nil {
		return err
	}
	t.stop(r)
	r.Missing, r.Calls = int64(rep.Repaired), int64(rep.Calls)
	r.Note = fmt.Sprintf("%d requests, %d symbol-hours with holes, %.3f calls per symbol-hour with holes", rep.Requests, e.truth.HoleHours, float64(rep.Calls)/float64(e.truth.HoleHours))
	e.check(r, int64(rep.Missing) == e.truth.Missing && int64(rep.Repaired) == e.truth.Missing, "found %d and repaired %d of %d missing slots", rep.Missing, rep.Repaired, e.truth.Missing)
	e.check(r, rep.Calls <= int(e.truth.HoleHours), "%d calls for %d symbol-hours with holes", rep.Calls, e.truth.HoleHours)
	return nil
}

func stepCompact(ctx context.Context, e *env, r *Result) error {
	lake, err := e.openLake(sink.InventoryListed)
	if err != nil {
		return err
	}
	t := startTimer()
	n, err := lake.Compact(ctx, e.w.ds, heal.Query{})
	if err != nil {
		return err
	}
	t.stop(r)
	r.Parts = int64(n)
	r.Files, _ = countFiles(filepath.Join(e.lakeDir(), e.w.ds.Name))
	e.check(r, r.Files == int64(len(e.w.symbols)*len(e.w.days)), "%d files after compaction, want one per partition", r.Files)
	return nil
}

// deriveClock times the derive phase of a cycle from the engine's events:
// from the start of the first derivation to the end of the last.
type deriveClock struct {
	mu          sync.Mutex
	first, last time.Time
	n           int
}

// Observe notes when each derivation started and ended.
func (c *deriveClock) Observe(ev heal.Event) {
	if ev.Kind != heal.EventDerived {
		return
	}
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if start := now.Add(-ev.Elapsed); c.n == 0 || start.Before(c.first) {
		c.first = start
	}
	c.last = now
	c.n++
}

func (c *deriveClock) seconds() float64 {
	if c.n == 0 {
		return 0
	}
	return c.last.Sub(c.first).Seconds()
}

// forgetLedger deletes the engine's ledger, so that a scenario starts from
// the lake alone (the repair step left a million settled slots in it).
func forgetLedger(ctx context.Context, lake *sink.Lake, ds *heal.Dataset) error {
	names, err := lake.ListMeta(ctx, "ledger/"+ds.Name+"/")
	if err != nil {
		return err
	}
	for _, n := range names {
		if err := lake.DeleteMeta(ctx, n); err != nil {
			return err
		}
	}
	return nil
}

func (e *env) hourlyEngine(lake heal.Lake, clock *deriveClock) (*heal.Engine, *hourly, error) {
	h := newHourly(e.w.ds, e.mem)
	eng, err := heal.New(e.w.ds, e.w.source(e.mem), lake, &heal.Options{
		Keys: e.w.symbols, Rule: e.w.rule, Concurrency: e.cfg.Concurrency, Allocator: e.mem,
		Transformers: []heal.Transformer{h}, Observer: clock,
	})
	return eng, h, err
}

// sessionHours is the number of hourly windows the session touches per
// symbol, over all days: what a full recompute derives.
func (w *world) sessionHours() int64 {
	var n int64
	for _, mins := range w.session {
		last := int64(-1)
		for _, m := range mins {
			if h := m / 60; h != last {
				n++
				last = h
			}
		}
	}
	return n * int64(len(w.symbols))
}

func stepResynthFull(ctx context.Context, e *env, r *Result) error {
	lake, err := e.openLake(sink.InventoryListed)
	if err != nil {
		return err
	}
	if err := forgetLedger(ctx, lake, e.w.ds); err != nil {
		return err
	}
	clock := &deriveClock{}
	eng, _, err := e.hourlyEngine(lake, clock)
	if err != nil {
		return err
	}
	t := startTimer()
	rep, err := eng.Heal(ctx, e.w.window)
	if err != nil {
		return err
	}
	t.stop(r)
	r.Windows = int64(rep.Resynthesized)
	r.Note = fmt.Sprintf("derive phase %.2fs of the %.2fs cycle", clock.seconds(), r.Seconds)
	r.Seconds = clock.seconds()
	want := e.w.sessionHours()
	e.check(r, r.Windows == want, "derived %d windows, want %d", r.Windows, want)
	return nil
}

// punch removes three minutes from each of k distinct symbol-hours, behind
// heal's back (the partitions are rewritten without them), and returns how
// many symbol-hours it punched.
func (e *env) punch(ctx context.Context, lake *sink.Lake, k int) (int, error) {
	type sh struct{ sym, day, hour int }
	seen := map[sh]bool{}
	var picks []sh
	for i := uint64(0); len(picks) < k && i < uint64(100*k+100); i++ {
		p := sh{
			sym: int(mix(uint64(e.cfg.Seed)^i*7919) % uint64(len(e.w.symbols))),
			day: int(mix(uint64(e.cfg.Seed)^i*104729) % uint64(len(e.w.days))),
		}
		// One of the five whole hours inside the day's session (which
		// moves in UTC with daylight saving time).
		open := time.Unix(e.w.session[p.day][0]*60, 0).UTC()
		p.hour = open.Hour() + 1 + int(mix(uint64(e.cfg.Seed)^i*1299709)%5)
		if !seen[p] {
			seen[p] = true
			picks = append(picks, p)
		}
	}
	byPart := map[[2]int][]int{}
	for _, p := range picks {
		byPart[[2]int{p.sym, p.day}] = append(byPart[[2]int{p.sym, p.day}], p.hour)
	}
	ds := e.w.ds
	for sd, hours := range byPart {
		sym, day := e.w.symbols[sd[0]], e.w.days[sd[1]]
		p := ds.PartitionOf(sym, day)
		rd, err := lake.Scan(ctx, ds, heal.Query{Keys: []string{sym}, Window: p.Window()})
		if err != nil {
			return 0, err
		}
		var keep []int64
		var recs []arrow.Record
		for rd.Next() {
			rec := rd.Record()
			rec.Retain()
			recs = append(recs, rec)
		}
		rd.Release()
		if len(recs) != 1 {
			return 0, fmt.Errorf("bench: punch %s: %d records", p, len(recs))
		}
		rec := recs[0]
		ts := rec.Column(ds.TimeIndex()).(*array.Timestamp)
		for i := 0; i < ts.Len(); i++ {
			t := ts.Value(i).ToTime(arrow.Millisecond).UTC()
			if slices.Contains(hours, t.Hour()) && t.Minute() >= 20 && t.Minute() < 23 {
				continue
			}
			keep = append(keep, int64(i))
		}
		if removed := ts.Len() - len(keep); removed != 3*len(hours) {
			rec.Release()
			return 0, fmt.Errorf("bench: punch %s hours %v: removed %d rows, want %d (is the lake whole?)", p, hours, removed, 3*len(hours))
		}
		b := array.NewInt64Builder(e.mem)
		b.AppendValues(keep, nil)
		idx := b.NewInt64Array()
		b.Release()
		cols := make([]arrow.Array, rec.NumCols())
		for c := range cols {
			out, err := compute.TakeArray(compute.WithAllocator(ctx, e.mem), rec.Column(c), idx)
			if err != nil {
				return 0, err
			}
			cols[c] = out
		}
		idx.Release()
		kept := array.NewRecord(ds.Schema, cols, int64(len(keep)))
		for _, c := range cols {
			c.Release()
		}
		rec.Release()
		// Delete the partition's files behind heal's back, then store what is kept.
		dir := sink.PartitionPath(ds, p)
		var names []string
		if err := lake.Store().List(ctx, dir, func(oi sink.ObjectInfo) error { names = append(names, oi.Name); return nil }); err != nil {
			return 0, err
		}
		for _, n := range names {
			if err := lake.Store().Delete(ctx, n); err != nil {
				return 0, err
			}
		}
		err = lake.Write(ctx, ds, kept)
		kept.Release()
		if err != nil {
			return 0, err
		}
	}
	return len(picks), nil
}

func stepResynth(ctx context.Context, e *env, r *Result) error {
	lake, err := e.openLake(sink.InventoryListed)
	if err != nil {
		return err
	}
	k, err := e.punch(ctx, lake, e.cfg.RepairHours)
	if err != nil {
		return err
	}
	if err := forgetLedger(ctx, lake, e.w.ds); err != nil {
		return err
	}
	clock := &deriveClock{}
	eng, _, err := e.hourlyEngine(lake, clock)
	if err != nil {
		return err
	}
	t := startTimer()
	rep, err := eng.Heal(ctx, e.w.window)
	if err != nil {
		return err
	}
	t.stop(r)
	r.Windows, r.Missing, r.Calls = int64(rep.Resynthesized), int64(rep.Repaired), int64(rep.Calls)
	r.Note = fmt.Sprintf("%d symbol-hours punched; derive phase %.3fs of the %.2fs cycle (audit, repair, resynthesis, compaction)", k, clock.seconds(), r.Seconds)
	r.Seconds = clock.seconds()
	e.check(r, r.Windows == int64(k), "recomputed %d windows after repairing %d symbol-hours", r.Windows, k)
	e.check(r, r.Missing == int64(3*k), "repaired %d slots, want %d", r.Missing, 3*k)
	return nil
}
