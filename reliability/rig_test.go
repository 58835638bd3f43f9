package reliability

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/memory"

	"github.com/selfheal/heal"
	"github.com/selfheal/heal/sink"
)

// This file is the rig the crash and concurrency tests share with their
// child processes: a dataset, a deterministic synthetic source, a derived
// hourly dataset, a clock that runs as fast as the engine waits, a Store
// decorator that reports what is in flight, and readers that check a lake.

// origin is the first slot of every timeline in this package: a Monday.
var origin = time.Date(2024, 3, 4, 0, 0, 0, 0, time.UTC)

// ticks is the raw dataset: one value per key per minute.
func ticks() *heal.Dataset {
	return &heal.Dataset{
		Name: "ticks",
		Schema: arrow.NewSchema([]arrow.Field{
			{Name: "symbol", Type: arrow.BinaryTypes.String},
			{Name: "ts", Type: &arrow.TimestampType{Unit: arrow.Millisecond, TimeZone: "UTC"}},
			{Name: "value", Type: arrow.PrimitiveTypes.Float64},
		}, nil),
		Key: "symbol", Time: "ts", Grain: time.Minute,
	}
}

func hash(key string, t time.Time, salt string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(salt))
	h.Write([]byte(key))
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], uint64(t.Unix()))
	h.Write(b[:])
	return h.Sum64()
}

// value is the source's value for a slot: a pure function, so any process
// can tell a stored row is right.
func value(key string, t time.Time) float64 {
	return float64(hash(key, t, "v")%100000) / 100
}

// liveDropped reports whether the live poll of (key, slot) comes back
// empty: the glitch repairs fill (about 8% of polls).
func liveDropped(key string, t time.Time) bool { return hash(key, t, "drop")%25 < 2 }

// noData reports whether the source has nothing at all for (key, slot),
// live or historical: the slots a repair confirms empty (about 1%).
func noData(key string, t time.Time) bool { return hash(key, t, "none")%97 == 0 }

// synth is the deterministic Source of the crash and concurrency tests.
type synth struct {
	mem    memory.Allocator
	limits heal.Limits
	// onFetch, if set, is told of every historical request before it is
	// answered (the children report them to the parent).
	onFetch func(heal.Request)

	live, hist atomic.Int64
}

func newSynth(mem memory.Allocator) *synth {
	return &synth{mem: mem, limits: heal.Limits{MaxWindow: time.Hour, MaxKeys: 2}}
}

func (s *synth) Limits() heal.Limits { return s.limits }

func (s *synth) Fetch(ctx context.Context, req heal.Request) (arrow.Record, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if req.Live {
		s.live.Add(1)
	} else {
		s.hist.Add(1)
		if s.onFetch != nil {
			s.onFetch(req)
		}
	}
	ds := ticks()
	b := array.NewRecordBuilder(s.mem, ds.Schema)
	defer b.Release()
	for _, k := range req.Keys {
		for t := req.Window.Start; t.Before(req.Window.End); t = t.Add(time.Minute) {
			if noData(k, t) || (req.Live && liveDropped(k, t)) {
				continue
			}
			b.Field(0).(*array.StringBuilder).Append(k)
			b.Field(1).(*array.TimestampBuilder).Append(arrow.Timestamp(t.UnixMilli()))
			b.Field(2).(*array.Float64Builder).Append(value(k, t))
		}
	}
	return b.NewRecord(), nil
}

// hourly derives per-hour count and sum of ticks.
type hourly struct{ mem memory.Allocator }

func hourlyDataset() *heal.Dataset {
	return &heal.Dataset{
		Name: "hourly",
		Schema: arrow.NewSchema([]arrow.Field{
			{Name: "symbol", Type: arrow.BinaryTypes.String},
			{Name: "hour", Type: &arrow.TimestampType{Unit: arrow.Millisecond, TimeZone: "UTC"}},
			{Name: "n", Type: arrow.PrimitiveTypes.Int64},
			{Name: "sum", Type: arrow.PrimitiveTypes.Float64},
		}, nil),
		Key: "symbol", Time: "hour", Grain: time.Hour, Partition: heal.PeriodMonth,
	}
}

func (h hourly) Output() *heal.Dataset { return hourlyDataset() }

func (h hourly) Affected(w heal.Window) []heal.Window {
	var out []heal.Window
	for s := w.Start.Truncate(time.Hour); s.Before(w.End); s = s.Add(time.Hour) {
		out = append(out, heal.Window{Start: s, End: s.Add(time.Hour)})
	}
	return out
}

func (h hourly) Derive(_ context.Context, key string, out heal.Window, in arrow.Record) (arrow.Record, error) {
	vals := in.Column(2).(*array.Float64)
	var sum float64
	for i := 0; i < vals.Len(); i++ {
		sum += vals.Value(i)
	}
	b := array.NewRecordBuilder(h.mem, hourlyDataset().Schema)
	defer b.Release()
	b.Field(0).(*array.StringBuilder).Append(key)
	b.Field(1).(*array.TimestampBuilder).Append(arrow.Timestamp(out.Start.UnixMilli()))
	b.Field(2).(*array.Int64Builder).Append(int64(vals.Len()))
	b.Field(3).(*array.Float64Builder).Append(round3(sum))
	return b.NewRecord(), nil
}

func round3(x float64) float64 { return math.Round(x*1000) / 1000 }

// stepClock is simulated time that moves only when someone waits on it:
// After(d) sleeps d/speed of real time (at most maxSleep), then moves the
// clock to at least now+d. An engine on it runs as fast as the machine
// allows, its waits still ordered as in real time.
type stepClock struct {
	mu       sync.Mutex
	t        time.Time
	speed    float64
	maxSleep time.Duration
}

func newStepClock(start time.Time, speed float64) *stepClock {
	return &stepClock{t: start, speed: speed, maxSleep: 20 * time.Millisecond}
}

func (c *stepClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func (c *stepClock) Set(t time.Time) { c.mu.Lock(); c.t = t; c.mu.Unlock() }

func (c *stepClock) After(d time.Duration) <-chan time.Time {
	target := c.Now().Add(d)
	ch := make(chan time.Time, 1)
	sleep := min(time.Duration(float64(d)/c.speed), c.maxSleep)
	go func() {
		if sleep > 0 {
			time.Sleep(sleep)
		}
		c.mu.Lock()
		if c.t.Before(target) {
			c.t = target
		}
		t := c.t
		c.mu.Unlock()
		ch <- t
	}()
	return ch
}

// probeStore is a sink.Store decorator that prints a line before and after
// every Put and Delete, naming what the operation is for, so that a parent
// process can kill its child inside a chosen kind of operation and, after
// the kill, tell exactly which operations were in flight:
//
//	B <id> <kind> <name>
//	E <id> <microseconds>
type probeStore struct {
	sink.Store
	out  *lineWriter
	next atomic.Int64
}

// opKind names what a store operation is for, from its name and the
// engine stage in its ctx.
func opKind(ctx context.Context, op, name string) string {
	stage := heal.StageOf(ctx)
	switch {
	case strings.HasPrefix(name, "_heal/ledger/"):
		if op == "delete" {
			return "ledger-prune"
		}
		return "ledger-append"
	case strings.HasPrefix(name, "_heal/lease/"):
		return "lease-" + op
	case strings.HasPrefix(name, "_heal/"):
		return "meta-" + op
	case strings.HasPrefix(name, "_quarantine/"):
		return "quarantine"
	case op == "delete":
		return "compact-delete"
	case strings.Contains(name[strings.LastIndexByte(name, '/')+1:], ".c"):
		return "compact-write"
	case strings.HasPrefix(name, "hourly/"):
		if stage == heal.StageAcquire {
			return "live-derive-write"
		}
		return "resynth-write"
	case stage == heal.StageAcquire:
		return "live-write"
	case stage == heal.StageRepair:
		return "repair-write"
	}
	return "write-" + string(stage)
}

func (p *probeStore) Put(ctx context.Context, name string, data []byte, ifAbsent bool) error {
	id := p.next.Add(1)
	p.out.printf("B %d %s %s", id, opKind(ctx, "put", name), name)
	start := time.Now()
	err := p.Store.Put(ctx, name, data, ifAbsent)
	p.out.printf("E %d %d", id, time.Since(start).Microseconds())
	return err
}

func (p *probeStore) Delete(ctx context.Context, name string) error {
	id := p.next.Add(1)
	p.out.printf("B %d %s %s", id, opKind(ctx, "delete", name), name)
	start := time.Now()
	err := p.Store.Delete(ctx, name)
	p.out.printf("E %d %d", id, time.Since(start).Microseconds())
	return err
}

// CleanTemp passes through, so the lake's Compact still cleans up.
func (p *probeStore) CleanTemp(olderThan time.Duration) (int, error) {
	if c, ok := p.Store.(interface {
		CleanTemp(time.Duration) (int, error)
	}); ok {
		return c.CleanTemp(olderThan)
	}
	return 0, nil
}

// lineWriter writes whole lines with one write each, so lines from
// goroutines never interleave in a pipe.
type lineWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lineWriter) printf(format string, args ...any) {
	s := fmt.Sprintf(format, args...) + "\n"
	l.mu.Lock()
	io.WriteString(l.w, s)
	l.mu.Unlock()
}

// slotKey is one (key, time) of a dataset.
type slotKey struct {
	key string
	t   int64 // unix seconds
}

func (k slotKey) time() time.Time { return time.Unix(k.t, 0).UTC() }

// hourAgg is one derived row.
type hourAgg struct {
	n   int64
	sum float64
}

// lakeView is what a lake holds, read back through Scan.
type lakeView struct {
	raw      map[slotKey]float64
	rawRows  int // rows Scan returned: more than len(raw) means a duplicate
	derived  map[slotKey]hourAgg
	derRows  int
	rawBad   []string // rows whose value is not the source's
	firstBad error
}

// readLake scans both datasets of lake.
func readLake(ctx context.Context, lake heal.Lake) (*lakeView, error) {
	v := &lakeView{raw: map[slotKey]float64{}, derived: map[slotKey]hourAgg{}}
	err := scan(ctx, lake, ticks(), func(rec arrow.Record, i int, k slotKey) {
		x := rec.Column(2).(*array.Float64).Value(i)
		v.rawRows++
		v.raw[k] = x
		if x != value(k.key, k.time()) || noData(k.key, k.time()) {
			v.rawBad = append(v.rawBad, fmt.Sprintf("%s %s = %v", k.key, k.time().Format(time.RFC3339), x))
		}
	})
	if err != nil {
		return nil, err
	}
	err = scan(ctx, lake, hourlyDataset(), func(rec arrow.Record, i int, k slotKey) {
		v.derRows++
		v.derived[k] = hourAgg{rec.Column(2).(*array.Int64).Value(i), rec.Column(3).(*array.Float64).Value(i)}
	})
	return v, err
}

func scan(ctx context.Context, lake heal.Lake, ds *heal.Dataset, fn func(rec arrow.Record, i int, k slotKey)) error {
	rd, err := lake.Scan(ctx, ds, heal.Query{})
	if err != nil {
		return err
	}
	defer rd.Release()
	unit := ds.TimeUnit()
	for rd.Next() {
		rec := rd.Record()
		keys := rec.Column(ds.KeyIndex()).(*array.String)
		ts := rec.Column(ds.TimeIndex()).(*array.Timestamp)
		for i := 0; i < int(rec.NumRows()); i++ {
			fn(rec, i, slotKey{keys.Value(i), ts.Value(i).ToTime(unit).Unix()})
		}
	}
	return rd.Err()
}

// recompute is the derived dataset computed from raw in full.
func recompute(raw map[slotKey]float64) map[slotKey]hourAgg {
	type acc struct {
		n    int64
		vals []float64
	}
	accs := map[slotKey]*acc{}
	for k, v := range raw {
		h := slotKey{k.key, k.time().Truncate(time.Hour).Unix()}
		a := accs[h]
		if a == nil {
			a = &acc{}
			accs[h] = a
		}
		a.n++
		a.vals = append(a.vals, v)
	}
	out := make(map[slotKey]hourAgg, len(accs))
	for k, a := range accs {
		sort.Float64s(a.vals) // the sum's rounding must not depend on map order
		var s float64
		for _, v := range a.vals {
			s += v
		}
		out[k] = hourAgg{a.n, s}
	}
	return out
}

// sameAgg compares a derived row with a recomputation, allowing for the
// float sum being taken in a different order.
func sameAgg(a, b hourAgg) bool { return a.n == b.n && math.Abs(a.sum-b.sum) < 0.01 }

// filesUnder lists the regular files below dir whose base name matches.
func filesUnder(dir string, match func(rel, base string) bool) []string {
	var out []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		if match(filepath.ToSlash(rel), d.Name()) {
			out = append(out, filepath.ToSlash(rel))
		}
		return nil
	})
	sort.Strings(out)
	return out
}

func tempFiles(dir string) []string {
	return filesUnder(dir, func(_, base string) bool { return strings.HasPrefix(base, ".tmp-") })
}

func quarantined(dir string) []string {
	return filesUnder(dir, func(rel, _ string) bool { return strings.HasPrefix(rel, "_quarantine/") })
}

// ageFiles sets the modification time of files (relative to dir) to d ago.
func ageFiles(dir string, files []string, d time.Duration) error {
	old := time.Now().Add(-d)
	var errs []error
	for _, f := range files {
		if err := os.Chtimes(filepath.Join(dir, filepath.FromSlash(f)), old, old); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
