package heal_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/memory"

	"github.com/selfheal/heal"
	"github.com/selfheal/heal/healtest"
	"github.com/selfheal/heal/sink"
)

// meters is a user's own Source: one reading per meter per minute, served
// by some API with a live endpoint and a history endpoint. Minute 14:07 of
// meter "m2" never had a reading.
type meters struct{ ds *heal.Dataset }

func (m meters) Limits() heal.Limits {
	return heal.Limits{MaxWindow: 24 * time.Hour, Rates: []heal.Rate{{Calls: 60, Per: time.Minute}}}
}

func (m meters) Fetch(ctx context.Context, req heal.Request) (arrow.Record, error) {
	b := array.NewRecordBuilder(memory.DefaultAllocator, m.ds.Schema)
	defer b.Release()
	for _, k := range req.Keys {
		for t := req.Window.Start; t.Before(req.Window.End); t = t.Add(time.Minute) {
			if k == "m2" && t.Minute() == 7 {
				continue // no reading: the history says so, and heal will not ask again
			}
			b.Field(0).(*array.StringBuilder).Append(k)
			b.Field(1).(*array.TimestampBuilder).Append(arrow.Timestamp(t.Unix()))
			b.Field(2).(*array.Float64Builder).Append(float64(t.Minute()))
		}
	}
	return b.NewRecord(), nil
}

// Example wires a user's own Source into an Engine over an in-memory lake,
// lands a live hour with holes, and heals it in one pass.
func Example() {
	ctx := context.Background()
	ds := &heal.Dataset{
		Name: "readings",
		Schema: arrow.NewSchema([]arrow.Field{
			{Name: "meter", Type: arrow.BinaryTypes.String},
			{Name: "at", Type: &arrow.TimestampType{Unit: arrow.Second, TimeZone: "UTC"}},
			{Name: "kwh", Type: arrow.PrimitiveTypes.Float64},
		}, nil),
		Key: "meter", Time: "at", Grain: time.Minute,
	}
	src := meters{ds}
	lake := sink.NewMemLake(nil)
	hour := heal.Window{Start: time.Date(2024, 5, 6, 14, 0, 0, 0, time.UTC), End: time.Date(2024, 5, 6, 15, 0, 0, 0, time.UTC)}
	clock := healtest.NewManualClock(hour.End.Add(time.Minute))
	eng, err := heal.New(ds, src, lake, &heal.Options{Keys: []string{"m1", "m2"}, Clock: clock})
	if err != nil {
		fmt.Println(err)
		return
	}

	// Some live polls were lost: land only every third minute.
	for t := hour.Start; t.Before(hour.End); t = t.Add(3 * time.Minute) {
		if _, err := eng.Acquire(ctx, t); err != nil {
			fmt.Println(err)
			return
		}
	}

	rep, err := eng.Heal(ctx, hour)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("missing %d, requests %d, repaired %d, confirmed empty %d\n", rep.Missing, rep.Requests, rep.Repaired, rep.Empty)
	audit, _ := eng.Audit(ctx, hour)
	for _, k := range audit.Keys {
		fmt.Printf("%s: %.0f%% complete\n", k.Key, 100*k.Completeness())
	}
	// Output:
	// missing 80, requests 2, repaired 79, confirmed empty 1
	// m1: 100% complete
	// m2: 100% complete
}

// ExamplePermanent shows how a Source classifies errors: the engine retries
// ordinary errors with backoff, stops at once on a permanent one, and waits
// at least as long as a RetryAfter asks.
func ExamplePermanent() {
	classify := func(status int) error {
		err := fmt.Errorf("upstream answered %d", status)
		switch {
		case status == 401 || status == 403:
			return heal.Permanent(err)
		case status == 429:
			return heal.RetryAfter(30*time.Second, err)
		default:
			return err
		}
	}
	for _, s := range []int{403, 429, 503} {
		err := classify(s)
		var ra *heal.RetryAfterError
		fmt.Println(s, "permanent:", heal.IsPermanent(err), "wait:", errors.As(err, &ra) && ra.Wait > 0)
	}
	// Output:
	// 403 permanent: true wait: false
	// 429 permanent: false wait: true
	// 503 permanent: false wait: false
}

// ExampleCompletenessRuleFunc is a rule written as a closure: a sensor that
// reports every minute, but only from 08:00 to 18:00 UTC.
func ExampleCompletenessRuleFunc() {
	office := heal.CompletenessRuleFunc(func(key string, w heal.Window, grain time.Duration) []heal.Window {
		var out []heal.Window
		for d := w.Start.Truncate(24 * time.Hour); d.Before(w.End); d = d.Add(24 * time.Hour) {
			open := heal.Window{Start: d.Add(8 * time.Hour), End: d.Add(18 * time.Hour)}.Intersect(w)
			if !open.Empty() {
				out = append(out, open)
			}
		}
		return out
	})
	day := heal.Window{Start: time.Date(2024, 5, 6, 0, 0, 0, 0, time.UTC), End: time.Date(2024, 5, 7, 0, 0, 0, 0, time.UTC)}
	for _, w := range office.Expected("sensor-1", day, time.Minute) {
		fmt.Println(w, w.Slots(time.Minute), "slots")
	}
	// Output:
	// 2024-05-06T08:00:00Z/2024-05-06T18:00:00Z 600 slots
}
