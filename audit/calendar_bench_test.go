package audit_test

import (
	"testing"
	"time"

	"github.com/selfheal/heal"
	"github.com/selfheal/heal/audit"
)

// BenchmarkUSEquitiesExpected evaluates the US equities calendar the way
// an audit does, once per key: a day (an hourly audit's lookback) and a
// quarter (a whole-lake audit) of minutes.
func BenchmarkUSEquitiesExpected(b *testing.B) {
	rule := audit.USEquities()
	start := time.Date(2024, 1, 2, 0, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		name string
		w    heal.Window
	}{
		{"Day", heal.Window{Start: start, End: start.AddDate(0, 0, 1)}},
		{"Quarter", heal.Window{Start: start, End: start.AddDate(0, 3, 0)}},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if len(rule.Expected("AAPL", c.w, time.Minute)) == 0 {
					b.Fatal("no sessions")
				}
			}
		})
	}
}
