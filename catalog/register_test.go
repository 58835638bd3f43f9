package catalog_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/memory"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/glue"

	"github.com/selfheal/heal"
	"github.com/selfheal/heal/catalog"
	"github.com/selfheal/heal/healtest"
	"github.com/selfheal/heal/internal/awstest"
	"github.com/selfheal/heal/sink"
)

// quoteSource has a row for every key and minute.
type quoteSource struct{ ds *heal.Dataset }

func (s quoteSource) Limits() heal.Limits { return heal.Limits{MaxWindow: 24 * time.Hour} }

func (s quoteSource) Fetch(_ context.Context, req heal.Request) (arrow.Record, error) {
	var rows []healtest.Row
	for _, k := range req.Keys {
		for t := req.Window.Start; t.Before(req.Window.End); t = t.Add(time.Minute) {
			rows = append(rows, healtest.Row{Key: k, Time: t, Price: 1})
		}
	}
	return healtest.Records(memory.DefaultAllocator, s.ds, rows...), nil
}

// TestRegister: an engine over a registering lake creates the table on
// its first write and registers each partition once, live ticks and
// repairs alike; Glue being down does not fail the writes, and the
// partitions are registered by a later write once it is back.
func TestRegister(t *testing.T) {
	f := &fakeGlue{tables: map[string]json.RawMessage{}, partitions: map[string]bool{}}
	var down atomic.Bool
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if down.Load() {
			http.Error(w, "unavailable", http.StatusServiceUnavailable)
			return
		}
		f.ServeHTTP(w, r)
	}))
	defer ts.Close()
	client := glue.NewFromConfig(awstest.Config("heal-test", "heal-test-not-a-secret"), func(o *glue.Options) {
		o.BaseEndpoint = aws.String(ts.URL)
		o.RetryMaxAttempts = 1
	})
	ctx := context.Background()
	ds := healtest.QuotesDataset()
	lake := catalog.Register(sink.NewLake(sink.NewMemStore(), nil), catalog.New(client, "markets", "s3://bucket/lake"), nil)
	day1 := time.Date(2024, 1, 2, 14, 0, 0, 0, time.UTC)
	clock := healtest.NewManualClock(day1)
	eng, err := heal.New(ds, quoteSource{ds}, lake, &heal.Options{Keys: []string{"AAPL", "MSFT"}, Clock: clock})
	if err != nil {
		t.Fatalf("an engine over the registering lake: %v", err)
	}
	for m := 0; m < 30; m += 2 { // live every other minute: half missing
		if _, err := eng.Acquire(ctx, day1.Add(time.Duration(m)*time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	f.mu.Lock()
	tables, parts, batches := len(f.tables), len(f.partitions), len(f.batches)
	f.mu.Unlock()
	if tables != 1 || parts != 2 || batches != 2 {
		t.Fatalf("after 15 live ticks: %d tables, %d partitions in %d batches; want 1, 2 (a day of each key), 2 (one per key's first write)", tables, parts, batches)
	}

	// Glue down: the repair's writes still succeed; the next day's
	// partitions are registered by the first write after Glue is back.
	down.Store(true)
	day2 := day1.AddDate(0, 0, 1)
	clock.Set(day2.Add(time.Minute))
	if _, err := eng.Acquire(ctx, day2); err != nil {
		t.Fatalf("a write while Glue is down: %v", err)
	}
	down.Store(false)
	clock.Set(day2.Add(time.Hour))
	rep, err := eng.Heal(ctx, heal.NewWindow(day1, day1.Add(30*time.Minute)))
	if err != nil || rep.Repaired != 30 {
		t.Fatalf("heal: %+v, %v; want 30 repaired", rep, err)
	}
	if _, err := eng.Acquire(ctx, day2.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, k := range []string{"quotes/AAPL/2024-01-02", "quotes/MSFT/2024-01-02", "quotes/AAPL/2024-01-03", "quotes/MSFT/2024-01-03"} {
		if !f.partitions[k] {
			t.Errorf("partition %s not registered (have %v)", k, f.partitions)
		}
	}
	if len(f.batches) != 4 {
		t.Errorf("%d BatchCreatePartition calls, want 4: day 1's two, none for the repair's (known), day 2's two once Glue was back", len(f.batches))
	}
}
