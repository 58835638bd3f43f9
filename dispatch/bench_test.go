package dispatch_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/selfheal/heal"
	"github.com/selfheal/heal/dispatch"
	"github.com/selfheal/heal/healtest"
	"github.com/selfheal/heal/internal/awstest"
	"github.com/selfheal/heal/sink"
)

// BenchmarkScaleOut measures how the repair throughput grows with the
// number of worker processes: each round seeds a fresh lake of 60 symbols
// x one day with holes on the S3 server, has an engine dispatch one repair
// job per symbol through SQS, and waits until every job is done. The
// source answers after 200ms, as a remote API would, so the jobs are
// bound by waiting, not by this machine's two cores. Reported: jobs/s
// (worker start-up and seeding are not timed).
func BenchmarkScaleOut(b *testing.B) {
	const latency = 200 * time.Millisecond
	keys := symbols(60)
	for _, n := range []int{1, 2, 3} {
		b.Run(fmt.Sprintf("workers=%d", n), func(b *testing.B) {
			ctx := context.Background()
			s3c, bucket := awstest.ExternalS3(b)
			c := awstest.SQS(b)
			queue := newQueue(b, c, "heal-bench")
			ds := healtest.QuotesDataset()
			var jobs int
			var busy time.Duration
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				// Each round heals a fresh day under its own prefix, with
				// workers started for it, so every round does the same work.
				prefix := fmt.Sprintf("round%d", i)
				lake := sink.NewLake(sink.NewS3Store(s3c, bucket, prefix, nil), nil)
				seed(b, lake, keys)
				f := startFleet(b, n, bucket, prefix, queue, func(int) time.Duration { return latency })
				rec := &recording{q: dispatch.NewQueue(c, queue)}
				e, err := heal.New(ds, &slowSource{}, lake, &heal.Options{Keys: keys, Dispatcher: rec})
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				start := time.Now()
				if _, err := e.Heal(ctx, dayWindow); err != nil {
					b.Fatal(err)
				}
				f.wait(10*time.Minute, "every job done", func(evs []event) bool { return count(evs, "job done", -1) >= len(rec.ids) })
				busy += time.Since(start)
				jobs += len(rec.ids)
				b.StopTimer()
				f.stop()
			}
			b.ReportMetric(float64(jobs)/busy.Seconds(), "jobs/s")
			b.ReportMetric(0, "ns/op")
		})
	}
}
