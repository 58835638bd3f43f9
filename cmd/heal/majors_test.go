package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/memory"

	"github.com/selfheal/heal"
	"github.com/selfheal/heal/evolve"
	"github.com/selfheal/heal/healtest"
	"github.com/selfheal/heal/sink"
)

// noHistory is a Source with nothing to give: every request is answered
// with heal.ErrNoData.
type noHistory struct{}

func (noHistory) Limits() heal.Limits { return heal.Limits{MaxWindow: time.Hour} }
func (noHistory) Fetch(context.Context, heal.Request) (arrow.Record, error) {
	return nil, heal.ErrNoData
}

// TestMajorsAuditedAsOne builds a lake whose first hour is held by a v1
// major (quotes) and whose second by a breaking v2 (quotes_v2, price
// renamed last), healed by a v2 engine over evolve's lake, one slot
// missing in each hour. The command, which knows nothing of the pipeline,
// must audit the majors as one, from the descriptors: quotes_v2 misses
// only those two slots, not the hour v1 holds.
func TestMajorsAuditedAsOne(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	lake, err := sink.OpenDir(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	mk := func(name string, version int, col string) *heal.Dataset {
		return &heal.Dataset{Name: name, Version: version, Key: "symbol", Time: "ts", Grain: time.Minute,
			Schema: arrow.NewSchema([]arrow.Field{{Name: "symbol", Type: arrow.BinaryTypes.String},
				{Name: "ts", Type: &arrow.TimestampType{Unit: arrow.Millisecond, TimeZone: "UTC"}},
				{Name: col, Type: arrow.PrimitiveTypes.Float64}}, nil)}
	}
	v1, v2 := mk("quotes", 1, "price"), mk("quotes_v2", 2, "last")
	start := time.Date(2024, 3, 4, 14, 0, 0, 0, time.UTC)
	write := func(ds *heal.Dataset, from, to, hole int) {
		b := array.NewRecordBuilder(memory.DefaultAllocator, ds.Schema)
		defer b.Release()
		for m := from; m < to; m++ {
			if m == hole {
				continue
			}
			b.Field(0).(*array.StringBuilder).Append("AAPL")
			b.Field(1).(*array.TimestampBuilder).Append(arrow.Timestamp(start.Add(time.Duration(m) * time.Minute).UnixMilli()))
			b.Field(2).(*array.Float64Builder).Append(float64(m))
		}
		rec := b.NewRecord()
		defer rec.Release()
		if err := lake.Write(ctx, ds, rec); err != nil {
			t.Fatal(err)
		}
	}
	write(v1, 0, 60, 10)
	write(v2, 60, 120, 70)
	vs, err := evolve.New(v1, v2)
	if err != nil {
		t.Fatal(err)
	}
	w := heal.Window{Start: start, End: start.Add(2 * time.Hour)}
	clock := healtest.NewManualClock(w.End.Add(time.Hour))
	for _, ds := range []*heal.Dataset{v1, v2} { // each major's engine records its descriptor
		e, err := heal.New(ds, noHistory{}, vs.Lake(lake), &heal.Options{Keys: []string{"AAPL"}, Clock: clock, ReprobeAfter: -1})
		if err != nil {
			t.Fatal(err)
		}
		rep, err := e.Heal(ctx, w)
		if err != nil {
			t.Fatal(err)
		}
		if rep.Missing != 2 {
			t.Fatalf("the %s engine found %d slots missing; want 2, one per hour", ds.Name, rep.Missing)
		}
	}

	from, to := w.Start.Format(time.RFC3339), w.End.Format(time.RFC3339)
	for _, name := range []string{"quotes", "quotes_v2"} {
		code, out, errs := runHeal(t, "audit", "-lake", dir, "-dataset", name, "-from", from, "-to", to)
		if code != exitOK {
			t.Fatalf("audit %s: exit %d\n%s%s", name, code, out, errs)
		}
		if !strings.Contains(out, "audited with its schema majors quotes, quotes_v2") {
			t.Errorf("audit %s does not say it audits the majors as one:\n%s", name, out)
		}
		if strings.Contains(out, "gaps:") {
			t.Errorf("audit %s reports gaps; the two holes were confirmed empty and the rest is held by one major or the other:\n%s", name, out)
		}
		code, out, errs = runHeal(t, "status", "-lake", dir, "-dataset", name, "-from", from, "-to", to, "-json")
		if code != exitOK {
			t.Fatalf("status %s: exit %d\n%s%s", name, code, out, errs)
		}
		var st statusJSON
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			t.Fatal(err)
		}
		all := st.Datasets[0].All
		if got := fmt.Sprint(st.Datasets[0].Majors); got != "[quotes quotes_v2]" {
			t.Errorf("status %s: majors %s", name, got)
		}
		if all.Expected != 120 || all.Missing != 0 || all.Empty != 2 {
			t.Errorf("status %s: expected %d, missing %d, empty %d; want 120, 0, 2", name, all.Expected, all.Missing, all.Empty)
		}
	}
}
