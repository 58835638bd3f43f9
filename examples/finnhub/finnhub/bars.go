package finnhub

import (
	"context"
	"fmt"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/memory"

	"github.com/selfheal/heal"
)

var barsSchema = arrow.NewSchema([]arrow.Field{
	{Name: "symbol", Type: arrow.BinaryTypes.String},
	{Name: "hour", Type: Timestamp},
	{Name: "open", Type: arrow.PrimitiveTypes.Float64, Nullable: true},
	{Name: "high", Type: arrow.PrimitiveTypes.Float64, Nullable: true},
	{Name: "low", Type: arrow.PrimitiveTypes.Float64, Nullable: true},
	{Name: "close", Type: arrow.PrimitiveTypes.Float64, Nullable: true},
	{Name: "points", Type: arrow.PrimitiveTypes.Int64},
	{Name: "repaired", Type: arrow.PrimitiveTypes.Int64},
	{Name: "expected", Type: arrow.PrimitiveTypes.Int64},
	{Name: "completeness", Type: arrow.PrimitiveTypes.Float64, Nullable: true},
}, nil)

// BarsHourly describes the derived dataset "bars_hourly": one row per
// symbol and UTC hour (New York hours start on the UTC hour too), laid out
// as bars_hourly/symbol=AAPL/month=2025-03/*.parquet. Its columns:
//
//	symbol        utf8       the key
//	hour          timestamp  the hour's start, UTC
//	open          float64?   price of the hour's first minute; null without points
//	high, low     float64?   highest and lowest minute price
//	close         float64?   price of the hour's last minute
//	points        int64      minutes with a row (expected or not, e.g. pre-market polls)
//	repaired      int64      of those, rows filled by repair
//	expected      int64      minutes the calendar expects in the hour
//	completeness  float64?   expected minutes held / expected; null when none is expected
//
// The bars are built from the minute price column alone (quote c for live
// rows, candle close for repaired ones), so live and repaired minutes weigh
// the same.
func BarsHourly() *heal.Dataset {
	return &heal.Dataset{
		Name:      "bars_hourly",
		Schema:    barsSchema,
		Key:       "symbol",
		Time:      "hour",
		Grain:     time.Hour,
		Partition: heal.PeriodMonth,
	}
}

// Bars is the [heal.Transformer] from [Quotes] to [BarsHourly].
type Bars struct {
	rule heal.CompletenessRule
	mem  memory.Allocator
	out  *heal.Dataset
}

// NewBars returns the transformer; rule gives each hour's expected minutes
// (use the engine's rule, e.g. audit.USEquities()). A nil mem means
// memory.DefaultAllocator.
func NewBars(rule heal.CompletenessRule, mem memory.Allocator) *Bars {
	if mem == nil {
		mem = memory.DefaultAllocator
	}
	return &Bars{rule: rule, mem: mem, out: BarsHourly()}
}

// Output implements [heal.Transformer].
func (b *Bars) Output() *heal.Dataset { return b.out }

// Affected implements [heal.Transformer]: the hours overlapping w.
func (b *Bars) Affected(w heal.Window) []heal.Window {
	if w.Empty() {
		return nil
	}
	var out []heal.Window
	for h := w.Start.UTC().Truncate(time.Hour); h.Before(w.End); h = h.Add(time.Hour) {
		out = append(out, heal.Window{Start: h, End: h.Add(time.Hour)})
	}
	return out
}

// hourBar is one hourly bar.
type hourBar struct {
	Open, High, Low, Close float64
	Points, Repaired       int
	Expected, Held         int // minutes expected; of those, minutes held
}

// compute builds the bar of key for the hour out from the hour's minutes
// (ordered by time, one row per minute: minutes, prices, origins in
// parallel).
func (b *Bars) compute(key string, out heal.Window, minutes []time.Time, prices []float64, origins []string) hourBar {
	var bar hourBar
	for i, p := range prices {
		if bar.Points == 0 {
			bar.Open, bar.High, bar.Low = p, p, p
		}
		bar.High, bar.Low, bar.Close = max(bar.High, p), min(bar.Low, p), p
		bar.Points++
		if origins[i] == OriginRepaired {
			bar.Repaired++
		}
	}
	for _, w := range b.rule.Expected(key, out, time.Minute) {
		bar.Expected += w.Slots(time.Minute)
		for _, m := range minutes {
			if w.Contains(m) {
				bar.Held++
			}
		}
	}
	return bar
}

// Derive implements [heal.Transformer]: the bar of key for the hour out,
// from in, the hour's minutes of key. An hour with neither points nor
// expected minutes yields no row.
func (b *Bars) Derive(_ context.Context, key string, out heal.Window, in arrow.Record) (arrow.Record, error) {
	s := in.Schema()
	idx := func(name string) (int, error) {
		if f := s.FieldIndices(name); len(f) == 1 {
			return f[0], nil
		}
		return 0, heal.Permanent(fmt.Errorf("finnhub: bars: input has no column %q", name))
	}
	mi, err := idx(ColMinute)
	if err != nil {
		return nil, err
	}
	pi, err := idx(ColPrice)
	if err != nil {
		return nil, err
	}
	oi, err := idx(ColOrigin)
	if err != nil {
		return nil, err
	}
	mcol, ok1 := in.Column(mi).(*array.Timestamp)
	pcol, ok2 := in.Column(pi).(*array.Float64)
	ocol, ok3 := in.Column(oi).(*array.String)
	if !ok1 || !ok2 || !ok3 {
		return nil, heal.Permanent(fmt.Errorf("finnhub: bars: input columns are not the quotes dataset's"))
	}
	unit := mcol.DataType().(*arrow.TimestampType).Unit
	var (
		minutes []time.Time
		prices  []float64
		origins []string
	)
	for i := 0; i < int(in.NumRows()); i++ {
		if mcol.IsNull(i) || pcol.IsNull(i) {
			continue
		}
		m := mcol.Value(i).ToTime(unit)
		if !out.Contains(m) {
			continue
		}
		minutes = append(minutes, m)
		prices = append(prices, pcol.Value(i))
		origins = append(origins, ocol.Value(i))
	}
	bar := b.compute(key, out, minutes, prices, origins)

	rb := array.NewRecordBuilder(b.mem, barsSchema)
	defer rb.Release()
	if bar.Points == 0 && bar.Expected == 0 {
		return rb.NewRecord(), nil
	}
	rb.Field(0).(*array.StringBuilder).Append(key)
	rb.Field(1).(*array.TimestampBuilder).Append(ms(out.Start))
	for i, v := range []float64{bar.Open, bar.High, bar.Low, bar.Close} {
		if bar.Points == 0 {
			rb.Field(2 + i).AppendNull()
		} else {
			rb.Field(2 + i).(*array.Float64Builder).Append(v)
		}
	}
	rb.Field(6).(*array.Int64Builder).Append(int64(bar.Points))
	rb.Field(7).(*array.Int64Builder).Append(int64(bar.Repaired))
	rb.Field(8).(*array.Int64Builder).Append(int64(bar.Expected))
	if bar.Expected == 0 {
		rb.Field(9).AppendNull()
	} else {
		rb.Field(9).(*array.Float64Builder).Append(float64(bar.Held) / float64(bar.Expected))
	}
	return rb.NewRecord(), nil
}
