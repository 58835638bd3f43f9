package heal_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/apache/arrow/go/v17/arrow/memory"

	"github.com/selfheal/heal"
	"github.com/selfheal/heal/audit"
	"github.com/selfheal/heal/healtest"
	"github.com/selfheal/heal/sink"
)

// BenchmarkAudit runs Engine.Audit over 50 symbols x 10 trading days of
// minute bars missing one minute in eleven, on a lake in memory answering
// from its index: the rule, the inventory and the range algebra of the
// audit, without I/O.
func BenchmarkAudit(b *testing.B) {
	ctx := context.Background()
	mem := memory.NewGoAllocator()
	ds := healtest.QuotesDataset()
	lake := sink.NewMemLake(nil)
	rule := audit.USEquities()
	var keys []string
	for k := 0; k < 50; k++ {
		keys = append(keys, fmt.Sprintf("S%02d", k))
	}
	start := time.Date(2024, 1, 2, 0, 0, 0, 0, time.UTC)
	w := heal.Window{Start: start, End: start.AddDate(0, 0, 14)}
	missing := 0
	for d := start; d.Before(w.End); d = d.AddDate(0, 0, 1) {
		var rows []healtest.Row
		for ki, k := range keys {
			for _, s := range rule.Expected(k, heal.Window{Start: d, End: d.AddDate(0, 0, 1)}, time.Minute) {
				for t := s.Start; t.Before(s.End); t = t.Add(time.Minute) {
					if (t.Unix()/60+int64(ki)*7)%11 == 0 {
						missing++
						continue
					}
					rows = append(rows, healtest.Row{Key: k, Time: t, Price: 1})
				}
			}
		}
		if len(rows) == 0 {
			continue
		}
		rec := healtest.Records(mem, ds, rows...)
		if err := lake.Write(ctx, ds, rec); err != nil {
			b.Fatal(err)
		}
		rec.Release()
	}
	eng, err := heal.New(ds, nil, lake, &heal.Options{Keys: keys, Rule: rule})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		rep, err := eng.Audit(ctx, w)
		if err != nil {
			b.Fatal(err)
		}
		n := 0
		for _, k := range rep.Keys {
			n += k.Missing
		}
		if n != missing {
			b.Fatalf("audit found %d missing slots, want %d", n, missing)
		}
	}
	b.ReportMetric(float64(missing), "gaps")
}
