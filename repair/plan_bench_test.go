package repair_test

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/selfheal/heal"
	"github.com/selfheal/heal/repair"
)

// BenchmarkPlan plans the repair of a trading day of 500 symbols missing
// one minute in eleven (the glitch), under a source taking one symbol and
// one day per call, and a source taking ten symbols an hour at a time.
func BenchmarkPlan(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	open := time.Date(2024, 3, 4, 14, 30, 0, 0, time.UTC)
	gaps := map[string][]heal.Window{}
	n := 0
	for s := 0; s < 500; s++ {
		key := fmt.Sprintf("S%04d", s)
		for m := 0; m < 390; m++ {
			if rng.IntN(11) == 0 {
				t := open.Add(time.Duration(m) * time.Minute)
				gaps[key] = append(gaps[key], heal.Window{Start: t, End: t.Add(time.Minute)})
				n++
			}
		}
	}
	for _, lim := range []heal.Limits{{MaxWindow: 24 * time.Hour, MaxKeys: 1}, {MaxWindow: time.Hour, MaxKeys: 10}} {
		b.Run(fmt.Sprintf("window=%s/keys=%d", lim.MaxWindow, lim.MaxKeys), func(b *testing.B) {
			b.ReportAllocs()
			var reqs int
			for b.Loop() {
				reqs = len(repair.Plan(gaps, time.Minute, lim))
			}
			b.ReportMetric(float64(n), "gaps")
			b.ReportMetric(float64(reqs), "requests")
		})
	}
}
