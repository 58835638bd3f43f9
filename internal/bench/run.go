package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/apache/arrow/go/v17/arrow/memory"
)

// Report is one run: the configuration, what was generated, each step's
// result, and the targets of issue 5 evaluated on them.
type Report struct {
	Config  Config   `json:"config"`
	Machine Machine  `json:"machine"`
	Truth   truth    `json:"truth"`
	Results []Result `json:"results"`
	Targets []Target `json:"targets"`
}

// Machine describes where the run happened.
type Machine struct {
	CPU        string `json:"cpu"`
	GOMAXPROCS int    `json:"gomaxprocs"`
	Go         string `json:"go"`
	Started    string `json:"started"`
}

// Target is one goal and whether the run met it.
type Target struct {
	Name   string  `json:"name"`
	Want   string  `json:"want"`
	Got    float64 `json:"got"`
	Unit   string  `json:"unit"`
	Met    bool    `json:"met"`
	Detail string  `json:"detail,omitempty"`
}

// Run runs every step of cfg, each as `exe args... -step <name>` so that
// peak memory is per step, and returns the report. Children's logs go to
// stderr. exe is normally the running command (os.Executable).
func Run(ctx context.Context, cfg Config, exe string, stderr io.Writer) (*Report, error) {
	cfg = cfg.withDefaults()
	w := newWorld(cfg)
	rep := &Report{Config: cfg, Truth: w.truth(), Machine: machine()}
	names := cfg.Steps
	if names == nil {
		names = StepNames()
	}
	for _, name := range names {
		args := append(cfg.args(), "-step", name)
		cmd := exec.CommandContext(ctx, exe, args...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, stderr
		fmt.Fprintf(stderr, "healbench: %s...\n", name)
		start := time.Now()
		if err := cmd.Run(); err != nil {
			return rep, fmt.Errorf("bench: step %s: %w", name, err)
		}
		var r Result
		if err := json.Unmarshal(out.Bytes(), &r); err != nil {
			return rep, fmt.Errorf("bench: step %s: reading its result: %w", name, err)
		}
		fmt.Fprintf(stderr, "healbench: %s done in %s\n", name, time.Since(start).Round(time.Millisecond))
		rep.Results = append(rep.Results, r)
	}
	rep.Targets = targets(rep)
	return rep, nil
}

// Load reads a report written as JSON and evaluates its targets again (with
// this version's rules), to print a saved run.
func Load(r io.Reader) (*Report, error) {
	var rep Report
	if err := json.NewDecoder(r).Decode(&rep); err != nil {
		return nil, fmt.Errorf("bench: reading a report: %w", err)
	}
	rep.Targets = targets(&rep)
	return &rep, nil
}

// RunStep runs one step in this process and writes its result as JSON to w.
func RunStep(ctx context.Context, cfg Config, name string, w io.Writer) error {
	cfg = cfg.withDefaults()
	for _, s := range steps {
		if s.name != name {
			continue
		}
		wd := newWorld(cfg)
		e := &env{cfg: cfg, w: wd, truth: wd.truth(), mem: memory.DefaultAllocator}
		runs := 1
		if s.repeat {
			runs = max(cfg.Runs, 1)
		}
		var out Result
		for i := 0; i < runs; i++ {
			r := Result{Step: name}
			if err := s.run(ctx, e, &r); err != nil {
				return fmt.Errorf("bench: %s: %w", name, err)
			}
			out = merge(out, r)
		}
		if runs > 1 {
			out.Seconds, out.Inv = median(out.Runs), median(out.invRuns)
		} else {
			out.Runs = nil
		}
		return json.NewEncoder(w).Encode(out)
	}
	return fmt.Errorf("bench: unknown step %q", name)
}

// merge folds run i of a repeated step into the result: the last run's
// counts, the first failure, the highest peaks, every run's time.
func merge(acc, r Result) Result {
	runs, inv := append(acc.Runs, r.Seconds), append(acc.invRuns, r.Inv)
	failed := acc.Failed
	if failed == "" {
		failed = r.Failed
	}
	rss, heap := max(acc.PeakRSS, r.PeakRSS), max(acc.PeakHeap, r.PeakHeap)
	acc = r
	acc.Failed, acc.PeakRSS, acc.PeakHeap, acc.Runs, acc.invRuns = failed, rss, heap, runs, inv
	return acc
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func machine() Machine {
	m := Machine{GOMAXPROCS: runtime.GOMAXPROCS(0), Go: runtime.Version(), Started: time.Now().UTC().Format(time.RFC3339)}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "model name"); ok {
				m.CPU = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	return m
}

func (r *Report) result(step string) *Result {
	for i := range r.Results {
		if r.Results[i].Step == step {
			return &r.Results[i]
		}
	}
	return nil
}

const mib = 1 << 20

// targets evaluates the goals of issue 5 on the results present.
func targets(r *Report) []Target {
	var out []Target
	floor, scan, index, trusted := r.result("floor"), r.result("audit-scan"), r.result("audit-index"), r.result("audit-trusted")
	if floor != nil && scan != nil {
		x := scan.Seconds / floor.Seconds
		out = append(out, Target{Name: "full audit time / floor time", Want: "<= 1.5", Got: x, Unit: "x", Met: x <= 1.5})
	}
	for _, ix := range []*Result{index, trusted} {
		if scan != nil && ix != nil {
			x := scan.Seconds / ix.Seconds
			out = append(out, Target{Name: "full audit time / " + ix.Step + " time", Want: ">= 50", Got: x, Unit: "x", Met: x >= 50,
				Detail: fmt.Sprintf("inventory alone: %.0fx", scan.Inv/ix.Inv)})
		}
	}
	if in, bare := r.result("ingest"), r.result("bare"); in != nil && bare != nil {
		x := (float64(in.Rows) / in.Seconds) / (float64(bare.Rows) / bare.Seconds)
		t := Target{Name: "ingest rows/s / bare pqarrow rows/s", Want: ">= 0.7", Got: x, Unit: "x", Met: x >= 0.7}
		if bs := r.result("bare-sync"); bs != nil {
			t.Detail = fmt.Sprintf("%.2fx a bare write synced as DirStore syncs", (float64(in.Rows)/in.Seconds)/(float64(bs.Rows)/bs.Seconds))
		}
		out = append(out, t)
	}
	if rs := r.result("resynth"); rs != nil {
		k := float64(r.Config.RepairHours)
		out = append(out, Target{Name: "windows recomputed after repairing k symbol-hours", Want: fmt.Sprintf("== k = %d", r.Config.RepairHours),
			Got: float64(rs.Windows), Unit: "", Met: float64(rs.Windows) == k && rs.Failed == ""})
		if full := r.result("resynth-full"); full != nil && full.Windows > 0 {
			out[len(out)-1].Detail = fmt.Sprintf("%s of the full recompute's %s windows, in %.2g of its time", thousands(rs.Windows), thousands(full.Windows), rs.Seconds/full.Seconds)
		}
	}
	if scan != nil {
		x := float64(scan.PeakRSS) / mib
		out = append(out, Target{Name: "peak RSS of the full audit", Want: "<= 256", Got: x, Unit: "MiB", Met: x <= 256})
	}
	if rp := r.result("repair"); rp != nil && r.Truth.HoleHours > 0 {
		x := float64(rp.Calls) / float64(r.Truth.HoleHours)
		out = append(out, Target{Name: "repair source calls per symbol-hour with holes", Want: "<= 1", Got: x, Unit: "", Met: x <= 1})
	}
	return out
}

// WriteTable prints the report as one table and the targets.
func (r *Report) WriteTable(w io.Writer) error {
	c := r.Config
	fmt.Fprintf(w, "heal benchmark: %d symbols x %d trading days = %s slots; %s rows stored (%s missing slots, %s duplicated rows; %s symbol-hours with holes)\n",
		c.Symbols, c.Days, thousands(r.Truth.Expected), thousands(r.Truth.Rows), thousands(r.Truth.Missing), thousands(r.Truth.Duplicates), thousands(r.Truth.HoleHours))
	fmt.Fprintf(w, "seed %d, gap rate %.4g, dup rate %.4g, concurrency %d; %s, GOMAXPROCS %d, %s\n", c.Seed, c.GapRate, c.DupRate, c.Concurrency, r.Machine.CPU, r.Machine.GOMAXPROCS, r.Machine.Go)
	fmt.Fprintf(w, "times: the median of %d runs for the steps that can be repeated (each run's times below), one run for the others\n\n", max(c.Runs, 1))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "step\ttime\trows/s\tfiles\tparts\tmissing\tdups\tcalls\twindows\tpeak RSS\tpeak heap\t")
	for _, x := range r.Results {
		rate := ""
		if x.Rows > 0 && x.Seconds > 0 && (x.Step == "ingest" || strings.HasPrefix(x.Step, "bare") || x.Step == "floor") {
			rate = thousands(int64(float64(x.Rows) / x.Seconds))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%.0f MiB\t%.0f MiB\t\n", x.Step, secs(x.Seconds), rate,
			blank(x.Files), blank(x.Parts), blank(x.Missing), blank(x.Dups), blank(x.Calls), blank(x.Windows),
			float64(x.PeakRSS)/mib, float64(x.PeakHeap)/mib)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	for _, x := range r.Results {
		var notes []string
		if len(x.Runs) > 1 {
			var rs []string
			for _, v := range x.Runs {
				rs = append(rs, secs(v))
			}
			notes = append(notes, "runs "+strings.Join(rs, " "))
		}
		if x.Inv > 0 {
			notes = append(notes, fmt.Sprintf("Lake.Inventory alone %s", secs(x.Inv)))
		}
		if x.Note != "" {
			notes = append(notes, x.Note)
		}
		if x.Failed != "" {
			notes = append(notes, "CHECK FAILED: "+x.Failed)
		}
		if len(notes) > 0 {
			fmt.Fprintf(w, "  %-14s %s\n", x.Step+":", strings.Join(notes, "; "))
		}
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "target\twant\tgot\t\t")
	for _, t := range r.Targets {
		met := "MET"
		if !t.Met {
			met = "MISSED"
		}
		got := fmt.Sprintf("%.3g%s", t.Got, t.Unit)
		if t.Unit == "MiB" {
			got = fmt.Sprintf("%.0f MiB", t.Got)
		}
		fmt.Fprintf(tw, "%s\t%s%s\t%s\t%s\t%s\n", t.Name, t.Want, strings.TrimPrefix(" "+t.Unit, " x"), got, met, t.Detail)
	}
	return tw.Flush()
}

func secs(s float64) string {
	switch {
	case s == 0:
		return ""
	case s < 1:
		return fmt.Sprintf("%.1fms", s*1000)
	default:
		return fmt.Sprintf("%.2fs", s)
	}
}

func blank(n int64) string {
	if n == 0 {
		return ""
	}
	return thousands(n)
}

// thousands renders n with thousands separators.
func thousands(n int64) string {
	s := fmt.Sprint(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}
