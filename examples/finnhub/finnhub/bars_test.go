package finnhub_test

import (
	"context"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/memory"

	"github.com/selfheal/heal"
	"github.com/selfheal/heal/audit"
	"github.com/selfheal/heal/examples/finnhub/finnhub"
)

type minuteRow struct {
	t      time.Time
	price  float64
	origin string
}

// quotesRecord builds a quotes record holding rows (only the columns bars
// read are filled; the others are null or zero).
func quotesRecord(mem memory.Allocator, sym string, rows []minuteRow) arrow.Record {
	b := array.NewRecordBuilder(mem, finnhub.Quotes().Schema)
	defer b.Release()
	for _, r := range rows {
		for i, f := range b.Schema().Fields() {
			switch f.Name {
			case finnhub.ColSymbol:
				b.Field(i).(*array.StringBuilder).Append(sym)
			case finnhub.ColMinute, finnhub.ColQuoteTime, finnhub.ColFetchedAt:
				b.Field(i).(*array.TimestampBuilder).Append(arrow.Timestamp(r.t.UnixMilli()))
			case finnhub.ColPrice:
				b.Field(i).(*array.Float64Builder).Append(r.price)
			case finnhub.ColOrigin:
				b.Field(i).(*array.StringBuilder).Append(r.origin)
			default:
				b.Field(i).AppendNull()
			}
		}
	}
	return b.NewRecord()
}

// recompute is the bar computed the plain way.
func recompute(rows []minuteRow, expected []heal.Window) (open, high, low, close float64, points, repaired, exp, held int) {
	high, low = math.Inf(-1), math.Inf(1)
	for i, r := range rows {
		if i == 0 {
			open = r.price
		}
		close = r.price
		high = math.Max(high, r.price)
		low = math.Min(low, r.price)
		points++
		if r.origin == finnhub.OriginRepaired {
			repaired++
		}
	}
	for _, w := range expected {
		for t := w.Start; t.Before(w.End); t = t.Add(time.Minute) {
			exp++
			for _, r := range rows {
				if r.t.Equal(t) {
					held++
				}
			}
		}
	}
	return
}

func TestBarsDerive(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	us := audit.USEquities()
	bars := finnhub.NewBars(us, mem)
	rng := rand.New(rand.NewPCG(1, 2))
	hours := []time.Time{
		time.Date(2025, 3, 4, 14, 0, 0, 0, time.UTC), // 09:00 ET: 30 expected, pre-market rows too
		time.Date(2025, 3, 4, 15, 0, 0, 0, time.UTC), // 10:00 ET
		time.Date(2025, 3, 4, 20, 0, 0, 0, time.UTC), // 15:00 ET
		time.Date(2025, 3, 4, 21, 0, 0, 0, time.UTC), // 16:00 ET: nothing expected
		time.Date(2025, 3, 8, 15, 0, 0, 0, time.UTC), // Saturday
	}
	for _, h := range hours {
		for _, density := range []float64{0, 0.3, 0.9, 1} {
			out := heal.NewWindow(h, h.Add(time.Hour))
			var rows []minuteRow
			for m := 0; m < 60; m++ {
				if rng.Float64() < density {
					o := finnhub.OriginLive
					if rng.IntN(8) == 0 {
						o = finnhub.OriginRepaired
					}
					rows = append(rows, minuteRow{h.Add(time.Duration(m) * time.Minute), 100 + rng.NormFloat64(), o})
				}
			}
			in := quotesRecord(mem, "AAPL", rows)
			rec, err := bars.Derive(context.Background(), "AAPL", out, in)
			in.Release()
			if err != nil {
				t.Fatal(err)
			}
			o, hi, lo, c, pts, rep, exp, held := recompute(rows, us.Expected("AAPL", out, time.Minute))
			if pts == 0 && exp == 0 {
				if rec.NumRows() != 0 {
					t.Errorf("%s density %v: %d rows, want none", h, density, rec.NumRows())
				}
				rec.Release()
				continue
			}
			if err := bars.Output().Check(rec); err != nil || rec.NumRows() != 1 {
				t.Fatalf("%s: %v, %d rows", h, err, rec.NumRows())
			}
			f := func(name string) arrow.Array { return rec.Column(rec.Schema().FieldIndices(name)[0]) }
			i64 := func(name string) int { return int(f(name).(*array.Int64).Value(0)) }
			if i64("points") != pts || i64("repaired") != rep || i64("expected") != exp {
				t.Errorf("%s density %v: points %d repaired %d expected %d, want %d %d %d", h, density,
					i64("points"), i64("repaired"), i64("expected"), pts, rep, exp)
			}
			if pts > 0 {
				for name, want := range map[string]float64{"open": o, "high": hi, "low": lo, "close": c} {
					if got := f(name).(*array.Float64).Value(0); got != want {
						t.Errorf("%s density %v: %s %v, want %v", h, density, name, got, want)
					}
				}
			} else if !f("open").IsNull(0) {
				t.Errorf("%s: open not null without points", h)
			}
			if exp == 0 {
				if !f("completeness").IsNull(0) {
					t.Errorf("%s: completeness not null with nothing expected", h)
				}
			} else if got := f("completeness").(*array.Float64).Value(0); got != float64(held)/float64(exp) {
				t.Errorf("%s density %v: completeness %v, want %d/%d", h, density, got, held, exp)
			}
			rec.Release()
		}
	}
}

func TestBarsAffected(t *testing.T) {
	b := finnhub.NewBars(audit.Continuous(), nil)
	h := time.Date(2025, 3, 4, 14, 0, 0, 0, time.UTC)
	tests := []struct {
		w    heal.Window
		want int
	}{
		{heal.NewWindow(h.Add(30*time.Minute), h.Add(31*time.Minute)), 1},
		{heal.NewWindow(h, h.Add(time.Hour)), 1},
		{heal.NewWindow(h.Add(59*time.Minute), h.Add(61*time.Minute)), 2},
		{heal.NewWindow(h.Add(-time.Minute), h.Add(3*time.Hour)), 4},
		{heal.Window{}, 0},
	}
	for _, tc := range tests {
		got := b.Affected(tc.w)
		if len(got) != tc.want {
			t.Errorf("Affected(%s) = %v, want %d hours", tc.w, got, tc.want)
		}
		for _, w := range got {
			if !w.Overlaps(tc.w) || w.Duration() != time.Hour || !w.Start.Equal(w.Start.Truncate(time.Hour)) {
				t.Errorf("Affected(%s) holds %s", tc.w, w)
			}
		}
	}
	if err := b.Output().Validate(); err != nil {
		t.Error(err)
	}
	if err := finnhub.Quotes().Validate(); err != nil {
		t.Error(err)
	}
}
