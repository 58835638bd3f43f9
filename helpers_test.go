package heal_test

import (
	"context"
	"errors"
	"hash/fnv"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/memory"

	"github.com/selfheal/heal"
)

// ticks is the raw dataset of these tests: one value per key per minute.
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

// value is the synthetic source's deterministic value for a slot.
func value(key string, t time.Time) float64 {
	h := fnv.New64a()
	h.Write([]byte(key))
	return float64(h.Sum64()%1000) + float64(t.Unix()/60%997)/10
}

// synth is a seeded synthetic Source: live polls may be dropped (the
// glitch), some slots truly have no data, some keys' history is broken.
type synth struct {
	ds     *heal.Dataset
	mem    memory.Allocator
	limits heal.Limits

	mu     sync.Mutex
	noData map[string]map[time.Time]bool // the source has nothing for these slots
	broken map[string]error              // historical fetches of the key fail with this error
	drop   func(key string, slot time.Time) bool
	hist   []heal.Request
	block  map[string]chan struct{} // historical fetches of the key wait here (or for ctx)

	live, calls atomic.Int64
}

func newSynth(mem memory.Allocator) *synth {
	return &synth{ds: ticks(), mem: mem, noData: map[string]map[time.Time]bool{}, broken: map[string]error{},
		block: map[string]chan struct{}{}, limits: heal.Limits{MaxWindow: time.Hour}}
}

func (s *synth) Limits() heal.Limits { return s.limits }

func (s *synth) Fetch(ctx context.Context, req heal.Request) (arrow.Record, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	b := array.NewRecordBuilder(s.mem, s.ds.Schema)
	defer b.Release()
	if req.Live {
		s.live.Add(1)
	} else {
		s.calls.Add(1)
		s.mu.Lock()
		s.hist = append(s.hist, req)
		var blk chan struct{}
		for _, k := range req.Keys {
			if err := s.broken[k]; err != nil {
				s.mu.Unlock()
				return nil, err
			}
			if c := s.block[k]; c != nil {
				blk = c
			}
		}
		s.mu.Unlock()
		if blk != nil {
			select {
			case <-blk:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, k := range req.Keys {
		for t := req.Window.Start; t.Before(req.Window.End); t = t.Add(time.Minute) {
			if s.noData[k][t] || (req.Live && s.drop != nil && s.drop(k, t)) {
				continue
			}
			b.Field(0).(*array.StringBuilder).Append(k)
			// live polls land a few seconds into the minute: the engine floors them
			ts := t
			if req.Live {
				ts = t.Add(17 * time.Second)
			}
			b.Field(1).(*array.TimestampBuilder).Append(arrow.Timestamp(ts.UnixMilli()))
			b.Field(2).(*array.Float64Builder).Append(value(k, t))
		}
	}
	return b.NewRecord(), nil
}

func (s *synth) requests() []heal.Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]heal.Request(nil), s.hist...)
}

// hourly derives per-hour count and sum of ticks: the derived dataset.
type hourly struct{ mem memory.Allocator }

func (h hourly) Output() *heal.Dataset {
	return &heal.Dataset{
		Name: "hourly",
		Schema: arrow.NewSchema([]arrow.Field{
			{Name: "symbol", Type: arrow.BinaryTypes.String},
			{Name: "hour", Type: &arrow.TimestampType{Unit: arrow.Second, TimeZone: "UTC"}},
			{Name: "n", Type: arrow.PrimitiveTypes.Int64},
			{Name: "sum", Type: arrow.PrimitiveTypes.Float64},
		}, nil),
		Key: "symbol", Time: "hour", Grain: time.Hour, Partition: heal.PeriodMonth,
	}
}

func (h hourly) Affected(w heal.Window) []heal.Window {
	var out []heal.Window
	for s := w.Start.Truncate(time.Hour); s.Before(w.End); s = s.Add(time.Hour) {
		out = append(out, heal.Window{Start: s, End: s.Add(time.Hour)})
	}
	return out
}

func (h hourly) Derive(_ context.Context, key string, out heal.Window, in arrow.Record) (arrow.Record, error) {
	var n int64
	var sum float64
	vals := in.Column(2).(*array.Float64)
	for i := 0; i < int(in.NumRows()); i++ {
		n++
		sum += vals.Value(i)
	}
	b := array.NewRecordBuilder(h.mem, h.Output().Schema)
	defer b.Release()
	b.Field(0).(*array.StringBuilder).Append(key)
	b.Field(1).(*array.TimestampBuilder).Append(arrow.Timestamp(out.Start.Unix()))
	b.Field(2).(*array.Int64Builder).Append(n)
	b.Field(3).(*array.Float64Builder).Append(math.Round(sum*1000) / 1000)
	return b.NewRecord(), nil
}

type rowKey struct {
	key string
	t   time.Time
}

// scanAll reads a whole dataset back as (key, time) -> row values.
func scanAll(ctx context.Context, lake heal.Lake, ds *heal.Dataset) (map[rowKey][]any, int, error) {
	rd, err := lake.Scan(ctx, ds, heal.Query{})
	if err != nil {
		return nil, 0, err
	}
	defer rd.Release()
	out := map[rowKey][]any{}
	rows := 0
	unit := ds.TimeUnit()
	for rd.Next() {
		rec := rd.Record()
		keys := rec.Column(ds.KeyIndex()).(*array.String)
		ts := rec.Column(ds.TimeIndex()).(*array.Timestamp)
		for i := 0; i < int(rec.NumRows()); i++ {
			rows++
			var vals []any
			for c := 0; c < int(rec.NumCols()); c++ {
				vals = append(vals, rec.Column(c).GetOneForMarshal(i))
			}
			out[rowKey{keys.Value(i), ts.Value(i).ToTime(unit)}] = vals
		}
	}
	return out, rows, rd.Err()
}

var errFlaky = errors.New("upstream 503")
