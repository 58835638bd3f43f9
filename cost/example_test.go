package cost_test

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/selfheal/heal"
	"github.com/selfheal/heal/cost"
	"github.com/selfheal/heal/sink"
)

// A pipeline meters itself: the meter observes the engine, decorates the
// lake's store and the source's HTTP transport, and flushes a record into
// the lake every hour.
func ExampleMeter() {
	ctx := context.Background()
	m := cost.NewMeter("quotes", nil)
	store, _ := sink.NewDirStore("/var/lib/quotes")
	lake := sink.NewLake(m.Store(store), nil)
	httpClient := &http.Client{Transport: m.Transport(nil)} // give it to the Source's client
	_ = httpClient
	eng, _ := heal.New(ds, src, lake, &heal.Options{Keys: []string{"AAPL"}, Observer: m})
	go m.Run(ctx, lake, time.Hour) // one cost record per hour, under _heal/cost/quotes/
	_ = eng.Run(ctx)
}

var (
	ds  *heal.Dataset
	src heal.Source
)

func ExampleSummarize() {
	day := time.Date(2024, 3, 4, 0, 0, 0, 0, time.UTC)
	recs := []cost.Record{{
		Dataset: "quotes", Start: day, End: day.Add(24 * time.Hour), StoredBytes: 10 << 30,
		Events: cost.Events{Repaired: 100, Audits: 24},
		Stages: map[heal.Stage]*cost.Usage{
			heal.StageAcquire: {SourceCalls: 4290, Requests: map[cost.Request]int64{cost.Put: 4290}},
			heal.StageRepair:  {SourceCalls: 12, Requests: map[cost.Request]int64{cost.Put: 12}},
			heal.StageAudit:   {Requests: map[cost.Request]int64{cost.List: 24, cost.Get: 480}},
		},
	}}
	p := cost.DefaultPrices()
	if err := p.Set("source-month=50"); err != nil { // a paid market-data plan
		panic(err)
	}
	// The plan is $1.67 a day, shared 4290:12 by calls; 4,302 PUTs, 24
	// LISTs and 480 GETs; 10 GiB stored for a day.
	s := cost.Summarize(recs, p, 24*time.Hour)
	fmt.Println("pipeline:", cost.Dollars(s.Pipeline))
	fmt.Println("healing: ", cost.Dollars(s.Healing))
	fmt.Println("per repaired slot:", cost.Dollars(s.PerRepair))
	// Output:
	// pipeline: $1.69
	// healing:  $0.00502
	// per repaired slot: $0.0000502
}
