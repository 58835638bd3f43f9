package heal

import (
	"context"
	"fmt"
	"time"

	"github.com/selfheal/heal/internal/span"
)

// AuditReport is what an audit found in a window: per key, the slots the
// rule expects, those present, and the gaps, coalesced into ranges.
type AuditReport struct {
	Window     Window
	Keys       []KeyAudit
	Duplicates int64       // stored rows beyond one per (key, time)
	Crowded    []Partition // partitions holding duplicates or several files: compaction candidates
}

// KeyAudit is one key's share of an [AuditReport].
type KeyAudit struct {
	Key      string
	Expected int      // slots the rule expects
	Present  int      // expected slots held
	Empty    int      // expected slots the source confirmed empty
	Missing  int      // expected slots neither held nor confirmed empty
	Gaps     []Window // the missing slots, coalesced
}

// Completeness is the share of expected slots held or confirmed empty.
func (k KeyAudit) Completeness() float64 {
	if k.Expected == 0 {
		return 1
	}
	return float64(k.Present+k.Empty) / float64(k.Expected)
}

type keyAudit struct {
	expected span.Set
	present  span.Set // every slot held, expected or not
	empty    span.Set // confirmed empty (ledger), within the window
	missing  span.Set
}

type auditResult struct {
	w       Window
	keys    map[string]*keyAudit
	dups    int64
	crowded []Partition
}

// audit compares the lake with the rule over w for the engine's keys. It
// reads only the lake's inventory (the write-time presence index) and the
// ledger, not the data.
func (e *Engine) audit(ctx context.Context, w Window) (*auditResult, error) {
	a := &auditResult{w: w, keys: make(map[string]*keyAudit, len(e.opts.Keys))}
	present := make(map[string][]span.Range, len(e.opts.Keys))
	err := e.lake.Inventory(ctx, e.ds, Query{Keys: e.opts.Keys, Window: w}, func(p PartitionInfo) error {
		present[p.Partition.Key] = p.Present.appendRuns(present[p.Partition.Key])
		if d := p.Duplicates(); d > 0 || p.Files > 1 {
			a.dups += d
			a.crowded = append(a.crowded, p.Partition)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("heal: audit %s: inventory: %w", w, err)
	}
	wr := span.Range{Lo: e.idx(w.Start), Hi: e.idx(w.End)}
	e.ledger.view(func(st *ledgerState) {
		for _, k := range e.opts.Keys {
			ka := &keyAudit{expected: e.toSet(e.opts.Rule.Expected(k, w, e.ds.Grain)).Clip(wr)}
			ka.present = span.Normalize(present[k])
			var empty []int64
			for i, s := range st.Slots[k] {
				if s.Status == slotEmpty && i >= wr.Lo && i < wr.Hi {
					empty = append(empty, i)
				}
			}
			sortInt64(empty)
			ka.empty = span.Subtract(span.FromSorted(empty), ka.present)
			ka.missing = span.Subtract(span.Subtract(ka.expected, ka.present), ka.empty)
			a.keys[k] = ka
		}
	})
	return a, nil
}

// Audit compares the lake with the rule over w, read-only: nothing is
// fetched, written or recorded.
func (e *Engine) Audit(ctx context.Context, w Window) (*AuditReport, error) {
	ctx = withStage(ctx, StageAudit)
	if err := e.ledger.load(ctx); err != nil {
		return nil, err
	}
	w = w.Align(e.ds.Grain)
	a, err := e.audit(ctx, w)
	if err != nil {
		return nil, err
	}
	r := &AuditReport{Window: w, Duplicates: a.dups, Crowded: a.crowded}
	for _, k := range e.opts.Keys {
		ka := a.keys[k]
		x := KeyAudit{
			Key:      k,
			Expected: int(ka.expected.Count()),
			Present:  int(span.Intersect(ka.expected, ka.present).Count()),
			Empty:    int(span.Intersect(ka.expected, ka.empty).Count()),
			Missing:  int(ka.missing.Count()),
		}
		if len(ka.missing) > 0 {
			x.Gaps = make([]Window, 0, len(ka.missing))
		}
		for _, g := range ka.missing {
			x.Gaps = append(x.Gaps, e.window(g))
		}
		r.Keys = append(r.Keys, x)
	}
	return r, nil
}

// Status is one key's completeness over one period, as [Engine.Status]
// reports it: what the rule expects, what is held, and what heal did.
type Status struct {
	Key          string
	Window       Window
	Expected     int   // slots the rule expects
	Present      int   // expected slots held now, repaired ones included
	Repaired     int   // expected slots heal filled by repair
	Empty        int   // expected slots the source confirmed empty
	Unrepairable int   // expected slots heal gave up on (alarmed)
	Duplicates   int64 // stored copies beyond one, in partitions starting in this period
}

// Missing is what is neither held nor confirmed empty.
func (s Status) Missing() int { return s.Expected - s.Present - s.Empty }

// Status reports, per key and per period of length per within w (e.g. per
// hour), what the rule expects and what the lake and the ledger hold. It is
// read-only.
func (e *Engine) Status(ctx context.Context, w Window, per time.Duration) ([]Status, error) {
	if per < e.ds.Grain {
		per = e.ds.Grain
	}
	ctx = withStage(ctx, StageAudit)
	if err := e.ledger.load(ctx); err != nil {
		return nil, err
	}
	w = w.Align(per)
	a, err := e.audit(ctx, w)
	if err != nil {
		return nil, err
	}
	dups := map[string]map[int64]int64{}
	if err := e.lake.Inventory(ctx, e.ds, Query{Keys: e.opts.Keys, Window: w}, func(p PartitionInfo) error {
		if d := p.Duplicates(); d > 0 {
			if dups[p.Partition.Key] == nil {
				dups[p.Partition.Key] = map[int64]int64{}
			}
			dups[p.Partition.Key][p.Partition.Start.UnixNano()/int64(per)] += d
		}
		return nil
	}); err != nil {
		return nil, err
	}
	var out []Status
	e.ledger.view(func(st *ledgerState) {
		for _, k := range e.opts.Keys {
			ka := a.keys[k]
			var rep, unrep []int64
			for i, s := range st.Slots[k] {
				switch s.Status {
				case slotRepaired:
					rep = append(rep, i)
				case slotUnrepairable:
					unrep = append(unrep, i)
				}
			}
			sortInt64(rep)
			sortInt64(unrep)
			repaired := span.Intersect(span.FromSorted(rep), ka.present)
			unrepairable := span.Subtract(span.FromSorted(unrep), ka.present)
			for s := w.Start; s.Before(w.End); s = s.Add(per) {
				r := span.Range{Lo: e.idx(s), Hi: e.idx(s.Add(per))}
				exp := ka.expected.Clip(r)
				out = append(out, Status{
					Key: k, Window: Window{s, s.Add(per)},
					Expected:     int(exp.Count()),
					Present:      int(span.Intersect(exp, ka.present).Count()),
					Repaired:     int(span.Intersect(exp, repaired).Count()),
					Empty:        int(span.Intersect(exp, ka.empty).Count()),
					Unrepairable: int(span.Intersect(exp, unrepairable).Count()),
					Duplicates:   dups[k][s.UnixNano()/int64(per)],
				})
			}
		}
	})
	return out, nil
}

// Audits returns the audits the ledger remembers (the last thousand),
// oldest first.
func (e *Engine) Audits(ctx context.Context) ([]AuditRecord, error) {
	if err := e.ledger.load(ctx); err != nil {
		return nil, err
	}
	var out []AuditRecord
	e.ledger.view(func(st *ledgerState) { out = append(out, st.Audits...) })
	return out, nil
}

// Alarms returns the alarms the ledger holds, resolved ones included, by
// the time they were raised (Alarm.At).
func (e *Engine) Alarms(ctx context.Context) ([]Alarm, error) {
	if err := e.ledger.load(ctx); err != nil {
		return nil, err
	}
	var out []Alarm
	e.ledger.view(func(st *ledgerState) {
		for _, a := range st.Alarms {
			x := e.alarmOf(a, a.Resolved)
			x.At = a.At // when it was raised, not now
			out = append(out, x)
		}
	})
	sortAlarms(out)
	return out, nil
}
