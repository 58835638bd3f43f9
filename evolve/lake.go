package evolve

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/selfheal/heal"
)

// Lake wraps lake so that the inventory of any major of v holds the slots
// of every major: an engine of one major audits the dataset as a whole,
// counting a slot held in another major as present, and so repairs only
// what is missing in all of them. Everything else (writes, scans, the
// ledger, compaction) goes to lake as it is; datasets that are not majors
// of v pass through untouched.
//
// The result implements [heal.MetaStore] when lake does (an engine
// requires it: its ledger lives there), and then [heal.Compactor] when
// lake does; Unwrap returns lake. It implements [heal.MajorLister], so an
// engine over it records the majors in its dataset's descriptor, and the
// heal command, which has nothing but the lake, audits them as one too.
//
// A merged inventory holds, for the query, the presence bitmaps of every
// major's partitions in memory at once (a few hundred bytes per partition
// of minutes), to deliver them in order.
func (v *Versions) Lake(lake heal.Lake) heal.Lake {
	u := &unionLake{Lake: lake, v: v}
	ms, ok := lake.(heal.MetaStore)
	if !ok {
		return u
	}
	m := &metaLake{unionLake: u, MetaStore: ms}
	if c, ok := lake.(heal.Compactor); ok {
		return &compactingLake{metaLake: m, c: c}
	}
	return m
}

type unionLake struct {
	heal.Lake
	v *Versions
}

type metaLake struct {
	*unionLake
	heal.MetaStore
}

type compactingLake struct {
	*metaLake
	c heal.Compactor
}

// Compact implements [heal.Compactor].
func (l *compactingLake) Compact(ctx context.Context, ds *heal.Dataset, q heal.Query) (int, error) {
	return l.c.Compact(ctx, ds, q)
}

// Majors implements [heal.MajorLister]: the names of v's majors, oldest
// first, when name is one of them.
func (l *unionLake) Majors(name string) []string {
	if l.v.major(name) == nil {
		return nil
	}
	out := make([]string, len(l.v.majors))
	for i, m := range l.v.majors {
		out[i] = m.Name
	}
	return out
}

// Unwrap returns the lake wrapped.
func (l *unionLake) Unwrap() heal.Lake { return l.Lake }

type partKey struct {
	key   string
	start int64
}

// Inventory implements [heal.Lake]: for a major, the union of every
// major's inventory, as partitions of ds. Rows and Files stay ds's own
// (plus one row per slot only other majors hold), so duplicates and
// compaction candidates are ds's alone.
func (l *unionLake) Inventory(ctx context.Context, ds *heal.Dataset, q heal.Query, fn func(heal.PartitionInfo) error) error {
	if l.v.major(ds.Name) == nil || len(l.v.majors) == 1 {
		return l.Lake.Inventory(ctx, ds, q, fn)
	}
	merged := map[partKey]*heal.PartitionInfo{}
	var order []partKey
	for _, m := range l.v.majors {
		own := m.Name == ds.Name
		err := l.Lake.Inventory(ctx, m, q, func(p heal.PartitionInfo) error {
			k := partKey{p.Partition.Key, p.Partition.Start.UnixNano()}
			cur := merged[k]
			if cur == nil {
				w := p.Partition.Window()
				if !q.Window.IsZero() {
					w = w.Intersect(q.Window)
				}
				cur = &heal.PartitionInfo{
					Partition: heal.Partition{Dataset: ds.Name, Key: p.Partition.Key, Start: p.Partition.Start, Period: ds.Partition},
					Present:   heal.NewSlots(w, ds.Grain),
				}
				merged[k] = cur
				order = append(order, k)
			}
			before := cur.Present.Count()
			cur.Present.Union(p.Present)
			if own {
				// ds's own rows and files; its slots others hold too were
				// counted as rows of others: take them back.
				cur.Rows += p.Rows - int64(p.Present.Count()-(cur.Present.Count()-before))
				cur.Files += p.Files
			} else {
				cur.Rows += int64(cur.Present.Count() - before)
			}
			cur.Scanned = cur.Scanned || p.Scanned
			return nil
		})
		if err != nil {
			return fmt.Errorf("heal/evolve: inventory of %s for %s: %w", m.Name, ds.Name, err)
		}
	}
	slices.SortFunc(order, func(a, b partKey) int {
		if c := strings.Compare(a.key, b.key); c != 0 {
			return c
		}
		return cmp.Compare(a.start, b.start)
	})
	for _, k := range order {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fn(*merged[k]); err != nil {
			return err
		}
		delete(merged, k)
	}
	return nil
}
