package finnhub_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/memory"

	"github.com/selfheal/heal"
	"github.com/selfheal/heal/examples/finnhub/finnhub"
	"github.com/selfheal/heal/examples/finnhub/finnhubtest"
)

func newSource(t *testing.T, token string, clk heal.Clock) (*finnhub.Source, *finnhubtest.Server, *memory.CheckedAllocator) {
	t.Helper()
	srv := finnhubtest.NewServer(&finnhubtest.Options{Clock: clk, Seed: 3})
	t.Cleanup(srv.Close)
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	t.Cleanup(func() { mem.AssertSize(t, 0) })
	c := newClient(t, srv.URL, token, clk, nil)
	return finnhub.NewSource(c, &finnhub.SourceOptions{Allocator: mem}), srv, mem
}

func col[T any](rec arrow.Record, name string) T {
	return rec.Column(rec.Schema().FieldIndices(name)[0]).(any).(T)
}

func TestSourceLive(t *testing.T) {
	clk := &clock{t: tuesday}
	src, srv, _ := newSource(t, finnhubtest.Token, clk)
	slot := tuesday.Truncate(time.Minute)
	rec, err := src.Fetch(context.Background(), heal.Request{Keys: []string{"NVDA"}, Window: heal.NewWindow(slot, slot.Add(time.Minute)), Live: true})
	if err != nil {
		t.Fatal(err)
	}
	defer rec.Release()
	if err := src.Dataset().Check(rec); err != nil {
		t.Fatal(err)
	}
	if rec.NumRows() != 1 {
		t.Fatalf("%d rows", rec.NumRows())
	}
	q, _ := srv.Market.QuoteAt("NVDA", tuesday)
	minute := col[*array.Timestamp](rec, finnhub.ColMinute).Value(0).ToTime(arrow.Millisecond)
	qt := col[*array.Timestamp](rec, finnhub.ColQuoteTime).Value(0).ToTime(arrow.Millisecond)
	if !minute.Equal(slot) {
		t.Errorf("minute %s, want the polled slot %s", minute, slot)
	}
	if !qt.Equal(q.T) || !qt.Before(tuesday) {
		t.Errorf("quote_time %s, want the quote's t %s", qt, q.T)
	}
	if p := col[*array.Float64](rec, finnhub.ColPrice).Value(0); p != q.C {
		t.Errorf("price %v, want %v", p, q.C)
	}
	if o := col[*array.String](rec, finnhub.ColOrigin).Value(0); o != finnhub.OriginLive {
		t.Errorf("origin %q", o)
	}
	for _, c := range []string{finnhub.ColOpen, finnhub.ColHigh, finnhub.ColLow, finnhub.ColVolume} {
		if !rec.Column(rec.Schema().FieldIndices(c)[0]).IsNull(0) {
			t.Errorf("%s is not null for a live row", c)
		}
	}
	if v := col[*array.Float64](rec, finnhub.ColPrevClose).Value(0); v != q.PC {
		t.Errorf("prev_close %v, want %v", v, q.PC)
	}
	if v := col[*array.Float64](rec, finnhub.ColChangePct).Value(0); v != q.DP {
		t.Errorf("change_pct %v, want %v", v, q.DP)
	}
	if at := col[*array.Timestamp](rec, finnhub.ColFetchedAt).Value(0).ToTime(arrow.Millisecond); !at.Equal(tuesday) {
		t.Errorf("fetched_at %s", at)
	}
}

func TestSourceRepair(t *testing.T) {
	clk := &clock{t: tuesday}
	src, srv, _ := newSource(t, finnhubtest.Token, clk)
	// 09:31–10:45 New York time, the morning of the same day.
	w := heal.NewWindow(time.Date(2025, 3, 4, 14, 31, 0, 0, time.UTC), time.Date(2025, 3, 4, 15, 45, 0, 0, time.UTC))
	rec, err := src.Fetch(context.Background(), heal.Request{Keys: []string{"AAPL"}, Window: w})
	if err != nil {
		t.Fatal(err)
	}
	defer rec.Release()
	if err := src.Dataset().Check(rec); err != nil {
		t.Fatal(err)
	}
	want := srv.Market.Bars("AAPL", w.Start, w.End)
	if int(rec.NumRows()) != len(want) || len(want) < 60 || len(want) == 74 {
		t.Fatalf("%d rows, want %d bars (some minutes without trades)", rec.NumRows(), len(want))
	}
	minutes := col[*array.Timestamp](rec, finnhub.ColMinute)
	closes := col[*array.Float64](rec, finnhub.ColPrice)
	vols := col[*array.Int64](rec, finnhub.ColVolume)
	origin := col[*array.String](rec, finnhub.ColOrigin)
	for i, b := range want {
		if m := minutes.Value(i).ToTime(arrow.Millisecond); !m.Equal(b.T) || closes.Value(i) != b.C || vols.Value(i) != b.V || origin.Value(i) != finnhub.OriginRepaired {
			t.Fatalf("row %d: %s %v %v %q, want %+v", i, m, closes.Value(i), vols.Value(i), origin.Value(i), b)
		}
	}
	if !rec.Column(rec.Schema().FieldIndices(finnhub.ColDayOpen)[0]).IsNull(0) {
		t.Error("day_open is not null for a repaired row")
	}
	if n := srv.Counters().Calls["/stock/candle"]; n != 1 {
		t.Errorf("%d candle calls, want 1", n)
	}
}

func TestSourceErrors(t *testing.T) {
	clk := &clock{t: tuesday}
	night := heal.NewWindow(time.Date(2025, 3, 4, 3, 0, 0, 0, time.UTC), time.Date(2025, 3, 4, 4, 0, 0, 0, time.UTC)) // 22:00–23:00 ET
	t.Run("night has no data", func(t *testing.T) {
		src, _, _ := newSource(t, finnhubtest.Token, clk)
		rec, err := src.Fetch(context.Background(), heal.Request{Keys: []string{"AAPL"}, Window: night})
		if !errors.Is(err, heal.ErrNoData) || rec != nil {
			t.Fatalf("err = %v, want ErrNoData and no record", err)
		}
	})
	t.Run("free plan repair is permanent", func(t *testing.T) {
		src, _, _ := newSource(t, finnhubtest.FreeToken, clk)
		_, err := src.Fetch(context.Background(), heal.Request{Keys: []string{"AAPL"}, Window: night})
		if !heal.IsPermanent(err) || !errors.Is(err, finnhub.ErrForbidden) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("two keys", func(t *testing.T) {
		src, _, _ := newSource(t, finnhubtest.Token, clk)
		_, err := src.Fetch(context.Background(), heal.Request{Keys: []string{"AAPL", "MSFT"}, Window: night})
		if !heal.IsPermanent(err) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("malformed stores nothing", func(t *testing.T) {
		src, srv, _ := newSource(t, finnhubtest.Token, clk)
		srv.SetFaults(finnhubtest.Faults{Unequal: 1})
		rec, err := src.Fetch(context.Background(), heal.Request{Keys: []string{"AAPL"}, Window: heal.NewWindow(tuesday.Add(-time.Hour).Truncate(time.Minute), tuesday.Truncate(time.Minute))})
		if !errors.Is(err, finnhub.ErrMalformed) || rec != nil {
			t.Fatalf("err = %v, rec = %v", err, rec)
		}
	})
	if l := finnhub.DefaultLimits(); l.MaxKeys != 1 || l.MaxWindow != 30*24*time.Hour || len(l.Rates) != 2 {
		t.Errorf("limits %+v", l)
	}
}
