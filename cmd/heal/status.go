package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/selfheal/heal"
	"github.com/selfheal/heal/cost"
	"github.com/selfheal/heal/report"
	"github.com/selfheal/heal/sink"
)

// gap is one run of missing slots of a key.
type gap struct {
	Key     string      `json:"key"`
	Window  heal.Window `json:"window"`
	Slots   int         `json:"slots"`
	Alarmed bool        `json:"alarmed"` // an alarm covers it: heal gave up on it
}

// statusJSON is what status -json writes.
type statusJSON struct {
	Lake     string        `json:"lake"`
	Window   heal.Window   `json:"window"`
	Datasets []datasetJSON `json:"datasets"`
	// Incomplete lists dataset/key pairs below -min-completeness.
	Incomplete []string `json:"incomplete,omitempty"`
}

type totalsJSON struct {
	report.Totals
	CompletenessBefore float64 `json:"completeness_before"`
	Completeness       float64 `json:"completeness"`
}

type datasetJSON struct {
	Name        string        `json:"name"`
	DerivedFrom string        `json:"derived_from,omitempty"`
	Majors      []string      `json:"majors,omitempty"`
	Rule        string        `json:"rule,omitempty"`
	All         totalsJSON    `json:"all"`
	Keys        []totalsJSON  `json:"keys"`
	Periods     []heal.Status `json:"periods"`
	Gaps        []gap         `json:"gaps"`
	Alarms      []heal.Alarm  `json:"alarms"`
	Cost        *cost.Summary `json:"cost,omitempty"`
}

func totals(t report.Totals) totalsJSON {
	return totalsJSON{Totals: t, CompletenessBefore: t.CompletenessBefore(), Completeness: t.Completeness()}
}

// gapsOf audits t over w and lists its gaps, marking the alarmed ones.
func gapsOf(ctx context.Context, t *target, w heal.Window, alarms []heal.Alarm) ([]gap, error) {
	a, err := t.eng.Audit(ctx, w)
	if err != nil {
		return nil, err
	}
	var out []gap
	for _, k := range a.Keys {
		for _, g := range k.Gaps {
			x := gap{Key: k.Key, Window: g, Slots: g.Slots(t.ds.Grain)}
			for _, al := range alarms {
				if al.Key == k.Key && !al.Resolved && al.Window.Overlaps(g) {
					x.Alarmed = true
				}
			}
			out = append(out, x)
		}
	}
	return out, nil
}

// belowThreshold lists the keys of d less complete than min.
func belowThreshold(d *report.Dataset, min float64) []string {
	if min <= 0 {
		return nil
	}
	var out []string
	per, _ := d.Totals()
	for _, k := range per {
		if k.Expected > 0 && k.Completeness() < min {
			out = append(out, fmt.Sprintf("%s/%s %.1f%%", d.Name, k.Key, 100*k.Completeness()))
		}
	}
	return out
}

func incomplete(keys []string, min float64) error {
	if len(keys) == 0 {
		return nil
	}
	return &incompleteError{fmt.Sprintf("%d key(s) below -min-completeness %g: %s", len(keys), min, strings.Join(keys, ", "))}
}

func statusCmd(ctx context.Context, cfg *config, lake *sink.Lake, ts []*target, w heal.Window, stdout io.Writer) error {
	ds, err := collect(ctx, cfg, lake, ts, w)
	if err != nil {
		return err
	}
	var below []string
	out := statusJSON{Lake: cfg.lake, Window: w}
	for i, d := range ds {
		gaps, err := gapsOf(ctx, ts[i], d.Window, d.Alarms)
		if err != nil {
			return err
		}
		below = append(below, belowThreshold(d, cfg.minComplete)...)
		if cfg.jsonOut {
			per, all := d.Totals()
			j := datasetJSON{Name: d.Name, DerivedFrom: d.DerivedFrom, Majors: d.Majors, Rule: d.Rule, All: totals(all), Periods: d.Status,
				Gaps: gaps, Alarms: d.Alarms, Cost: d.Cost}
			for _, k := range per {
				j.Keys = append(j.Keys, totals(k))
			}
			if j.Gaps == nil {
				j.Gaps = []gap{}
			}
			if j.Alarms == nil {
				j.Alarms = []heal.Alarm{}
			}
			out.Datasets = append(out.Datasets, j)
			continue
		}
		if i > 0 {
			fmt.Fprintln(stdout)
		}
		writeStatus(stdout, cfg, d, gaps)
	}
	if cfg.jsonOut {
		out.Incomplete = below
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(out); err != nil {
			return err
		}
	}
	return incomplete(below, cfg.minComplete)
}

func pct(f float64) string { return fmt.Sprintf("%.1f%%", 100*f) }

func writeStatus(w io.Writer, cfg *config, d *report.Dataset, gaps []gap) {
	loc := cfg.tz
	per, all := d.Totals()
	rule := d.Rule
	if rule == "" {
		rule = "every slot"
	}
	fmt.Fprintf(w, "%s: %d key(s), grain %s, rule %s", d.Name, len(d.Keys), report.Duration(d.Grain), rule)
	if d.DerivedFrom != "" {
		fmt.Fprintf(w, ", derived from %s", d.DerivedFrom)
	}
	if len(d.Majors) > 0 {
		fmt.Fprintf(w, ", audited with its schema majors %s", strings.Join(d.Majors, ", "))
	}
	fmt.Fprintf(w, "\n  window %s\n", shortWindow(d.Window, loc))
	fmt.Fprintf(w, "  complete: %s before repair, %s now · expected %d · repaired %d · confirmed empty %d · unrepairable %d · missing %d · alarms open %d\n\n",
		pct(all.CompletenessBefore()), pct(all.Completeness()), all.Expected, all.Repaired, all.Empty, all.Unrepairable, all.Missing, d.OpenAlarms())

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "key\texpected\theld before\trepaired\tempty\tunrepairable\tmissing\tbefore\tnow\t")
	for _, k := range append(per, all) {
		name := k.Key
		if name == "" {
			name = "all"
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t%s\t\n", name, k.Expected, k.Before, k.Repaired, k.Empty, k.Unrepairable, k.Missing,
			pct(k.CompletenessBefore()), pct(k.Completeness()))
	}
	tw.Flush()

	writeMatrix(w, d, loc)

	missing := 0
	for _, g := range gaps {
		missing += g.Slots
	}
	if len(gaps) == 0 {
		fmt.Fprintln(w, "\n  no open gaps")
	} else {
		fmt.Fprintf(w, "\n  open gaps: %d slot(s) in %d gap(s)\n", missing, len(gaps))
		for i, g := range gaps {
			if i == cfg.maxGaps {
				fmt.Fprintf(w, "    … and %d more (-max-gaps)\n", len(gaps)-i)
				break
			}
			note := ""
			if g.Alarmed {
				note = "  unrepairable (alarmed)"
			}
			fmt.Fprintf(w, "    %-10s %s  %d slot(s)%s\n", g.Key, shortWindow(g.Window, loc), g.Slots, note)
		}
	}
	open := d.OpenAlarms()
	fmt.Fprintf(w, "\n  alarms open: %d", open)
	if n := len(d.Alarms) - open; n > 0 {
		fmt.Fprintf(w, " (and %d resolved)", n)
	}
	fmt.Fprintln(w)
	for _, a := range d.Alarms {
		if a.Resolved {
			continue
		}
		fmt.Fprintf(w, "    %-10s %s  %s, %d attempt(s), raised %s: %s\n", a.Key, shortWindow(a.Window, loc), a.Stage, a.Attempts,
			a.At.In(loc).Format("2006-01-02 15:04"), a.LastError)
	}
	writeCost(w, d.Cost, loc)
}

// writeMatrix prints completeness now per key and period, as whole
// percents, for the periods in which something is expected.
func writeMatrix(w io.Writer, d *report.Dataset, loc *time.Location) {
	type cellKey struct {
		key string
		at  int64
	}
	cells := map[cellKey]heal.Status{}
	var cols []time.Time
	seen := map[int64]bool{}
	for _, s := range d.Status {
		cells[cellKey{s.Key, s.Window.Start.UnixNano()}] = s
		if s.Expected > 0 && !seen[s.Window.Start.UnixNano()] {
			seen[s.Window.Start.UnixNano()] = true
			cols = append(cols, s.Window.Start)
		}
	}
	if len(cols) == 0 {
		return
	}
	const maxCols = 36
	dropped := 0
	if len(cols) > maxCols {
		dropped = len(cols) - maxCols
		cols = cols[dropped:]
	}
	fmt.Fprintf(w, "\n  complete now, %% per %s (%s)  * repaired  ! unrepairable  . nothing expected", report.Duration(d.Per), loc)
	if dropped > 0 {
		fmt.Fprintf(w, "  (last %d periods; %d earlier ones in the report)", maxCols, dropped)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "\t")
	day := ""
	for _, c := range cols {
		t := c.In(loc)
		lbl := t.Format("15:04")
		if d.Per%time.Hour == 0 {
			lbl = t.Format("15")
		}
		if dd := t.Format("01-02"); dd != day && d.Per < 24*time.Hour {
			day = dd
			lbl = dd + " " + lbl
		}
		if d.Per >= 24*time.Hour {
			lbl = t.Format("01-02")
		}
		fmt.Fprintf(tw, "%s\t", lbl)
	}
	fmt.Fprintln(tw)
	for _, k := range d.Keys {
		fmt.Fprintf(tw, "%s\t", k)
		for _, c := range cols {
			s, ok := cells[cellKey{k, c.UnixNano()}]
			if !ok || s.Expected == 0 {
				fmt.Fprint(tw, ".\t")
				continue
			}
			mark := " "
			switch {
			case s.Unrepairable > 0 || s.Missing() > 0:
				mark = "!"
			case s.Repaired > 0:
				mark = "*"
			}
			fmt.Fprintf(tw, "%d%s\t", int(100*float64(s.Present+s.Empty)/float64(s.Expected)), mark)
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()
}

func writeCost(w io.Writer, s *cost.Summary, loc *time.Location) {
	if s == nil {
		fmt.Fprintln(w, "\n  cost: no records (run the engine with a cost.Meter to keep them)")
		return
	}
	fmt.Fprintf(w, "\n  cost: %d record(s), %s\n", s.Records, shortWindow(heal.Window{Start: s.Start, End: s.End}, loc))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "stage\tcounts as\tsource calls\tfailed\tfetched\tPUT\tGET\tLIST\tDELETE\twritten\tCPU\tcost\t")
	for _, st := range s.Stages {
		u := st.Usage
		kind := "pipeline"
		if st.Healing {
			kind = "healing"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%d\t%d\t%d\t%d\t%s\t%s\t%s\t\n", st.Stage, kind, u.SourceCalls, u.SourceErrors, cost.Bytes(u.SourceBytes),
			u.Requests[cost.Put], u.Requests[cost.Get], u.Requests[cost.List], u.Requests[cost.Delete], cost.Bytes(u.BytesWritten),
			u.CPU.Round(time.Millisecond), cost.Dollars(st.Total))
	}
	stored := "not measured"
	if s.StoredBytes >= 0 {
		stored = cost.Bytes(s.StoredBytes)
	}
	fmt.Fprintf(tw, "storage\tpipeline\t\t\t\t\t\t\t\t%s\t\t%s\t\n", stored, cost.Dollars(s.Storage))
	tw.Flush()
	fmt.Fprintf(w, "  running the pipeline %s · healing it %s · per repaired slot %s · per audit %s\n",
		cost.Dollars(s.Pipeline), cost.Dollars(s.Healing), cost.Dollars(s.PerRepair), cost.Dollars(s.PerAudit))
}

func auditCmd(ctx context.Context, cfg *config, ts []*target, w heal.Window, stdout io.Writer) error {
	type auditJSON struct {
		Dataset string            `json:"dataset"`
		Rule    string            `json:"rule,omitempty"`
		Report  *heal.AuditReport `json:"report"`
	}
	var all []auditJSON
	var below []string
	for i, t := range ts {
		a, err := t.eng.Audit(ctx, w)
		if err != nil {
			return err
		}
		for _, k := range a.Keys {
			if cfg.minComplete > 0 && k.Expected > 0 && k.Completeness() < cfg.minComplete {
				below = append(below, fmt.Sprintf("%s/%s %.1f%%", t.ds.Name, k.Key, 100*k.Completeness()))
			}
		}
		if cfg.jsonOut {
			all = append(all, auditJSON{Dataset: t.ds.Name, Rule: t.ruleName, Report: a})
			continue
		}
		if i > 0 {
			fmt.Fprintln(stdout)
		}
		rule := t.ruleName
		if rule == "" {
			rule = "every slot"
		}
		majors := ""
		if len(t.majors) > 0 {
			majors = ", audited with its schema majors " + strings.Join(t.majors, ", ")
		}
		fmt.Fprintf(stdout, "%s: audit of %s, rule %s%s (read-only)\n", t.ds.Name, shortWindow(a.Window, cfg.tz), rule, majors)
		tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "key\texpected\tpresent\tempty\tmissing\tcomplete\tgaps\t")
		var exp, pres, emp, mis, ngaps int
		for _, k := range a.Keys {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%s\t%d\t\n", k.Key, k.Expected, k.Present, k.Empty, k.Missing, pct(k.Completeness()), len(k.Gaps))
			exp, pres, emp, mis, ngaps = exp+k.Expected, pres+k.Present, emp+k.Empty, mis+k.Missing, ngaps+len(k.Gaps)
		}
		tot := heal.KeyAudit{Expected: exp, Present: pres, Empty: emp}
		fmt.Fprintf(tw, "all\t%d\t%d\t%d\t%d\t%s\t%d\t\n", exp, pres, emp, mis, pct(tot.Completeness()), ngaps)
		tw.Flush()
		listed := 0
		for _, k := range a.Keys {
			for _, g := range k.Gaps {
				if listed == cfg.maxGaps {
					fmt.Fprintf(stdout, "    … and more (-max-gaps)\n")
					break
				}
				if listed == 0 {
					fmt.Fprintln(stdout, "  gaps:")
				}
				listed++
				fmt.Fprintf(stdout, "    %-10s %s  %d slot(s)\n", k.Key, shortWindow(g, cfg.tz), g.Slots(t.ds.Grain))
			}
		}
		if a.Duplicates > 0 {
			fmt.Fprintf(stdout, "  duplicates: %d stored copies in %d crowded partition(s) (heal compact merges them)\n", a.Duplicates, len(a.Crowded))
		}
	}
	if cfg.jsonOut {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(map[string]any{"lake": cfg.lake, "window": w, "datasets": all, "incomplete": below}); err != nil {
			return err
		}
	}
	return incomplete(below, cfg.minComplete)
}
