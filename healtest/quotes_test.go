package healtest_test

import (
	"slices"
	"testing"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/memory"
	"github.com/selfheal/heal/healtest"
)

func TestRecordsRoundTrip(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	ds := healtest.QuotesDataset()
	if err := ds.Validate(); err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2024, 1, 2, 14, 30, 0, 0, time.UTC)
	rows := []healtest.Row{{Key: "A", Time: t0, Price: 1.5}, {Key: "B", Time: t0.Add(time.Minute), Price: -2}, {Key: "C", Price: 3}}
	rec := healtest.Records(mem, ds, rows...)
	defer rec.Release()
	if err := ds.CheckSchema(rec.Schema()); err != nil {
		t.Fatal(err)
	}
	if rec.Column(ds.TimeIndex()).NullN() != 1 {
		t.Fatal("the zero Time should be a null time")
	}
	if got := healtest.RowsOf(ds, rec); !slices.Equal(got, rows) {
		t.Fatalf("RowsOf(Records(rows)) = %v", got)
	}

	// Another shape: seconds, other names, an extra column left null.
	secs := healtest.QuotesDataset()
	secs.Schema = arrow.NewSchema([]arrow.Field{
		{Name: "id", Type: arrow.BinaryTypes.String},
		{Name: "at", Type: &arrow.TimestampType{Unit: arrow.Second, TimeZone: "UTC"}},
		{Name: "note", Type: arrow.BinaryTypes.String, Nullable: true},
		{Name: "close", Type: arrow.PrimitiveTypes.Float64},
	}, nil)
	secs.Key, secs.Time = "id", "at"
	rec2 := healtest.Records(mem, secs, rows[:2]...)
	defer rec2.Release()
	if got := healtest.RowsOf(secs, rec2); !slices.Equal(got, rows[:2]) || rec2.Column(2).NullN() != 2 {
		t.Fatalf("RowsOf on another shape = %v", got)
	}
}
