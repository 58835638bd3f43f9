package bench

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/memory"

	"github.com/selfheal/heal"
	"github.com/selfheal/heal/audit"
)

// The generated lake: minute bars of S symbols over D trading days of the
// US regular session (390 minutes a day), partitioned by symbol and day, with
// seeded gaps (a slot of a symbol is missing with probability GapRate, the
// glitch of the original pipeline dropping one symbol in 11 every minute)
// and seeded duplicates (a present slot is delivered twice with probability
// DupRate; the second copy lands in a later file of the partition, as a
// redelivery does). Everything is a pure function of the seed, so each step
// of the benchmark, in its own process, knows the truth without reading it.

// barsDataset is the generated dataset: minute bars partitioned by day.
func barsDataset() *heal.Dataset {
	return &heal.Dataset{
		Name: "bars",
		Schema: arrow.NewSchema([]arrow.Field{
			{Name: "symbol", Type: arrow.BinaryTypes.String},
			{Name: "ts", Type: &arrow.TimestampType{Unit: arrow.Millisecond, TimeZone: "UTC"}},
			{Name: "open", Type: arrow.PrimitiveTypes.Float64},
			{Name: "high", Type: arrow.PrimitiveTypes.Float64},
			{Name: "low", Type: arrow.PrimitiveTypes.Float64},
			{Name: "close", Type: arrow.PrimitiveTypes.Float64},
			{Name: "volume", Type: arrow.PrimitiveTypes.Int64},
		}, nil),
		Key:       "symbol",
		Time:      "ts",
		Grain:     time.Minute,
		Partition: heal.PeriodDay,
	}
}

// firstDay is where the generated calendar starts looking for trading days.
var firstDay = time.Date(2024, 1, 2, 0, 0, 0, 0, time.UTC)

// world is the generated truth for one configuration.
type world struct {
	cfg     Config
	ds      *heal.Dataset
	rule    *audit.Session
	symbols []string
	days    []time.Time // UTC midnights of the trading days
	session [][]int64   // per day: the minutes (unix minutes) the rule expects
	window  heal.Window // from the first day's midnight to the last day's end
}

func newWorld(cfg Config) *world {
	w := &world{cfg: cfg, ds: barsDataset(), rule: audit.USEquities()}
	for i := 0; i < cfg.Symbols; i++ {
		w.symbols = append(w.symbols, fmt.Sprintf("S%04d", i))
	}
	for d := firstDay; len(w.days) < cfg.Days; d = d.AddDate(0, 0, 1) {
		exp := w.rule.Expected("", heal.Window{Start: d, End: d.AddDate(0, 0, 1)}, time.Minute)
		if len(exp) == 0 {
			continue
		}
		var mins []int64
		for _, e := range exp {
			for t := e.Start; t.Before(e.End); t = t.Add(time.Minute) {
				mins = append(mins, t.Unix()/60)
			}
		}
		w.days = append(w.days, d)
		w.session = append(w.session, mins)
	}
	if n := len(w.days); n > 0 {
		w.window = heal.Window{Start: w.days[0], End: w.days[n-1].AddDate(0, 0, 1)}
	}
	return w
}

// mix is splitmix64's finalizer: a well-mixed 64-bit hash.
func mix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// draw is a uniform number in [0, 1) for (salt, symbol, minute).
func (w *world) draw(salt uint64, sym int, minute int64) float64 {
	h := mix(uint64(w.cfg.Seed) ^ mix(salt^mix(uint64(sym)<<40^uint64(minute))))
	return float64(h>>11) / (1 << 53)
}

// missing reports whether the lake lacks the bar of symbol sym at minute.
func (w *world) missing(sym int, minute int64) bool { return w.draw(1, sym, minute) < w.cfg.GapRate }

// duplicated reports whether a present bar is delivered twice.
func (w *world) duplicated(sym int, minute int64) bool {
	return w.draw(2, sym, minute) < w.cfg.DupRate
}

// truth counts what an audit of the generated lake must find.
type truth struct {
	Expected, Present, Missing, Duplicates int64
	HoleHours                              int64 // symbol-hours holding at least one missing slot
	Rows                                   int64 // rows stored, duplicates included
}

func (w *world) truth() truth {
	var t truth
	for s := range w.symbols {
		for _, mins := range w.session {
			lastHour := int64(-1)
			for _, m := range mins {
				t.Expected++
				if w.missing(s, m) {
					t.Missing++
					if h := m / 60; h != lastHour {
						t.HoleHours++
						lastHour = h
					}
					continue
				}
				t.Present++
				t.Rows++
				if w.duplicated(s, m) {
					t.Duplicates++
					t.Rows++
				}
			}
		}
	}
	return t
}

// bar returns the deterministic bar of symbol sym at minute.
func (w *world) bar(sym int, minute int64) (o, h, l, c float64, v int64) {
	base := 20 + float64(sym%400) + 5*math.Sin(float64(minute)/97+float64(sym))
	o = math.Round(base*100) / 100
	c = math.Round((base+w.draw(3, sym, minute)-0.5)*100) / 100
	h = math.Max(o, c) + 0.01
	l = math.Min(o, c) - 0.01
	v = 100 + int64(w.draw(4, sym, minute)*10000)
	return
}

// builder appends bars to a record of the dataset.
type builder struct {
	w   *world
	b   *array.RecordBuilder
	sym *array.StringBuilder
	ts  *array.TimestampBuilder
	f   [4]*array.Float64Builder
	vol *array.Int64Builder
	n   int
}

func (w *world) newBuilder(mem memory.Allocator) *builder {
	b := array.NewRecordBuilder(mem, w.ds.Schema)
	bb := &builder{w: w, b: b, sym: b.Field(0).(*array.StringBuilder), ts: b.Field(1).(*array.TimestampBuilder), vol: b.Field(6).(*array.Int64Builder)}
	for i := range bb.f {
		bb.f[i] = b.Field(2 + i).(*array.Float64Builder)
	}
	return bb
}

func (bb *builder) add(sym int, minute int64) {
	o, h, l, c, v := bb.w.bar(sym, minute)
	bb.sym.Append(bb.w.symbols[sym])
	bb.ts.Append(arrow.Timestamp(minute * 60_000))
	bb.f[0].Append(o)
	bb.f[1].Append(h)
	bb.f[2].Append(l)
	bb.f[3].Append(c)
	bb.vol.Append(v)
	bb.n++
}

// record returns what was added and resets the builder.
func (bb *builder) record() arrow.Record { bb.n = 0; return bb.b.NewRecord() }

func (bb *builder) release() { bb.b.Release() }

// dayBatches returns the two writes that land day d: every present bar of
// every symbol (ordered by symbol, then time), and the redelivered copies.
// The caller releases both.
func (w *world) dayBatches(mem memory.Allocator, d int) (main, dups arrow.Record) {
	bb := w.newBuilder(mem)
	defer bb.release()
	for s := range w.symbols {
		for _, m := range w.session[d] {
			if !w.missing(s, m) {
				bb.add(s, m)
			}
		}
	}
	main = bb.record()
	for s := range w.symbols {
		for _, m := range w.session[d] {
			if !w.missing(s, m) && w.duplicated(s, m) {
				bb.add(s, m)
			}
		}
	}
	return main, bb.record()
}

// source is a zero-latency in-process heal.Source holding every bar.
type source struct {
	w     *world
	mem   memory.Allocator
	index map[string]int
}

func (w *world) source(mem memory.Allocator) *source {
	s := &source{w: w, mem: mem, index: make(map[string]int, len(w.symbols))}
	for i, k := range w.symbols {
		s.index[k] = i
	}
	return s
}

// Fetch returns the bars of req.Keys in req.Window, session minutes only.
func (s *source) Fetch(ctx context.Context, req heal.Request) (arrow.Record, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	bb := s.w.newBuilder(s.mem)
	defer bb.release()
	lo, hi := req.Window.Start.Unix()/60, req.Window.End.Unix()/60
	for _, k := range req.Keys {
		sym, ok := s.index[k]
		if !ok {
			continue
		}
		for d, day := range s.w.days {
			if !req.Window.Overlaps(heal.Window{Start: day, End: day.AddDate(0, 0, 1)}) {
				continue
			}
			for _, m := range s.w.session[d] {
				if m >= lo && m < hi {
					bb.add(sym, m)
				}
			}
		}
	}
	return bb.record(), nil
}

// Limits: a day of minutes for one symbol per call, as minute-bar APIs
// typically allow.
func (s *source) Limits() heal.Limits { return heal.Limits{MaxWindow: 24 * time.Hour, MaxKeys: 1} }

// hourly derives hourly bars from the minute bars: the transformer whose
// resynthesis the benchmark counts.
type hourly struct {
	in, out *heal.Dataset
	mem     memory.Allocator
}

func newHourly(in *heal.Dataset, mem memory.Allocator) *hourly {
	out := *in
	out.Name = "bars_1h"
	out.Grain = time.Hour
	return &hourly{in: in, out: &out, mem: mem}
}

// Output is bars_1h: the minute bars' schema at an hourly grain.
func (h *hourly) Output() *heal.Dataset { return h.out }

// Affected returns the hours overlapping w.
func (h *hourly) Affected(w heal.Window) []heal.Window {
	var out []heal.Window
	for t := w.Start.UTC().Truncate(time.Hour); t.Before(w.End); t = t.Add(time.Hour) {
		out = append(out, heal.Window{Start: t, End: t.Add(time.Hour)})
	}
	return out
}

// Derive aggregates the minutes of the hour into one bar; no minutes, no bar.
func (h *hourly) Derive(_ context.Context, key string, out heal.Window, in arrow.Record) (arrow.Record, error) {
	b := array.NewRecordBuilder(h.mem, h.out.Schema)
	defer b.Release()
	n := int(in.NumRows())
	if n == 0 {
		return b.NewRecord(), nil
	}
	o, hi, lo, c := in.Column(2).(*array.Float64), in.Column(3).(*array.Float64), in.Column(4).(*array.Float64), in.Column(5).(*array.Float64)
	vol := in.Column(6).(*array.Int64)
	high, low, v := hi.Value(0), lo.Value(0), int64(0)
	for i := 0; i < n; i++ {
		high = math.Max(high, hi.Value(i))
		low = math.Min(low, lo.Value(i))
		v += vol.Value(i)
	}
	b.Field(0).(*array.StringBuilder).Append(key)
	b.Field(1).(*array.TimestampBuilder).Append(arrow.Timestamp(out.Start.UnixMilli()))
	b.Field(2).(*array.Float64Builder).Append(o.Value(0))
	b.Field(3).(*array.Float64Builder).Append(high)
	b.Field(4).(*array.Float64Builder).Append(low)
	b.Field(5).(*array.Float64Builder).Append(c.Value(n - 1))
	b.Field(6).(*array.Int64Builder).Append(v)
	return b.NewRecord(), nil
}
