package metrics_test

import (
	"errors"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/selfheal/heal"
	"github.com/selfheal/heal/metrics"
)

func TestCollector(t *testing.T) {
	c := metrics.New(&metrics.Options{ConstLabels: prometheus.Labels{"pipeline": "test"}})
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	for _, ev := range []heal.Event{
		{Kind: heal.EventFetch, Dataset: "q", Live: true, Elapsed: 20 * time.Millisecond},
		{Kind: heal.EventFetch, Dataset: "q", Live: true, Elapsed: 30 * time.Millisecond},
		{Kind: heal.EventFetch, Dataset: "q", Err: errors.New("503")},
		{Kind: heal.EventFetch, Dataset: "q", Err: heal.ErrNoData},
		{Kind: heal.EventWrite, Dataset: "q", Live: true, Rows: 11},
		{Kind: heal.EventWrite, Dataset: "q", Rows: 3},
		{Kind: heal.EventAudit, Dataset: "q", Rows: 7},
		{Kind: heal.EventGap, Dataset: "q", Rows: 4},
		{Kind: heal.EventGap, Dataset: "q", Rows: 3},
		{Kind: heal.EventRepaired, Dataset: "q", Rows: 5},
		{Kind: heal.EventEmpty, Dataset: "q", Rows: 1},
		{Kind: heal.EventAlarm, Dataset: "q"},
		{Kind: heal.EventResolved, Dataset: "q"},
		{Kind: heal.EventDerived, Dataset: "q", Live: true, Elapsed: time.Millisecond},
		{Kind: heal.EventDerived, Dataset: "q", Err: errors.New("boom")},
		{Kind: heal.EventCompact, Dataset: "q", Rows: 2},
		{Kind: heal.EventAudit, Dataset: "q", Rows: 2}, // the gauge follows the last audit
	} {
		c.Observe(ev)
	}
	want := `
# HELP heal_source_fetches_total Source calls, by path (live, repair) and outcome (ok, no_data, error).
# TYPE heal_source_fetches_total counter
heal_source_fetches_total{dataset="q",outcome="error",path="repair",pipeline="test"} 1
heal_source_fetches_total{dataset="q",outcome="no_data",path="repair",pipeline="test"} 1
heal_source_fetches_total{dataset="q",outcome="ok",path="live",pipeline="test"} 2
# HELP heal_rows_written_total Rows landed in the lake, by path (live, repair).
# TYPE heal_rows_written_total counter
heal_rows_written_total{dataset="q",path="live",pipeline="test"} 11
heal_rows_written_total{dataset="q",path="repair",pipeline="test"} 3
# HELP heal_gap_slots_total Slots an audit found missing for the first time.
# TYPE heal_gap_slots_total counter
heal_gap_slots_total{dataset="q",pipeline="test"} 7
# HELP heal_repaired_slots_total Missing slots filled by repair.
# TYPE heal_repaired_slots_total counter
heal_repaired_slots_total{dataset="q",pipeline="test"} 5
# HELP heal_empty_slots_total Missing slots the source confirmed empty.
# TYPE heal_empty_slots_total counter
heal_empty_slots_total{dataset="q",pipeline="test"} 1
# HELP heal_alarms_total Alarms raised: holes heal could not fill.
# TYPE heal_alarms_total counter
heal_alarms_total{dataset="q",pipeline="test"} 1
# HELP heal_resolved_total Alarmed holes that healed later.
# TYPE heal_resolved_total counter
heal_resolved_total{dataset="q",pipeline="test"} 1
# HELP heal_audits_total Audits finished.
# TYPE heal_audits_total counter
heal_audits_total{dataset="q",pipeline="test"} 2
# HELP heal_missing_slots Slots the last audit found missing.
# TYPE heal_missing_slots gauge
heal_missing_slots{dataset="q",pipeline="test"} 2
# HELP heal_derivations_total Derived windows computed, by path (live, resynthesize) and outcome.
# TYPE heal_derivations_total counter
heal_derivations_total{dataset="q",outcome="error",path="resynthesize",pipeline="test"} 1
heal_derivations_total{dataset="q",outcome="ok",path="live",pipeline="test"} 1
# HELP heal_compacted_partitions_total Partitions compacted.
# TYPE heal_compacted_partitions_total counter
heal_compacted_partitions_total{dataset="q",pipeline="test"} 2
`
	names := []string{"heal_source_fetches_total", "heal_rows_written_total", "heal_gap_slots_total", "heal_repaired_slots_total",
		"heal_empty_slots_total", "heal_alarms_total", "heal_resolved_total", "heal_audits_total", "heal_missing_slots",
		"heal_derivations_total", "heal_compacted_partitions_total"}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), names...); err != nil {
		t.Fatal(err)
	}
	if n := testutil.CollectAndCount(c, "heal_source_fetch_duration_seconds"); n != 2 {
		t.Errorf("fetch histograms: %d series, want live and repair", n)
	}
	if probs, err := testutil.CollectAndLint(c); err != nil || len(probs) > 0 {
		t.Errorf("lint: %v %v", probs, err)
	}

	// The handler serves them.
	srv := httptest.NewServer(metrics.Handler(reg))
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `heal_source_fetch_duration_seconds_count{dataset="q",path="live",pipeline="test"} 2`) {
		t.Errorf("handler output lacks the live fetch histogram:\n%s", body)
	}
}
