// Package bench is heal's benchmark harness: it generates a Hive-partitioned
// lake of minute bars with seeded gaps and duplicates through the library's
// own Lake, then measures, side by side in one run, ingest against a bare
// pqarrow write, the audit against the floor of reading the time column,
// the audit from the lake index, repair, compaction and resynthesis, with
// the peak memory of each step. The command is cmd/healbench; BENCHMARKS.md
// holds the results and the targets.
//
// Each step runs in its own process (the command runs itself with -step),
// so that peak memory is per step and no step warms another's heap.
package bench

import (
	"flag"
	"fmt"
	"runtime"
	"strings"
)

// Config is one benchmark run.
type Config struct {
	Dir         string   // where the lakes are generated; the lake is dir/lake, the bare copy dir/bare
	Symbols     int      // S symbols
	Days        int      // D trading days of the US session (390 minutes each)
	GapRate     float64  // probability that a slot is missing
	DupRate     float64  // probability that a present slot is stored twice
	Seed        int64    // everything generated is a function of it
	Concurrency int      // the lake's and the engine's, and the bare writer's and the floor's; <=0: GOMAXPROCS*2
	RepairHours int      // k: symbol-hours punched for the resynthesis step
	Runs        int      // how many times each repeatable step runs (the median is reported); <=0: 1
	Steps       []string // the steps to run, in order; nil: all
}

// DefaultConfig is the small size of BENCHMARKS.md.
func DefaultConfig() Config {
	return Config{Symbols: 11, Days: 20, GapRate: 1.0 / 11, DupRate: 0.001, Seed: 1, RepairHours: 10, Runs: 3}
}

// Flags registers cfg's fields on fs.
func (c *Config) Flags(fs *flag.FlagSet) {
	fs.StringVar(&c.Dir, "dir", c.Dir, "directory for the generated lakes (default: a temporary directory, removed at the end)")
	fs.IntVar(&c.Symbols, "symbols", c.Symbols, "symbols")
	fs.IntVar(&c.Days, "days", c.Days, "trading days")
	fs.Float64Var(&c.GapRate, "gap", c.GapRate, "probability that a slot is missing (the glitch: 1/11)")
	fs.Float64Var(&c.DupRate, "dup", c.DupRate, "probability that a present slot is stored twice")
	fs.Int64Var(&c.Seed, "seed", c.Seed, "seed of everything generated")
	fs.IntVar(&c.Concurrency, "conc", c.Concurrency, "concurrency of the lake, the engine, the bare writer and the floor (0: 2*GOMAXPROCS)")
	fs.IntVar(&c.RepairHours, "k", c.RepairHours, "symbol-hours punched for the resynthesis step")
	fs.IntVar(&c.Runs, "runs", c.Runs, "runs of each step that can be repeated (ingest, bare, floor, audits, verify); the median is reported")
	fs.Func("steps", "comma-separated steps to run (default: all): "+strings.Join(StepNames(), ","), func(s string) error {
		c.Steps = strings.Split(s, ",")
		for _, name := range c.Steps {
			if !validStep(name) {
				return fmt.Errorf("unknown step %q", name)
			}
		}
		return nil
	})
}

// args renders c as the flags Flags parses.
func (c *Config) args() []string {
	return []string{
		"-dir", c.Dir,
		"-symbols", fmt.Sprint(c.Symbols), "-days", fmt.Sprint(c.Days),
		"-gap", fmt.Sprint(c.GapRate), "-dup", fmt.Sprint(c.DupRate),
		"-seed", fmt.Sprint(c.Seed), "-conc", fmt.Sprint(c.Concurrency), "-k", fmt.Sprint(c.RepairHours),
		"-runs", fmt.Sprint(c.Runs),
	}
}

func (c *Config) withDefaults() Config {
	o := *c
	if o.Concurrency <= 0 {
		o.Concurrency = 2 * runtime.GOMAXPROCS(0)
	}
	if o.RepairHours <= 0 {
		o.RepairHours = 10
	}
	return o
}

// StepNames lists the steps in the order they run.
func StepNames() []string {
	var out []string
	for _, s := range steps {
		out = append(out, s.name)
	}
	return out
}

func validStep(name string) bool {
	for _, s := range steps {
		if s.name == name {
			return true
		}
	}
	return false
}
