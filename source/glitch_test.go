package source_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/memory"

	"github.com/selfheal/heal"
	"github.com/selfheal/heal/source"
)

var ds = &heal.Dataset{
	Name: "ticks",
	Schema: arrow.NewSchema([]arrow.Field{
		{Name: "key", Type: arrow.BinaryTypes.String},
		{Name: "t", Type: &arrow.TimestampType{Unit: arrow.Millisecond, TimeZone: "UTC"}},
		{Name: "v", Type: arrow.PrimitiveTypes.Float64},
	}, nil),
	Key: "key", Time: "t", Grain: time.Minute,
}

// counting answers one row per key and records the calls it got.
type counting struct {
	mu    sync.Mutex
	calls []heal.Request
}

func (c *counting) Fetch(_ context.Context, req heal.Request) (arrow.Record, error) {
	c.mu.Lock()
	c.calls = append(c.calls, req)
	c.mu.Unlock()
	b := array.NewRecordBuilder(memory.DefaultAllocator, ds.Schema)
	defer b.Release()
	for _, k := range req.Keys {
		b.Field(0).(*array.StringBuilder).Append(k)
		b.Field(1).(*array.TimestampBuilder).Append(arrow.Timestamp(req.Window.Start.UnixMilli()))
		b.Field(2).(*array.Float64Builder).Append(1)
	}
	return b.NewRecord(), nil
}

func (c *counting) Limits() heal.Limits { return heal.Limits{MaxKeys: 3} }

var keys = []string{"A", "B", "C", "D", "E", "F", "G", "H", "I", "J", "K"}

func slot(i int) time.Time {
	return time.Date(2025, 3, 4, 14, 30, 0, 0, time.UTC).Add(time.Duration(i) * time.Minute)
}

func TestGlitchDeterministic(t *testing.T) {
	a := source.Glitch(&counting{}, ds, keys, 1, 42)
	b := source.Glitch(&counting{}, ds, keys, 1, 42)
	other := source.Glitch(&counting{}, ds, keys, 1, 43)
	perKey := map[string]int{}
	differs := 0
	for i := 0; i < 390; i++ {
		da, db := a.Dropped(slot(i)), b.Dropped(slot(i).Add(17*time.Second)) // any instant of the slot
		if fmt.Sprint(da) != fmt.Sprint(db) || len(da) != 1 {
			t.Fatalf("slot %d: %v vs %v", i, da, db)
		}
		perKey[da[0]]++
		if fmt.Sprint(other.Dropped(slot(i))) != fmt.Sprint(da) {
			differs++
		}
	}
	// Every key is dropped sometimes, none far more than its share (390/11 ≈ 35).
	for _, k := range keys {
		if n := perKey[k]; n < 15 || n > 60 {
			t.Errorf("key %s dropped %d times of 390", k, n)
		}
	}
	if differs < 300 {
		t.Errorf("another seed drops the same key in %d of 390 slots", 390-differs)
	}
	if got := source.Glitch(&counting{}, ds, keys, 3, 1).Dropped(slot(0)); len(got) != 3 {
		t.Errorf("drop 3: %v", got)
	}
	if got := source.Glitch(&counting{}, ds, keys, 0, 1).Dropped(slot(0)); got != nil {
		t.Errorf("drop 0: %v", got)
	}
	if got := source.Glitch(&counting{}, ds, keys, 20, 1).Dropped(slot(0)); len(got) != len(keys) {
		t.Errorf("drop 20: %v", got)
	}
}

func TestGlitchFetch(t *testing.T) {
	ctx := context.Background()
	src := &counting{}
	g := source.Glitch(src, ds, keys, 2, 7)
	s := slot(5)
	w := heal.NewWindow(s, s.Add(time.Minute))
	dropped := g.Dropped(s)
	live := 0
	for _, k := range keys {
		rec, err := g.Fetch(ctx, heal.Request{Keys: []string{k}, Window: w, Live: true})
		if err != nil {
			t.Fatal(err)
		}
		if err := ds.CheckSchema(rec.Schema()); err != nil {
			t.Fatal(err)
		}
		isDropped := k == dropped[0] || k == dropped[1]
		if isDropped != (rec.NumRows() == 0) {
			t.Errorf("key %s: %d rows, dropped %v", k, rec.NumRows(), isDropped)
		}
		if !isDropped {
			live++
		}
		rec.Release()
	}
	if len(src.calls) != live || live != len(keys)-2 {
		t.Errorf("%d calls reached the source, want %d", len(src.calls), len(keys)-2)
	}
	// A multi-key live request keeps the others.
	rec, err := g.Fetch(ctx, heal.Request{Keys: []string{dropped[0], "zz", dropped[1]}, Window: w, Live: true})
	if err != nil {
		t.Fatal(err)
	}
	if rec.NumRows() != 1 || fmt.Sprint(src.calls[len(src.calls)-1].Keys) != "[zz]" {
		t.Errorf("multi-key: %d rows, last call %v", rec.NumRows(), src.calls[len(src.calls)-1])
	}
	rec.Release()
	// Historical requests pass through.
	n := len(src.calls)
	rec, err = g.Fetch(ctx, heal.Request{Keys: []string{dropped[0]}, Window: heal.NewWindow(s, s.Add(time.Hour))})
	if err != nil || rec.NumRows() != 1 || len(src.calls) != n+1 {
		t.Errorf("historical: err %v, %d rows, %d calls", err, rec.NumRows(), len(src.calls)-n)
	}
	rec.Release()
	if g.Limits().MaxKeys != 3 || g.Unwrap() != heal.Source(src) {
		t.Error("limits or unwrap")
	}
}
