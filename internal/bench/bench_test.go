package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"
)

// TestSteps runs every step in this process on a tiny lake and checks each
// one's own assertions (the generated truth found by the audits, repaired,
// resynthesized), and that the report renders.
func TestSteps(t *testing.T) {
	cfg := Config{Dir: t.TempDir(), Symbols: 3, Days: 2, GapRate: 1.0 / 11, DupRate: 0.02, Seed: 7, RepairHours: 2}
	rep := &Report{Config: cfg.withDefaults(), Truth: newWorld(cfg).truth(), Machine: machine()}
	if rep.Truth.Missing == 0 || rep.Truth.Duplicates == 0 {
		t.Fatalf("the generated lake has no gap or no duplicate: %+v", rep.Truth)
	}
	for _, name := range StepNames() {
		var out bytes.Buffer
		if err := RunStep(context.Background(), cfg, name, &out); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var r Result
		if err := json.Unmarshal(out.Bytes(), &r); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if r.Failed != "" {
			t.Errorf("%s: %s", name, r.Failed)
		}
		if r.Seconds <= 0 || r.PeakRSS <= 0 {
			t.Errorf("%s: measured nothing: %+v", name, r)
		}
		rep.Results = append(rep.Results, r)
	}
	rep.Targets = targets(rep)
	if len(rep.Targets) != 7 {
		t.Errorf("%d targets evaluated", len(rep.Targets))
	}
	var b strings.Builder
	if err := rep.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"audit-trusted", "resynth", "peak RSS of the full audit"} {
		if !strings.Contains(b.String(), want) {
			t.Fatalf("table lacks %q:\n%s", want, b.String())
		}
	}
}

func TestWorldTruth(t *testing.T) {
	w := newWorld(Config{Symbols: 2, Days: 3, GapRate: 1.0 / 11, DupRate: 0.001, Seed: 1})
	if len(w.days) != 3 || w.days[0].Weekday() == 0 || len(w.session[0]) != 390 {
		t.Fatalf("calendar: %v, %d minutes", w.days, len(w.session[0]))
	}
	tr := w.truth()
	if tr.Expected != 2*3*390 || tr.Present+tr.Missing != tr.Expected || tr.Rows != tr.Present+tr.Duplicates {
		t.Fatalf("truth %+v", tr)
	}
	if got := float64(tr.Missing) / float64(tr.Expected); got < 0.05 || got > 0.15 {
		t.Fatalf("gap rate %.3f, want about 1/11", got)
	}
}

// TestSavedReports renders the reports BENCHMARKS.md quotes, so that the
// JSON they were saved in stays readable.
func TestSavedReports(t *testing.T) {
	for _, name := range []string{"results/small.json", "results/large.json"} {
		f, err := os.Open(name)
		if err != nil {
			t.Fatal(err)
		}
		rep, err := Load(f)
		f.Close()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var b strings.Builder
		if err := rep.WriteTable(&b); err != nil || len(rep.Results) != len(StepNames()) || len(rep.Targets) != 7 {
			t.Fatalf("%s: %d results, %d targets, %v", name, len(rep.Results), len(rep.Targets), err)
		}
	}
}
