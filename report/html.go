package report

import (
	_ "embed"
	"fmt"
	"html/template"
	"io"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/selfheal/heal"
	"github.com/selfheal/heal/cost"
)

//go:embed report.html.tmpl
var pageTemplate string

var page = template.Must(template.New("report").Funcs(template.FuncMap{
	"pct":         func(f float64) string { return fmt.Sprintf("%.1f%%", 100*f) },
	"dollars":     cost.Dollars,
	"bytes":       cost.Bytes,
	"legendWidth": func(n int) int { return n * 58 },
}).Parse(pageTemplate))

// WriteHTML renders the report as one self-contained HTML page.
func (r *Report) WriteHTML(w io.Writer) error {
	loc := r.Location
	if loc == nil {
		loc = time.UTC
	}
	v := pageView{Title: r.Title, Lake: r.Lake, Generated: r.Generated.In(loc).Format("2006-01-02 15:04 MST"), Zone: loc.String(), Legend: legend()}
	if v.Title == "" {
		v.Title = "heal health report"
	}
	for _, d := range r.Datasets {
		v.Datasets = append(v.Datasets, datasetView(d, loc))
	}
	return page.Execute(w, v)
}

type pageView struct {
	Title, Lake, Generated, Zone string
	Datasets                     []dsView
	Legend                       []legendStop
}

// legendStop is one swatch of the heatmaps' colour legend.
type legendStop struct {
	X, TX int
	Fill  string
	Text  string
}

func legend() []legendStop {
	var out []legendStop
	for i, s := range []float64{0.5, 0.8, 0.9, 0.95, 0.99, 1} {
		text := fmt.Sprintf("%g%%", 100*s)
		if i == 0 {
			text = "≤50%"
		}
		out = append(out, legendStop{X: i * 58, TX: i*58 + 18, Fill: colour(s), Text: text})
	}
	return out
}

type dsView struct {
	Name, DerivedFrom, Majors, Rule, Window, Per, Grain string
	All                                                 Totals
	Keys                                                []Totals
	Before, After                                       heatmap
	Timeline                                            timeline
	Audits                                              []auditRow
	Alarms                                              []alarmRow
	OpenAlarms                                          int
	Cost                                                *costView
}

type heatmap struct {
	Title         string
	Width, Height int
	Cells         []cell
	Rows, Cols    []label
	Days          []label
	Empty         bool
}

type cell struct {
	X, Y, W, H int
	Fill       string
	Title      string
	Repaired   bool
	Unrep      bool
	CX, CY     int
}

type label struct {
	X, Y int
	Text string
}

type timeline struct {
	Width, Height, Base int
	Bars                []bar
	Alarms              []marker
	Ticks               []label
	Max                 string
	Empty               bool
}

type bar struct {
	X, W                   int
	RepY, RepH, EmpY, EmpH int
	MisY, MisH             int
	Title                  string
}

type marker struct {
	Points string
	Fill   string
	Title  string
}

type auditRow struct {
	At, Window                                         string
	Expected, Present, Missing, Repaired, Empty, Calls int
	Alarms                                             int
}

type alarmRow struct {
	At, Key, Window, Stage, LastError string
	Attempts                          int
	Resolved                          bool
}

type costView struct {
	Span                              string
	Stages                            []costRow
	Pipeline, Healing, Storage, Total string
	PerRepair, PerAudit, Stored, CPU  string
	Repaired, Audits                  int64
	Periods                           []periodRow
	PricesNote                        string
}

type costRow struct {
	Stage, Kind                           string
	Calls, Errors, Put, Get, List, Delete int64
	SourceBytes, Written, Read, Busy, CPU string
	Source, Requests, Compute, Total      string
}

type periodRow struct {
	Period, Pipeline, Healing string
	Repaired                  int64
}

func datasetView(d *Dataset, loc *time.Location) dsView {
	v := dsView{
		Name: d.Name, DerivedFrom: d.DerivedFrom, Majors: strings.Join(d.Majors, ", "), Rule: d.Rule,
		Window: fmt.Sprintf("%s – %s", d.Window.Start.In(loc).Format("2006-01-02 15:04"), d.Window.End.In(loc).Format("2006-01-02 15:04 MST")),
		Per:    Duration(d.Per), Grain: Duration(d.Grain), OpenAlarms: d.OpenAlarms(),
	}
	v.Keys, v.All = d.Totals()
	v.Before = buildHeatmap(d, loc, false)
	v.After = buildHeatmap(d, loc, true)
	v.Timeline = buildTimeline(d, loc)
	for i := len(d.Audits) - 1; i >= 0 && len(v.Audits) < 50; i-- {
		a := d.Audits[i]
		v.Audits = append(v.Audits, auditRow{
			At: a.At.In(loc).Format("01-02 15:04"), Window: shortWindow(a.Window, loc),
			Expected: a.Expected, Present: a.Present, Missing: a.Missing, Repaired: a.Repaired, Empty: a.Empty, Calls: a.Calls, Alarms: a.Alarms,
		})
	}
	for _, a := range d.Alarms {
		v.Alarms = append(v.Alarms, alarmRow{
			At: a.At.In(loc).Format("2006-01-02 15:04"), Key: a.Key, Window: shortWindow(a.Window, loc), Stage: string(a.Stage),
			LastError: a.LastError, Attempts: a.Attempts, Resolved: a.Resolved,
		})
	}
	if d.Cost != nil {
		v.Cost = buildCost(d.Cost, loc)
	}
	return v
}

func shortWindow(w heal.Window, loc *time.Location) string {
	s, e := w.Start.In(loc), w.End.In(loc)
	if s.Format("2006-01-02") == e.Format("2006-01-02") {
		return s.Format("01-02 15:04") + "–" + e.Format("15:04")
	}
	return s.Format("01-02 15:04") + "–" + e.Format("01-02 15:04")
}

// Duration formats d without zero units: 1h, 1m, 1h30m, 90s.
func Duration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// colour maps a share in [0, 1] onto red, yellow, green (ColorBrewer
// RdYlGn), spending the scale where data lives: 50% and less is red, and
// the steps between 90%, 95% and 100% stay visible.
func colour(s float64) string {
	s = math.Max(0, math.Min(1, s))
	s = math.Pow(math.Max(0, s-0.5)/0.5, 3)
	stops := [][3]float64{{215, 48, 39}, {252, 141, 89}, {254, 224, 139}, {145, 207, 96}, {26, 152, 80}}
	x := s * float64(len(stops)-1)
	i := min(int(x), len(stops)-2)
	f := x - float64(i)
	var c [3]int
	for j := range c {
		c[j] = int(math.Round(stops[i][j] + f*(stops[i+1][j]-stops[i][j])))
	}
	return fmt.Sprintf("#%02x%02x%02x", c[0], c[1], c[2])
}

const (
	cellSize = 16
	cellGap  = 2
	dayGap   = 8
	leftW    = 96
	topH     = 34
)

// buildHeatmap lays out keys × periods: before repair (present minus
// repaired) or after it (present plus confirmed empty). Periods in which no
// key expects anything (nights, weekends) are left out.
func buildHeatmap(d *Dataset, loc *time.Location, after bool) heatmap {
	h := heatmap{Title: "Before repair"}
	if after {
		h.Title = "After repair"
	}
	type colKey = int64
	byKey := map[string]map[colKey]heal.Status{}
	expected := map[colKey]bool{}
	var cols []colKey
	var keys []string
	seen := map[string]bool{}
	for _, k := range d.Keys {
		if !seen[k] {
			seen[k] = true
			keys = append(keys, k)
		}
	}
	for _, s := range d.Status {
		if !seen[s.Key] {
			seen[s.Key] = true
			keys = append(keys, s.Key)
		}
		c := s.Window.Start.UnixNano()
		if byKey[s.Key] == nil {
			byKey[s.Key] = map[colKey]heal.Status{}
		}
		byKey[s.Key][c] = s
		if _, ok := expected[c]; !ok {
			cols = append(cols, c)
			expected[c] = false
		}
		if s.Expected > 0 {
			expected[c] = true
		}
	}
	slices.Sort(cols)
	if kept := slices.DeleteFunc(slices.Clone(cols), func(c colKey) bool { return !expected[c] }); len(kept) > 0 {
		cols = kept
	}
	if len(cols) == 0 || len(keys) == 0 {
		h.Empty = true
		return h
	}
	hourly := d.Per%time.Hour == 0
	x := leftW
	lastDay := ""
	colX := map[colKey]int{}
	for i, c := range cols {
		t := time.Unix(0, c).In(loc)
		day := t.Format("2006-01-02")
		if day != lastDay {
			if lastDay != "" {
				x += dayGap
			}
			h.Days = append(h.Days, label{X: x, Y: 12, Text: t.Format("Mon 01-02")})
			lastDay = day
		}
		colX[c] = x
		if hourly || i%4 == 0 {
			txt := t.Format("15")
			if !hourly {
				txt = t.Format("15:04")
			}
			h.Cols = append(h.Cols, label{X: x + cellSize/2, Y: topH - 6, Text: txt})
		}
		x += cellSize + cellGap
	}
	h.Width = max(x+8, h.Days[len(h.Days)-1].X+80)
	for r, k := range keys {
		y := topH + r*(cellSize+cellGap)
		h.Rows = append(h.Rows, label{X: leftW - 6, Y: y + cellSize - 4, Text: k})
		for _, c := range cols {
			s, ok := byKey[k][c]
			cl := cell{X: colX[c], Y: y, W: cellSize, H: cellSize, CX: colX[c] + cellSize/2, CY: y + cellSize/2}
			at := time.Unix(0, c).In(loc).Format("01-02 15:04")
			switch {
			case !ok || s.Expected == 0:
				cl.Fill = "#ececec"
				cl.Title = fmt.Sprintf("%s %s: nothing expected", k, at)
			case after:
				sh := share(s.Present+s.Empty, s.Expected)
				cl.Fill = colour(sh)
				cl.Repaired = s.Repaired > 0
				cl.Unrep = s.Unrepairable > 0
				cl.Title = fmt.Sprintf("%s %s: %.0f%% (%d of %d held or empty; %d repaired, %d confirmed empty, %d unrepairable, %d missing)",
					k, at, 100*sh, s.Present+s.Empty, s.Expected, s.Repaired, s.Empty, s.Unrepairable, s.Missing())
			default:
				sh := share(s.Present-s.Repaired, s.Expected)
				cl.Fill = colour(sh)
				cl.Title = fmt.Sprintf("%s %s: %.0f%% (%d of %d held before repair)", k, at, 100*sh, s.Present-s.Repaired, s.Expected)
			}
			h.Cells = append(h.Cells, cl)
		}
	}
	h.Height = topH + len(keys)*(cellSize+cellGap) + 4
	return h
}

// buildTimeline draws each audit as a bar at the time it ran: of the slots
// it found missing, those repaired (green), confirmed empty (blue) and the
// rest (red); alarms are triangles under the axis.
func buildTimeline(d *Dataset, loc *time.Location) timeline {
	const width, plotH, left, right = 900, 120, 50, 50
	t := timeline{Width: width, Height: plotH + 60, Base: plotH + 10}
	if len(d.Audits) == 0 && len(d.Alarms) == 0 {
		t.Empty = true
		return t
	}
	lo, hi := d.Window.Start, d.Window.End
	maxMiss := 1
	for _, a := range d.Audits {
		if a.At.Before(lo) {
			lo = a.At
		}
		if a.At.After(hi) {
			hi = a.At
		}
		maxMiss = max(maxMiss, a.Missing)
	}
	for _, a := range d.Alarms {
		if a.At.After(hi) {
			hi = a.At
		}
	}
	span := hi.Sub(lo)
	if span <= 0 {
		span = time.Hour
	}
	xOf := func(at time.Time) int {
		return left + int(float64(width-left-right)*float64(at.Sub(lo))/float64(span))
	}
	yScale := func(n int) int { return int(math.Round(float64(plotH) * float64(n) / float64(maxMiss))) }
	for _, a := range d.Audits {
		x := xOf(a.At)
		b := bar{X: x - 2, W: 5}
		rep, emp := min(a.Repaired, a.Missing), min(a.Empty, max(0, a.Missing-a.Repaired))
		rest := max(0, a.Missing-rep-emp)
		base := t.Base
		b.RepH = yScale(rep)
		b.RepY = base - b.RepH
		b.EmpH = yScale(emp)
		b.EmpY = b.RepY - b.EmpH
		b.MisH = yScale(rest)
		b.MisY = b.EmpY - b.MisH
		b.Title = fmt.Sprintf("audit at %s of %s: %d missing, %d repaired, %d confirmed empty, %d source calls",
			a.At.In(loc).Format("01-02 15:04"), shortWindow(a.Window, loc), a.Missing, a.Repaired, a.Empty, a.Calls)
		t.Bars = append(t.Bars, b)
	}
	for _, a := range d.Alarms {
		x := xOf(a.At)
		y := t.Base + 8
		m := marker{Points: fmt.Sprintf("%d,%d %d,%d %d,%d", x, y, x-5, y+9, x+5, y+9), Fill: "#d73027",
			Title: fmt.Sprintf("alarm %s %s %s", a.Key, shortWindow(a.Window, loc), a.LastError)}
		if a.Resolved {
			m.Fill, m.Title = "#999999", "resolved: "+m.Title
		}
		t.Alarms = append(t.Alarms, m)
	}
	for i := 0; i <= 4; i++ {
		at := lo.Add(span * time.Duration(i) / 4)
		t.Ticks = append(t.Ticks, label{X: xOf(at), Y: t.Base + 34, Text: at.In(loc).Format("01-02 15:04")})
	}
	t.Max = fmt.Sprint(maxMiss)
	return t
}

func buildCost(s *cost.Summary, loc *time.Location) *costView {
	v := &costView{
		Span:     fmt.Sprintf("%s – %s, %d record(s)", s.Start.In(loc).Format("2006-01-02 15:04"), s.End.In(loc).Format("2006-01-02 15:04"), s.Records),
		Pipeline: cost.Dollars(s.Pipeline), Healing: cost.Dollars(s.Healing), Storage: cost.Dollars(s.Storage), Total: cost.Dollars(s.Total),
		PerRepair: cost.Dollars(s.PerRepair), PerAudit: cost.Dollars(s.PerAudit), CPU: s.CPU.Round(time.Millisecond).String(),
		Repaired: s.Events.Repaired, Audits: s.Events.Audits, Stored: "not measured",
	}
	if s.StoredBytes >= 0 {
		v.Stored = fmt.Sprintf("%s in %d objects", cost.Bytes(s.StoredBytes), s.StoredObjects)
	}
	for _, st := range s.Stages {
		u := st.Usage
		kind := "pipeline"
		if st.Healing {
			kind = "healing"
		}
		v.Stages = append(v.Stages, costRow{
			Stage: string(st.Stage), Kind: kind, Calls: u.SourceCalls, Errors: u.SourceErrors,
			Put: u.Requests[cost.Put], Get: u.Requests[cost.Get], List: u.Requests[cost.List], Delete: u.Requests[cost.Delete],
			SourceBytes: cost.Bytes(u.SourceBytes), Written: cost.Bytes(u.BytesWritten), Read: cost.Bytes(u.BytesRead),
			Busy: u.WallBusy.Round(time.Millisecond).String(), CPU: u.CPU.Round(time.Millisecond).String(),
			Source: cost.Dollars(st.Source), Requests: cost.Dollars(st.Requests), Compute: cost.Dollars(st.Compute), Total: cost.Dollars(st.Total),
		})
	}
	for _, p := range s.Periods {
		label := p.Start.In(loc).Format("2006-01-02 15:04")
		if p.End.Sub(p.Start)%(24*time.Hour) == 0 { // periods are cut at UTC midnight
			label = p.Start.UTC().Format("2006-01-02") + " (UTC day)"
		}
		v.Periods = append(v.Periods, periodRow{Period: label, Pipeline: cost.Dollars(p.Pipeline), Healing: cost.Dollars(p.Healing), Repaired: p.Repaired})
	}
	pr := s.Prices
	v.PricesNote = strings.Join([]string{
		fmt.Sprintf("PUT/LIST %s and GET %s per 1,000", cost.Dollars(pr.PutPer1000), cost.Dollars(pr.GetPer1000)),
		fmt.Sprintf("storage %s per GB-month", cost.Dollars(pr.StorageGBMonth)),
		fmt.Sprintf("CPU %s per vCPU-hour", cost.Dollars(pr.CPUHour)),
		fmt.Sprintf("source %s a month and %s a call", cost.Dollars(pr.SourceMonthly), cost.Dollars(pr.SourcePerCall)),
	}, "; ")
	return v
}
