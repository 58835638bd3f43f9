package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/selfheal/heal"
	"github.com/selfheal/heal/cost"
)

// TestMetricsAndCost runs the session until 11:00 with -metrics on a free
// port: the metrics page counts the engine's work, the cost summary prices
// it, and the lake holds the cost record the heal command reads.
func TestMetricsAndCost(t *testing.T) {
	var said bytes.Buffer
	c, stop, err := serveMetrics("127.0.0.1:0", &said)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	url := regexp.MustCompile(`http://\S+/metrics`).FindString(said.String())
	if url == "" {
		t.Fatalf("serveMetrics said %q", said.String())
	}
	r := simulateForTest(t, func(cfg *config) { cfg.collector = c }, "-until", "11:00", "-price", "source-month=60")
	var out bytes.Buffer
	if err := r.report(context.Background(), &out); err != nil {
		t.Fatal(err)
	}
	s := out.String()
	for _, want := range []string{"What it cost, at list prices", "the source at $60.00 a month", "running the pipeline $", "per repaired slot"} {
		if !strings.Contains(s, want) {
			t.Errorf("the report lacks %q:\n%s", want, s)
		}
	}
	recs, err := cost.Load(context.Background(), r.Lake, r.Quotes.Name, heal.Window{})
	if err != nil || len(recs) != 1 {
		t.Fatalf("%d cost records, %v", len(recs), err)
	}
	st := r.Days[0].Engine.Stats()
	rec := recs[0]
	if rec.Stages[heal.StageAcquire].SourceCalls != st.LiveCalls || rec.Stages[heal.StageRepair].SourceCalls != st.RepairCalls {
		t.Errorf("cost record counts %d live and %d repair calls; the engine made %d and %d",
			rec.Stages[heal.StageAcquire].SourceCalls, rec.Stages[heal.StageRepair].SourceCalls, st.LiveCalls, st.RepairCalls)
	}
	if rec.Stages[heal.StageAcquire].SourceBytes == 0 || rec.Events.Repaired != st.Repaired {
		t.Errorf("cost record: %d bytes fetched live, %d repaired (engine: %d)", rec.Stages[heal.StageAcquire].SourceBytes, rec.Events.Repaired, st.Repaired)
	}

	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := regexp.MustCompile(`heal_repaired_slots_total\{dataset="quotes"\} (\d+)`).FindStringSubmatch(string(body))
	if m == nil || m[1] == "0" {
		t.Errorf("metrics lack repaired slots:\n%.2000s", body)
	}
	if !strings.Contains(string(body), `heal_source_fetches_total{dataset="quotes",outcome="ok",path="live"}`) {
		t.Error("metrics lack live fetches")
	}
}
