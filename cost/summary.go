package cost

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/selfheal/heal"
)

// Load returns the records a [Meter] kept in meta for dataset whose
// interval ends within w (the zero Window: all), oldest first. Records
// outside w are skipped by name, without reading them.
func Load(ctx context.Context, meta heal.MetaStore, dataset string, w heal.Window) ([]Record, error) {
	prefix := recordPrefix(dataset)
	names, err := meta.ListMeta(ctx, prefix)
	if err != nil {
		return nil, fmt.Errorf("heal/cost: list records of %q: %w", dataset, err)
	}
	var out []Record
	for _, n := range names {
		base := strings.TrimPrefix(n, prefix)
		ts, _, ok := strings.Cut(base, "-")
		if !ok || !strings.HasSuffix(base, ".json") {
			continue
		}
		ns, err := strconv.ParseInt(ts, 10, 64)
		if err != nil {
			continue
		}
		if end := time.Unix(0, ns); !w.IsZero() && (end.Before(w.Start) || end.After(w.End)) {
			continue
		}
		b, err := meta.GetMeta(ctx, n)
		if err != nil {
			return nil, fmt.Errorf("heal/cost: read %s: %w", n, err)
		}
		var r Record
		if err := json.Unmarshal(b, &r); err != nil {
			return nil, fmt.Errorf("heal/cost: decode %s: %w", n, err)
		}
		out = append(out, r)
	}
	slices.SortStableFunc(out, func(a, b Record) int { return a.End.Compare(b.End) })
	return out, nil
}

// IsHealing reports whether work in stage s is the cost of healing (the
// audit, the repairs, the resynthesis) rather than of running the pipeline
// (the live path, compaction, anything else).
func IsHealing(s heal.Stage) bool {
	return s == heal.StageAudit || s == heal.StageRepair || s == heal.StageResynth
}

// stageOrder is the display order: the pipeline's stages, then healing's.
var stageOrder = []heal.Stage{heal.StageAcquire, heal.StageCompaction, heal.StageLakeWrite, StageOther,
	heal.StageAudit, heal.StageRepair, heal.StageResynth}

func stageRank(s heal.Stage) int {
	if i := slices.Index(stageOrder, s); i >= 0 {
		return i
	}
	return len(stageOrder)
}

// StageCost is one stage's usage over a [Summary] and what it cost.
type StageCost struct {
	Stage    heal.Stage
	Healing  bool // see IsHealing
	Usage    Usage
	Source   float64 // source calls and the subscription's share
	Requests float64 // lake requests
	Compute  float64 // CPU
	Total    float64
}

// Period is the cost of one period of a [Summary].
type Period struct {
	Start, End time.Time
	Pipeline   float64 // running the pipeline, storage included
	Healing    float64
	Repaired   int64 // slots repaired
	Records    int
}

// Summary prices a run of [Record]s.
type Summary struct {
	Dataset    string
	Start, End time.Time
	Records    int
	Prices     Prices
	Stages     []StageCost // pipeline stages first, then healing's
	CPU        time.Duration
	Events     Events
	// StoredBytes is the last measured size of the pipeline's storage; -1
	// if never measured.
	StoredBytes   int64
	StoredObjects int64
	Storage       float64 // storage over the records' intervals
	Pipeline      float64 // running the pipeline: its stages and storage
	Healing       float64 // healing it: audits, repairs, resynthesis
	Total         float64
	// PerRepair is the cost of healing per slot repaired, and PerAudit per
	// heal cycle (0 when there were none).
	PerRepair float64
	PerAudit  float64
	Periods   []Period
}

// Summarize prices recs (of one dataset) with p, with periods of length per
// (<=0: a day) by the end of each record. Storage is charged for each
// record's interval at the size measured at its end (or the last size
// measured before); a source subscription for each interval, split
// between the stages by their share of its calls (all to the live path
// when there were none).
func Summarize(recs []Record, p Prices, per time.Duration) *Summary {
	if per <= 0 {
		per = 24 * time.Hour
	}
	s := &Summary{Prices: p, Records: len(recs), StoredBytes: -1}
	byStage := map[heal.Stage]*StageCost{}
	stage := func(st heal.Stage) *StageCost {
		c := byStage[st]
		if c == nil {
			c = &StageCost{Stage: st, Healing: IsHealing(st)}
			byStage[st] = c
		}
		return c
	}
	periods := map[int64]*Period{}
	for _, r := range recs {
		if s.Dataset == "" {
			s.Dataset = r.Dataset
		}
		if s.Start.IsZero() || r.Start.Before(s.Start) {
			s.Start = r.Start
		}
		if r.End.After(s.End) {
			s.End = r.End
		}
		s.CPU += r.CPU
		s.Events.Add(r.Events)
		if r.StoredBytes >= 0 {
			s.StoredBytes, s.StoredObjects = r.StoredBytes, r.StoredObjects
		}
		ps := r.End.UTC().Truncate(per)
		pd := periods[ps.UnixNano()]
		if pd == nil {
			pd = &Period{Start: ps, End: ps.Add(per)}
			periods[ps.UnixNano()] = pd
		}
		pd.Records++
		pd.Repaired += r.Events.Repaired
		span := r.End.Sub(r.Start)
		if span < 0 {
			span = 0
		}
		if s.StoredBytes > 0 {
			c := float64(s.StoredBytes) / (1 << 30) * p.StorageGBMonth * span.Hours() / 730
			s.Storage += c
			pd.Pipeline += c
		}
		sub := p.SourceMonthly * span.Hours() / (30 * 24)
		var calls int64
		for _, u := range r.Stages {
			calls += u.SourceCalls
		}
		if calls == 0 && sub > 0 {
			c := stage(heal.StageAcquire)
			c.Source += sub
			pd.Pipeline += sub
		}
		for st, u := range r.Stages {
			c := stage(st)
			c.Usage.Add(u)
			src := float64(u.SourceCalls) * p.SourcePerCall
			if calls > 0 {
				src += sub * float64(u.SourceCalls) / float64(calls)
			}
			req := p.requests(u.Requests)
			cpu := u.CPU.Hours() * p.CPUHour
			c.Source += src
			c.Requests += req
			c.Compute += cpu
			if c.Healing {
				pd.Healing += src + req + cpu
			} else {
				pd.Pipeline += src + req + cpu
			}
		}
	}
	for _, c := range byStage {
		c.Total = c.Source + c.Requests + c.Compute
		if c.Healing {
			s.Healing += c.Total
		} else {
			s.Pipeline += c.Total
		}
		s.Stages = append(s.Stages, *c)
	}
	slices.SortFunc(s.Stages, func(a, b StageCost) int {
		if d := stageRank(a.Stage) - stageRank(b.Stage); d != 0 {
			return d
		}
		return strings.Compare(string(a.Stage), string(b.Stage))
	})
	s.Pipeline += s.Storage
	s.Total = s.Pipeline + s.Healing
	if s.Events.Repaired > 0 {
		s.PerRepair = s.Healing / float64(s.Events.Repaired)
	}
	if s.Events.Audits > 0 {
		s.PerAudit = s.Healing / float64(s.Events.Audits)
	}
	for _, pd := range periods {
		s.Periods = append(s.Periods, *pd)
	}
	slices.SortFunc(s.Periods, func(a, b Period) int { return a.Start.Compare(b.Start) })
	return s
}

// Dollars formats an amount of US dollars with enough digits to tell small
// amounts apart: $12.34, $0.0123, $0.000012.
func Dollars(v float64) string {
	switch {
	case v == 0:
		return "$0"
	case v >= 1 || v <= -1:
		return fmt.Sprintf("$%.2f", v)
	case v >= 0.01 || v <= -0.01:
		return fmt.Sprintf("$%.4f", v)
	}
	d := min(12, 2-int(math.Floor(math.Log10(math.Abs(v)))))
	return fmt.Sprintf("$%.*f", d, v)
}

// Bytes formats a byte count with a binary unit: 512 B, 1.5 KiB, 3.2 MiB.
func Bytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
