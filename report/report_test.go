package report_test

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/selfheal/heal"
	"github.com/selfheal/heal/audit"
	"github.com/selfheal/heal/report"
	"github.com/selfheal/heal/report/reporttest"
	"github.com/selfheal/heal/sink"
)

// build returns a report over a lake a real engine filled.
func build(t *testing.T) *report.Report {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	rep, err := reporttest.Build(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Repaired != reporttest.Repaired || rep.Empty != reporttest.Empty || rep.Unrepairable != reporttest.Unrepairable {
		t.Fatalf("fixture: repaired %d, empty %d, unrepairable %d", rep.Repaired, rep.Empty, rep.Unrepairable)
	}
	lake, err := sink.OpenDir(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := heal.LatestDescriptor(ctx, lake, "ticks")
	if err != nil {
		t.Fatal(err)
	}
	ds, err := desc.Dataset()
	if err != nil {
		t.Fatal(err)
	}
	rule, err := audit.ParseRule(desc.Rule)
	if err != nil {
		t.Fatal(err)
	}
	eng, err := heal.New(ds, nil, lake, &heal.Options{Keys: desc.Keys, Rule: rule})
	if err != nil {
		t.Fatal(err)
	}
	d, err := report.Collect(ctx, eng, lake, desc.Keys, &report.Options{Window: reporttest.Window, Rule: desc.Rule})
	if err != nil {
		t.Fatal(err)
	}
	return &report.Report{Title: "test report", Lake: dir, Generated: reporttest.Window.End, Datasets: []*report.Dataset{d}}
}

func TestCollect(t *testing.T) {
	r := build(t)
	d := r.Datasets[0]
	per, all := d.Totals()
	if all.Expected != reporttest.Expected || all.Repaired != reporttest.Repaired || all.Empty != reporttest.Empty ||
		all.Unrepairable != reporttest.Unrepairable || all.Missing != reporttest.Unrepairable {
		t.Errorf("totals %+v", all)
	}
	if all.Before != reporttest.Expected-reporttest.Repaired-reporttest.Empty-reporttest.Unrepairable {
		t.Errorf("held before repair: %d", all.Before)
	}
	if len(per) != 4 || per[1].Key != "B" || per[1].Repaired != reporttest.Repaired || per[1].Completeness() != 1 {
		t.Errorf("per key %+v", per)
	}
	if len(d.Status) != 4*3 {
		t.Errorf("%d status rows, want 4 keys × 3 hours", len(d.Status))
	}
	if len(d.Audits) != 1 || d.Audits[0].Repaired != reporttest.Repaired {
		t.Errorf("audits %+v", d.Audits)
	}
	if d.OpenAlarms() != 1 || d.Alarms[0].Key != "C" {
		t.Errorf("alarms %+v", d.Alarms)
	}
	if d.Cost == nil || d.Cost.Records != 4 || d.Cost.Events.Repaired != reporttest.Repaired || d.Cost.Healing <= 0 || d.Cost.Pipeline <= 0 {
		t.Fatalf("cost %+v", d.Cost)
	}
}

func TestWriteHTML(t *testing.T) {
	r := build(t)
	var buf bytes.Buffer
	if err := r.WriteHTML(&buf); err != nil {
		t.Fatal(err)
	}
	page := buf.String()
	for _, want := range []string{
		"<title>test report</title>", "Before repair", "After repair", "Audits and repairs", "Alarms", "Cost",
		"403 the plan lacks history for C", // the alarm's last error
		">96.4%<",                          // complete before repair: (720 - 18 repaired - 3 empty - 5 unrepairable) / 720
		"running the pipeline", "healing it", "healing per repaired slot",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("the page lacks %q", want)
		}
	}
	// Self-contained: nothing is loaded from anywhere.
	for _, re := range []string{`<script`, `src=`, `@import`, `url\(`, `href="http`, `<link(?: [^>]*)? href="(?:[^d]|d[^a])`} {
		if m := regexp.MustCompile(re).FindString(page); m != "" {
			t.Errorf("the page loads something: %q", m)
		}
	}
	// 4 keys × 3 hours in each heatmap; one repaired marker per B hour; one unrepairable cross.
	if n := strings.Count(page, `rx="2"`); n != 2*4*3 {
		t.Errorf("%d heatmap cells, want 24", n)
	}
	if n := strings.Count(page, `r="3.5" fill="#fff"`); n != 3+1 { // 3 hours of B, plus the legend
		t.Errorf("%d repaired markers, want 3 (and the legend's)", n)
	}
	if !strings.Contains(page, "C 03-04 15:00: 92%") {
		t.Errorf("the after map lacks C's 15:00 cell at 92%%")
	}
}

func TestTotalsEmpty(t *testing.T) {
	var tot report.Totals
	if tot.Completeness() != 1 || tot.CompletenessBefore() != 1 {
		t.Error("nothing expected should be complete")
	}
	d := &report.Dataset{Name: "x", Keys: []string{"A"}, Window: heal.Window{Start: reporttest.Start, End: reporttest.Start.Add(time.Hour)}, Per: time.Hour}
	var buf bytes.Buffer
	if err := (&report.Report{Datasets: []*report.Dataset{d}}).WriteHTML(&buf); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"nothing to show", "No audits recorded", "No alarms", "No cost records"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("an empty report lacks %q", want)
		}
	}
}
