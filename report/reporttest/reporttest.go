// Package reporttest builds a small heal lake with a real engine, for the
// tests of the report and of the heal command: four keys over three hours
// of minutes, with holes the engine repairs, holes the source confirms
// empty, holes it cannot repair (an open alarm), a derived hourly dataset,
// and cost records.
package reporttest

import (
	"context"
	"fmt"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/memory"

	"github.com/selfheal/heal"
	"github.com/selfheal/heal/audit"
	"github.com/selfheal/heal/cost"
	"github.com/selfheal/heal/sink"
)

// Start is when the fixture's data begins (a Monday, 14:00 UTC).
var Start = time.Date(2024, 3, 4, 14, 0, 0, 0, time.UTC)

// Keys are the fixture's keys. B misses one minute in ten live, repaired;
// C misses minutes 20–24 of the second hour and its history is broken
// (unrepairable, alarmed); D misses 15:45–15:47, which the source confirms
// empty.
var Keys = []string{"A", "B", "C", "D"}

// Window is the span of the fixture's data.
var Window = heal.Window{Start: Start, End: Start.Add(3 * time.Hour)}

// The fixture's expected outcome over Window.
const (
	Expected     = 4 * 180
	Repaired     = 18 // B
	Empty        = 3  // D
	Unrepairable = 5  // C
)

// Ticks is the raw dataset: one value per key per minute.
func Ticks() *heal.Dataset {
	return &heal.Dataset{
		Name: "ticks",
		Schema: arrow.NewSchema([]arrow.Field{
			{Name: "symbol", Type: arrow.BinaryTypes.String},
			{Name: "ts", Type: &arrow.TimestampType{Unit: arrow.Millisecond, TimeZone: "UTC"}},
			{Name: "value", Type: arrow.PrimitiveTypes.Float64},
		}, nil),
		Key: "symbol", Time: "ts", Grain: time.Minute, Partition: heal.PeriodDay,
	}
}

type source struct{}

func (source) Limits() heal.Limits { return heal.Limits{MaxWindow: time.Hour, MaxKeys: 1} }

func dropLive(k string, t time.Time) bool {
	switch k {
	case "B":
		return t.Minute()%10 == 3
	case "C":
		return t.Hour() == 15 && t.Minute() >= 20 && t.Minute() < 25
	case "D":
		return t.Hour() == 15 && t.Minute() >= 45 && t.Minute() < 48
	}
	return false
}

func (source) Fetch(ctx context.Context, req heal.Request) (arrow.Record, error) {
	ds := Ticks()
	b := array.NewRecordBuilder(memory.DefaultAllocator, ds.Schema)
	defer b.Release()
	for _, k := range req.Keys {
		if !req.Live && k == "C" {
			return nil, heal.Permanent(fmt.Errorf("403 the plan lacks history for %s", k))
		}
		for t := req.Window.Start; t.Before(req.Window.End); t = t.Add(time.Minute) {
			if req.Live && dropLive(k, t) || !req.Live && k == "D" && dropLive(k, t) {
				continue
			}
			b.Field(0).(*array.StringBuilder).Append(k)
			b.Field(1).(*array.TimestampBuilder).Append(arrow.Timestamp(t.UnixMilli()))
			b.Field(2).(*array.Float64Builder).Append(float64(t.Minute()))
		}
	}
	return b.NewRecord(), nil
}

// hourly derives the count of ticks per hour.
type hourly struct{}

func (hourly) Output() *heal.Dataset {
	return &heal.Dataset{
		Name: "ticks_hourly",
		Schema: arrow.NewSchema([]arrow.Field{
			{Name: "symbol", Type: arrow.BinaryTypes.String},
			{Name: "hour", Type: &arrow.TimestampType{Unit: arrow.Second, TimeZone: "UTC"}},
			{Name: "n", Type: arrow.PrimitiveTypes.Int64},
		}, nil),
		Key: "symbol", Time: "hour", Grain: time.Hour, Partition: heal.PeriodMonth,
	}
}

func (hourly) Affected(w heal.Window) []heal.Window {
	var out []heal.Window
	for s := w.Start.Truncate(time.Hour); s.Before(w.End); s = s.Add(time.Hour) {
		out = append(out, heal.Window{Start: s, End: s.Add(time.Hour)})
	}
	return out
}

func (h hourly) Derive(_ context.Context, key string, out heal.Window, in arrow.Record) (arrow.Record, error) {
	b := array.NewRecordBuilder(memory.DefaultAllocator, h.Output().Schema)
	defer b.Release()
	b.Field(0).(*array.StringBuilder).Append(key)
	b.Field(1).(*array.TimestampBuilder).Append(arrow.Timestamp(out.Start.Unix()))
	b.Field(2).(*array.Int64Builder).Append(in.NumRows())
	return b.NewRecord(), nil
}

// Clock is a clock that moves only when set, or when waited on.
type Clock struct{ t time.Time }

func (c *Clock) Now() time.Time { return c.t }
func (c *Clock) After(d time.Duration) <-chan time.Time {
	c.t = c.t.Add(d)
	ch := make(chan time.Time, 1)
	ch <- c.t
	return ch
}

// Build fills the lake in dir (local disk) as an engine with the Continuous
// rule would over Window: the live path minute by minute, then one heal
// (audit, repair, resynthesis, alarm), with a cost.Meter recording. It
// returns the engine's cycle report.
func Build(ctx context.Context, dir string) (*heal.CycleReport, error) {
	store, err := sink.NewDirStore(dir)
	if err != nil {
		return nil, err
	}
	return BuildStore(ctx, store)
}

// BuildStore is [Build] into any store (S3 in the heal command's tests).
func BuildStore(ctx context.Context, store sink.Store) (*heal.CycleReport, error) {
	return BuildWith(ctx, store, nil)
}

// BuildWith is [BuildStore] with obs (if not nil) told of the engine's
// events too.
func BuildWith(ctx context.Context, store sink.Store, obs heal.Observer) (*heal.CycleReport, error) {
	clk := &Clock{t: Start}
	m := cost.NewMeter("ticks", &cost.Options{Clock: clk, StoragePrefixes: []string{"ticks/", "ticks_hourly/"}})
	lake := sink.NewLake(m.Store(store), nil)
	var o heal.Observer = m
	if obs != nil {
		o = heal.ObserverFunc(func(e heal.Event) {
			m.Observe(e)
			obs.Observe(e)
		})
	}
	eng, err := heal.New(Ticks(), source{}, lake, &heal.Options{
		Keys: Keys, Rule: audit.Continuous(), Clock: clk, Observer: o,
		Transformers: []heal.Transformer{hourly{}}, Retry: heal.RetryPolicy{MaxAttempts: 2},
	})
	if err != nil {
		return nil, err
	}
	for s := Window.Start; s.Before(Window.End); s = s.Add(time.Minute) {
		clk.t = s.Add(time.Second)
		if _, err := eng.Acquire(ctx, s); err != nil {
			return nil, err
		}
		if s.Minute() == 59 { // one cost record per hour
			if _, err := m.Flush(ctx, lake); err != nil {
				return nil, err
			}
		}
	}
	clk.t = Window.End.Add(5 * time.Minute)
	rep, err := eng.Heal(ctx, Window)
	if err != nil {
		return nil, err
	}
	if _, err := m.Flush(ctx, lake); err != nil {
		return nil, err
	}
	return rep, nil
}
