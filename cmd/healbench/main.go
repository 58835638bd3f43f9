// Command healbench measures heal on a generated lake of minute bars: ingest
// against a bare pqarrow write, the audit against the floor of reading
// every file's time column, the audit from the lake index, repair,
// compaction and resynthesis, with the peak memory of each step, and checks
// the targets of BENCHMARKS.md.
//
//	go run ./cmd/healbench                          # 11 symbols x 20 trading days
//	go run ./cmd/healbench -symbols 500 -days 60    # ~11.7 million slots
//	go run ./cmd/healbench -json bench.json         # also write the report as JSON
//	go run ./cmd/healbench -render bench.json       # print a saved report again
//
// It exits 0 when every target is met, 1 on an error, 2 when a target is
// missed or a check failed.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"runtime/pprof"

	"github.com/selfheal/heal/internal/bench"
)

func main() { os.Exit(run()) }

func run() int {
	log.SetFlags(0)
	cfg := bench.DefaultConfig()
	fs := flag.NewFlagSet("healbench", flag.ExitOnError)
	cfg.Flags(fs)
	jsonOut := fs.String("json", "", "also write the report as JSON to this file")
	keep := fs.Bool("keep", false, "keep the generated lakes (when -dir is not given)")
	step := fs.String("step", "", "run one step in this process and print its result as JSON (used by the command itself)")
	cpuprofile := fs.String("cpuprofile", "", "with -step: write a CPU profile of the step to this file")
	render := fs.String("render", "", "print the table of a report saved with -json, and exit")
	fs.Parse(os.Args[1:])

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	if *render != "" {
		f, err := os.Open(*render)
		if err != nil {
			log.Printf("healbench: %v", err)
			return 1
		}
		defer f.Close()
		rep, err := bench.Load(f)
		if err == nil {
			err = rep.WriteTable(os.Stdout)
		}
		if err != nil {
			log.Printf("healbench: %v", err)
			return 1
		}
		return 0
	}
	if *step != "" {
		if *cpuprofile != "" {
			f, err := os.Create(*cpuprofile)
			if err != nil {
				log.Printf("healbench: %v", err)
				return 1
			}
			defer f.Close()
			if err := pprof.StartCPUProfile(f); err != nil {
				log.Printf("healbench: %v", err)
				return 1
			}
			defer pprof.StopCPUProfile()
		}
		if err := bench.RunStep(ctx, cfg, *step, os.Stdout); err != nil {
			log.Printf("healbench: %v", err)
			return 1
		}
		return 0
	}
	if cfg.Dir == "" {
		dir, err := os.MkdirTemp("", "healbench-")
		if err != nil {
			log.Printf("healbench: %v", err)
			return 1
		}
		cfg.Dir = dir
		if !*keep {
			defer os.RemoveAll(dir)
		}
	}
	exe, err := os.Executable()
	if err != nil {
		log.Printf("healbench: %v", err)
		return 1
	}
	rep, err := bench.Run(ctx, cfg, exe, os.Stderr)
	if rep != nil && len(rep.Results) > 0 {
		if werr := rep.WriteTable(os.Stdout); werr != nil {
			log.Printf("healbench: %v", werr)
		}
		if *jsonOut != "" {
			b, _ := json.MarshalIndent(rep, "", "  ")
			if werr := os.WriteFile(*jsonOut, append(b, '\n'), 0o644); werr != nil {
				log.Printf("healbench: %v", werr)
			}
		}
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "healbench: %v\n", err)
		return 1
	}
	for _, t := range rep.Targets {
		if !t.Met {
			return 2
		}
	}
	for _, r := range rep.Results {
		if r.Failed != "" {
			return 2
		}
	}
	return 0
}
