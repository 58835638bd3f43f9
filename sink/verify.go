package sink

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/selfheal/heal"
	"golang.org/x/sync/errgroup"
)

// VerifyReport is what [Lake.Verify] found. Names are store names, sorted.
type VerifyReport struct {
	Files      int      // data files read
	Indexed    int      // files whose index entry matched their data
	Unindexed  []string // heal's files without an entry (a crash, a lost index object): entries added
	Mismatched []string // files whose entry disagreed with their data: entries replaced
	Stale      []string // entries for files that are gone (deleted behind heal's back): removed
	BadFooters []string // heal's files whose footer index disagrees with their data
	Foreign    []string // files heal did not write: never indexed, always read
	Reconciled bool     // the whole dataset was checked, holds no foreign file, and its index is now whole
}

// Verify is the deep check of the lake index: it lists the files of ds
// matching q, reads the key and time columns of every one (ignoring every
// index), and compares what they hold with the index entries and the
// footer indexes. It corrects the index (adds entries for heal's files
// that lack one, replaces entries that disagree with the data, removes
// entries for files that are gone) and reports what it found. Files that
// cannot be read are quarantined, as by Inventory.
//
// When q is the zero Query and the dataset holds only heal's files, Verify
// leaves a mark that the index is whole, which [InventoryTrusted] waits for.
// Verify reads every file: its cost is that of a full scan.
func (l *Lake) Verify(ctx context.Context, ds *heal.Dataset, q heal.Query) (*VerifyReport, error) {
	if err := ds.Validate(); err != nil {
		return nil, err
	}
	started := time.Now()
	mark := nextSeq()
	st, err := l.loadIndex(ctx, ds)
	if err != nil {
		return nil, fmt.Errorf("heal/sink: verify %s: %w", ds.Name, err)
	}
	parts, err := l.list(ctx, ds, q)
	if err != nil {
		return nil, fmt.Errorf("heal/sink: verify %s: %w", ds.Name, err)
	}
	rep := &VerifyReport{}
	var (
		mu      sync.Mutex
		entries []idxEntry
	)
	listed := make(map[partKey]map[string]bool, len(parts))
	lim := newLimiter(l.conc)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(l.conc)
	for _, pf := range parts {
		names := make(map[string]bool, len(pf.files))
		listed[partKey{pf.p.Key, pf.p.Start.Unix()}] = names
		for _, fr := range pf.files {
			names[relName(ds, fr.name)] = true
			g.Go(func() error {
				if err := lim.acquire(gctx); err != nil {
					return err
				}
				defer lim.release()
				data, err := l.inspectFile(gctx, ds, pf.p, fr.name, false)
				if errors.Is(err, heal.ErrNotFound) {
					return nil // compacted meanwhile; its successor is checked next time
				}
				if err != nil {
					var ce *corruptError
					if errors.As(err, &ce) {
						l.quarantine(gctx, ds, fr.name, err)
						return nil
					}
					return err
				}
				mu.Lock()
				defer mu.Unlock()
				rep.Files++
				if e := verifyFile(ds, pf.p, fr, data, st, rep); e != nil {
					entries = append(entries, *e)
				}
				return nil
			})
		}
	}
	if err := g.Wait(); err != nil {
		return nil, fmt.Errorf("heal/sink: verify %s: %w", ds.Name, err)
	}
	whole := q.Keys == nil && q.Window.IsZero()
	before := fmt.Sprintf("%020d", started.Add(-time.Minute).UnixNano())
	for name, f := range st.files {
		if f.seq >= before {
			continue // added after the listing began: its file may not be listed
		}
		pk := partKey{f.e.key, f.e.start}
		files, ok := listed[pk]
		if ok && files[name] || !ok && !whole && !selects(q, f.e.partition(ds)) {
			continue
		}
		rep.Stale = append(rep.Stale, ds.Name+"/"+name)
		entries = append(entries, idxEntry{op: opRemove, name: name, key: f.e.key, start: f.e.start})
	}
	l.logIndex(ctx, ds, entries)
	for _, s := range [][]string{rep.Unindexed, rep.Mismatched, rep.Stale, rep.BadFooters, rep.Foreign} {
		slices.Sort(s)
	}
	if whole && len(rep.Foreign) == 0 && ctx.Err() == nil {
		if err := l.store.Put(ctx, indexDir(ds)+reconciledPrefix+mark, nil, true); err != nil {
			return rep, fmt.Errorf("heal/sink: verify %s: %w", ds.Name, err)
		}
		rep.Reconciled = true
	}
	return rep, nil
}

// verifyFile compares what one file holds (data, read from its columns)
// with its index entry and its footer index, notes the result in rep, and
// returns the correction the index needs, if any.
func verifyFile(ds *heal.Dataset, p heal.Partition, fr fileRef, data *fileInv, st *indexState, rep *VerifyReport) *idxEntry {
	rel := relName(ds, fr.name)
	f, indexed := st.files[rel]
	if fr.seq == "" {
		rep.Foreign = append(rep.Foreign, fr.name)
		if indexed {
			rep.Mismatched = append(rep.Mismatched, fr.name)
			return &idxEntry{op: opRemove, name: rel, key: p.Key, start: p.Start.Unix()}
		}
		return nil
	}
	dups := len(data.extra) > 0
	if data.footerEnc == nil || dups || !sameSlots(ds, p, data.footerEnc, data.enc) {
		rep.BadFooters = append(rep.BadFooters, fr.name)
	}
	add := &idxEntry{op: opAdd, name: rel, key: p.Key, start: p.Start.Unix(), size: fr.size, slots: data.enc}
	switch {
	case !indexed:
		rep.Unindexed = append(rep.Unindexed, fr.name)
		if dups {
			return nil // an entry promises one row per slot
		}
		return add
	case f.e.size == fr.size && !dups && sameSlots(ds, p, f.e.slots, data.enc):
		rep.Indexed++
		return nil
	default:
		rep.Mismatched = append(rep.Mismatched, fr.name)
		if dups {
			return &idxEntry{op: opRemove, name: rel, key: p.Key, start: p.Start.Unix()}
		}
		return add
	}
}

// sameSlots reports whether two slot encodings hold the same slots of p.
func sameSlots(ds *heal.Dataset, p heal.Partition, a, b []byte) bool {
	sa, ok1 := parseSlotEnc(a)
	sb, ok2 := parseSlotEnc(b)
	if !ok1 || !ok2 {
		return false
	}
	pa, pb := newPresence(p.Window(), ds.Grain), newPresence(p.Window(), ds.Grain)
	defer pa.release()
	defer pb.release()
	na, nb := pa.add(sa), pb.add(sb)
	return na == sa.count() && nb == sb.count() && slices.Equal(pa.words, pb.words)
}

// selects reports whether q selects partition p.
func selects(q heal.Query, p heal.Partition) bool {
	return (q.Keys == nil || slices.Contains(q.Keys, p.Key)) && (q.Window.IsZero() || p.Window().Overlaps(q.Window))
}
