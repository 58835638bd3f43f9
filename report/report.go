// Package report gathers what a heal lake knows about its datasets (how
// complete each key is, hour by hour, before and after repair; the audits
// and repairs; the alarms; what it all cost) and renders it as one
// self-contained HTML page: inline CSS and SVG, no scripts, fonts or
// images from anywhere. The heal command's report subcommand writes it.
package report

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/selfheal/heal"
	"github.com/selfheal/heal/cost"
)

// Report is a health report over one lake.
type Report struct {
	Title     string
	Lake      string // where the lake is, as the user named it
	Generated time.Time
	// Location is the time zone times are shown in. nil: UTC.
	Location *time.Location
	Datasets []*Dataset
}

// Dataset is what the report shows of one dataset.
type Dataset struct {
	Name        string
	DerivedFrom string   // the input dataset, for a derived one
	Majors      []string // the schema majors audited as one with it, oldest first
	Rule        string   // the completeness rule's name
	Grain       time.Duration
	Keys        []string
	Window      heal.Window
	Per         time.Duration
	Status      []heal.Status      // per key, then per period, as Engine.Status returns them
	Audits      []heal.AuditRecord // audits whose window overlaps Window, oldest first
	Alarms      []heal.Alarm       // alarms about Window, and every open one
	Cost        *cost.Summary      // nil: no cost records
}

// Options says what [Collect] gathers. The zero value is the last day,
// hour by hour, at default prices.
type Options struct {
	// Window is the span reported on. Zero: the day before now.
	Window heal.Window
	// Per is the length of a period of the completeness tables and
	// heatmaps. 0: one hour (or the grain, if longer).
	Per time.Duration
	// Prices turn cost records into money. Zero: cost.DefaultPrices().
	Prices *cost.Prices
	// CostPer is the length of the cost table's periods. 0: a day.
	CostPer time.Duration
	// Rule is the rule's name shown in the report.
	Rule string
	// DerivedFrom names the input dataset of a derived one.
	DerivedFrom string
	// Majors names the schema majors the engine audits as one with the
	// dataset (heal.Descriptor.Majors), for the report to say so.
	Majors []string
}

// Collect gathers one dataset's report through eng (an engine over the
// lake, which may have no Source: nothing is fetched or written) and the
// cost records in meta.
func Collect(ctx context.Context, eng *heal.Engine, meta heal.MetaStore, keys []string, opts *Options) (*Dataset, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	ds := eng.Dataset()
	if o.Window.IsZero() {
		now := time.Now().UTC().Truncate(time.Hour)
		o.Window = heal.Window{Start: now.Add(-24 * time.Hour), End: now}
	}
	if o.Per <= 0 {
		o.Per = time.Hour
	}
	o.Per = max(o.Per, ds.Grain)
	if o.Prices == nil {
		p := cost.DefaultPrices()
		o.Prices = &p
	}
	d := &Dataset{Name: ds.Name, DerivedFrom: o.DerivedFrom, Majors: o.Majors, Rule: o.Rule, Grain: ds.Grain, Keys: keys, Per: o.Per}
	st, err := eng.Status(ctx, o.Window, o.Per)
	if err != nil {
		return nil, fmt.Errorf("heal/report: %s: status: %w", ds.Name, err)
	}
	d.Status = st
	d.Window = o.Window.Align(o.Per)
	audits, err := eng.Audits(ctx)
	if err != nil {
		return nil, fmt.Errorf("heal/report: %s: audits: %w", ds.Name, err)
	}
	for _, a := range audits {
		if a.Window.Overlaps(d.Window) {
			d.Audits = append(d.Audits, a)
		}
	}
	alarms, err := eng.Alarms(ctx)
	if err != nil {
		return nil, fmt.Errorf("heal/report: %s: alarms: %w", ds.Name, err)
	}
	for _, a := range alarms {
		if !a.Resolved || a.Window.Overlaps(d.Window) {
			d.Alarms = append(d.Alarms, a)
		}
	}
	recs, err := cost.Load(ctx, meta, ds.Name, heal.Window{Start: d.Window.Start, End: d.Window.End.Add(100 * 365 * 24 * time.Hour)})
	if err != nil {
		return nil, fmt.Errorf("heal/report: %s: %w", ds.Name, err)
	}
	recs = slices.DeleteFunc(recs, func(r cost.Record) bool { return !r.Start.Before(d.Window.End) })
	if len(recs) > 0 {
		d.Cost = cost.Summarize(recs, *o.Prices, o.CostPer)
	}
	return d, nil
}

// Totals is the completeness of one key (or of all, Key "") over the
// report's window.
type Totals struct {
	Key          string
	Expected     int
	Before       int // held before repair: present minus repaired
	Present      int // held now, repaired slots included
	Repaired     int
	Empty        int // confirmed empty by the source
	Unrepairable int
	Missing      int // neither held nor confirmed empty
}

func (t *Totals) add(s heal.Status) {
	t.Expected += s.Expected
	t.Before += s.Present - s.Repaired
	t.Present += s.Present
	t.Repaired += s.Repaired
	t.Empty += s.Empty
	t.Unrepairable += s.Unrepairable
	t.Missing += s.Missing()
}

// Completeness is the share of expected slots held or confirmed empty now;
// 1 when nothing is expected.
func (t Totals) Completeness() float64 { return share(t.Present+t.Empty, t.Expected) }

// CompletenessBefore is the share of expected slots held before repair.
func (t Totals) CompletenessBefore() float64 { return share(t.Before, t.Expected) }

func share(n, of int) float64 {
	if of == 0 {
		return 1
	}
	return float64(n) / float64(of)
}

// Totals returns the totals of every key, in the order of Keys, and of all
// keys together.
func (d *Dataset) Totals() (perKey []Totals, all Totals) {
	idx := map[string]int{}
	for _, k := range d.Keys {
		idx[k] = len(perKey)
		perKey = append(perKey, Totals{Key: k})
	}
	for _, s := range d.Status {
		i, ok := idx[s.Key]
		if !ok {
			idx[s.Key] = len(perKey)
			perKey = append(perKey, Totals{Key: s.Key})
			i = len(perKey) - 1
		}
		perKey[i].add(s)
		all.add(s)
	}
	return perKey, all
}

// OpenAlarms counts the alarms not resolved.
func (d *Dataset) OpenAlarms() int {
	n := 0
	for _, a := range d.Alarms {
		if !a.Resolved {
			n++
		}
	}
	return n
}
