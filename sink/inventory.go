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

// InventoryMode says where [Lake.Inventory] learns which slots each data
// file holds. The zero value is [InventoryListed].
type InventoryMode int

const (
	// InventoryListed lists the data files (one listing of the dataset, of
	// its keys or of its partitions, whichever is fewer requests) and takes
	// each file's slots from the lake index when an entry matches the
	// file's name and size; only files without one are opened, and read
	// from their footer index, or their data. It sees every file, whoever
	// wrote it, and records in the index what it had to read, so the next
	// inventory need not.
	InventoryListed InventoryMode = iota
	// InventoryTrusted answers from the lake index alone, without listing
	// the data, once [Lake.Verify] has found the index whole for the
	// dataset (until then it works as InventoryListed). It is for lakes
	// that only heal writes: a file dropped in by another tool, or left
	// without its entry by a crash, is not seen until the next Verify, and a
	// file deleted behind heal's back is still reported.
	InventoryTrusted
	// InventoryFooters lists the data files and reads the footer index of
	// each, ignoring the lake index: the behaviour before there was one.
	InventoryFooters
	// InventoryScan lists the data files and reads the key and time columns
	// of each, ignoring every index: the ground truth, and the full audit
	// the benchmark compares the index with.
	InventoryScan
)

// String returns the mode's name: listed, trusted, footers or scan.
func (m InventoryMode) String() string {
	switch m {
	case InventoryListed:
		return "listed"
	case InventoryTrusted:
		return "trusted"
	case InventoryFooters:
		return "footers"
	case InventoryScan:
		return "scan"
	}
	return fmt.Sprintf("InventoryMode(%d)", int(m))
}

// Inventory implements [heal.Lake]. It calls fn for each stored partition
// of ds matching q that holds rows in q.Window, in the order of Scan, from
// one goroutine. How it learns what the files hold is Options.Inventory
// ([InventoryListed] by default): from the lake index, from each file's
// footer, or from the key and time columns, the only columns ever read. A
// partition one of whose files had no usable index is reported Scanned.
// Files are read in parallel, up to Options.Concurrency at once, across
// files and partitions (results are still delivered in order).
func (l *Lake) Inventory(ctx context.Context, ds *heal.Dataset, q heal.Query, fn func(heal.PartitionInfo) error) error {
	if err := ds.Validate(); err != nil {
		return err
	}
	var st *indexState
	mode := l.inv
	if mode == InventoryTrusted {
		var err error
		if st, err = l.loadIndex(ctx, ds); err != nil {
			return fmt.Errorf("heal/sink: inventory %s: %w", ds.Name, err)
		}
		done, err := l.inventoryTrusted(ctx, ds, q, st, nil, fn)
		if done || err != nil {
			return err
		}
		mode = InventoryListed
	}
	return l.inventoryListed(ctx, ds, q, mode, st, nil, fn)
}

// InventorySince is Inventory restricted to the partitions that changed
// since mark, a value it returned before ("" for the first call, which
// inventories everything q selects). It returns the mark to pass next
// time, so an audit that runs every hour only revisits the partitions
// heal wrote, repaired or compacted since the previous one.
//
// Changes are read from the lake index: files written by other tools, or
// deleted behind heal's back, do not count as changes (a plain Inventory
// sees them). A mark older than twelve hours, or an index that could not
// be read whole, gives a full inventory. Marks come from the writers'
// clocks: changes committed within a minute before the mark are reported
// again.
func (l *Lake) InventorySince(ctx context.Context, ds *heal.Dataset, q heal.Query, mark string, fn func(heal.PartitionInfo) error) (string, error) {
	if err := ds.Validate(); err != nil {
		return mark, err
	}
	if mark != "" && seqOf(mark+fileExt) == "" {
		return mark, fmt.Errorf("heal/sink: inventory %s: bad mark %q", ds.Name, mark)
	}
	st, err := l.loadIndex(ctx, ds)
	if err != nil {
		return mark, fmt.Errorf("heal/sink: inventory %s: %w", ds.Name, err)
	}
	next := max(mark, st.maxSeq)
	var only map[partKey]bool
	if mark != "" && st.complete && time.Since(seqTime(mark)) < indexRetention/2 {
		only = st.changedSince(fmt.Sprintf("%020d-ffffffff", seqTime(mark).Add(-markSlack).UnixNano()))
		if len(only) == 0 {
			return next, nil
		}
	}
	if l.inv == InventoryTrusted {
		done, err := l.inventoryTrusted(ctx, ds, q, st, only, fn)
		if done || err != nil {
			return next, err
		}
	}
	mode := l.inv
	if mode == InventoryTrusted {
		mode = InventoryListed
	}
	return next, l.inventoryListed(ctx, ds, q, mode, st, only, fn)
}

// markSlack is how far before a mark InventorySince looks again, for
// writers whose clocks run behind, or whose index object was in flight.
var markSlack = time.Minute

// inventoryTrusted answers from the index alone. It reports false, having
// called fn for nothing, when the index is not fit for that: never
// reconciled, read in part, or holding an entry that does not parse.
func (l *Lake) inventoryTrusted(ctx context.Context, ds *heal.Dataset, q heal.Query, st *indexState, only map[partKey]bool, fn func(heal.PartitionInfo) error) (bool, error) {
	if st.reconciled == "" || !st.complete {
		return false, nil
	}
	keys := keySet(q.Keys)
	type part struct {
		p    heal.Partition
		invs []*fileInv
	}
	var (
		parts   []part
		lastKey string
		keyOK   bool
	)
	for _, entries := range st.byPartition() {
		e0 := entries[0]
		pk := partKey{e0.key, e0.start}
		if keys != nil && !keys[pk.key] || only != nil && !only[pk] {
			continue
		}
		if e0.key != lastKey || parts == nil {
			lastKey, keyOK = e0.key, heal.ValidKey(e0.key) == nil
		}
		if !keyOK {
			continue
		}
		p := e0.partition(ds)
		if !q.Window.IsZero() && !p.Window().Overlaps(q.Window) {
			continue
		}
		invs := make([]*fileInv, len(entries))
		fis := make([]fileInv, len(entries))
		for i, e := range entries {
			if !e.valid(ds) {
				l.log.Warn("heal/sink: unusable index entry; listing the dataset instead", "dataset", ds.Name, "file", e.name)
				return false, nil
			}
			fis[i].enc = e.slots
			invs[i] = &fis[i]
		}
		parts = append(parts, part{p, invs})
		if len(parts) == 1 && cap(parts) < 64 {
			parts = slices.Grow(parts, 1024)
		}
	}
	for i, pt := range parts {
		if i%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return true, fmt.Errorf("heal/sink: inventory %s: %w", ds.Name, err)
			}
		}
		info := partitionInfo(ds, pt.p, q.Window, pt.invs)
		if info.Rows == 0 {
			continue
		}
		if err := fn(info); err != nil {
			return true, err
		}
	}
	return true, nil
}

// inventoryListed lists the files and learns what each holds, from the
// index st (loaded here when mode is InventoryListed and st is nil), its
// footer or its data, as mode says. only, when not nil, restricts it to
// those partitions.
func (l *Lake) inventoryListed(ctx context.Context, ds *heal.Dataset, q heal.Query, mode InventoryMode, st *indexState, only map[partKey]bool, fn func(heal.PartitionInfo) error) error {
	started := time.Now()
	if mode == InventoryListed && st == nil {
		// The index is read before the data is listed, so that an entry
		// whose file is not listed means the file is gone.
		var err error
		if st, err = l.loadIndex(ctx, ds); err != nil {
			return fmt.Errorf("heal/sink: inventory %s: %w", ds.Name, err)
		}
	}
	if mode != InventoryListed {
		st = nil
	}
	parts, err := l.listWith(ctx, ds, q, only)
	if err != nil {
		return fmt.Errorf("heal/sink: inventory %s: %w", ds.Name, err)
	}
	rec := &reconciler{st: st, started: started}
	if st != nil {
		rec.listed = make(map[partKey]bool, len(parts))
	}
	defer l.reconcile(ctx, ds, rec) // ctx as it is now, not the canceled one below

	// What the index already says, file by file; nil where a file must be read.
	nfiles := 0
	for _, pf := range parts {
		nfiles += len(pf.files)
	}
	known := make([][]*fileInv, len(parts))
	ptrs := make([]*fileInv, nfiles)
	var slab []fileInv
	if st != nil {
		slab = make([]fileInv, 0, nfiles)
	}
	need := make([]bool, len(parts))
	for i, pf := range parts {
		known[i], ptrs = ptrs[:len(pf.files):len(pf.files)], ptrs[len(pf.files):]
		if st != nil {
			rec.listed[partKey{pf.p.Key, pf.p.Start.Unix()}] = true
		}
		for j, fr := range pf.files {
			if st != nil {
				if f, ok := st.files[relName(ds, fr.name)]; ok {
					f.listed = true
					if f.e.size == fr.size && f.e.valid(ds) {
						slab = append(slab, fileInv{enc: f.e.slots})
						known[i][j] = &slab[len(slab)-1]
						continue
					}
				}
			}
			need[i] = true
		}
	}

	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait() // no goroutine outlives the call (nor its allocations)
	defer cancel()
	type result struct {
		info heal.PartitionInfo
		err  error
	}
	lim := newLimiter(l.conc)
	results := make([]chan result, len(parts))
	useFooter := mode != InventoryScan
	next, inflight := 0, 0
	ahead := 4 * l.conc
	startReads := func() {
		for ; next < len(parts) && inflight < ahead; next++ {
			if !need[next] {
				continue
			}
			i := next
			results[i] = make(chan result, 1)
			inflight++
			wg.Add(1)
			go func() {
				defer wg.Done()
				info, err := l.inventoryPartition(ctx, ds, parts[i], known[i], q.Window, useFooter, lim, rec)
				results[i] <- result{info, err}
			}()
		}
	}
	for i, pf := range parts {
		startReads()
		var info heal.PartitionInfo
		if need[i] {
			r := <-results[i]
			results[i] = nil
			inflight--
			if r.err != nil {
				return fmt.Errorf("heal/sink: inventory %s: %w", pf.p, r.err)
			}
			info = r.info
		} else {
			if i%1024 == 0 {
				if err := ctx.Err(); err != nil {
					return fmt.Errorf("heal/sink: inventory %s: %w", ds.Name, err)
				}
			}
			info = partitionInfo(ds, pf.p, q.Window, known[i])
		}
		if info.Files == 0 || info.Rows == 0 {
			continue
		}
		if err := fn(info); err != nil {
			return err
		}
	}
	return nil
}

// reconciler collects what an inventory learned that the index did not say.
type reconciler struct {
	st      *indexState
	started time.Time
	listed  map[partKey]bool // the partitions listed (their files are marked in st)

	mu      sync.Mutex
	entries []idxEntry
}

func (r *reconciler) add(e idxEntry) {
	r.mu.Lock()
	r.entries = append(r.entries, e)
	r.mu.Unlock()
}

// reconcile records adds for heal's files an inventory read from their
// footers, and removes for entries of listed partitions whose file is
// gone: entries added well before the listing started (a file is stored
// before its entry, so an older entry's file was there to be listed).
func (l *Lake) reconcile(ctx context.Context, ds *heal.Dataset, r *reconciler) {
	if r.st == nil || ctx.Err() != nil {
		return
	}
	before := fmt.Sprintf("%020d", r.started.Add(-time.Minute).UnixNano())
	entries := r.entries
	for name, f := range r.st.files {
		if !f.listed && f.seq < before && r.listed[partKey{f.e.key, f.e.start}] {
			entries = append(entries, idxEntry{op: opRemove, name: name, key: f.e.key, start: f.e.start})
		}
	}
	l.logIndex(ctx, ds, entries)
}

// limiter bounds the files read at once, across partitions.
type limiter chan struct{}

func newLimiter(n int) limiter { return make(limiter, n) }

func (l limiter) acquire(ctx context.Context) error {
	select {
	case l <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (l limiter) release() { <-l }

// inventoryPartition reads the files of pf the index said nothing of
// (known[i] nil) and combines them with the rest. If a file vanished (a
// concurrent compaction), the partition is listed again and read again.
func (l *Lake) inventoryPartition(ctx context.Context, ds *heal.Dataset, pf *partFiles, known []*fileInv, w heal.Window, useFooter bool, lim limiter, rec *reconciler) (heal.PartitionInfo, error) {
	files := pf.files
	for attempt := 0; ; attempt++ {
		invs, err := l.inspectFiles(ctx, ds, pf.p, files, known, useFooter, lim, rec)
		if err == nil {
			return partitionInfo(ds, pf.p, w, invs), nil
		}
		if !errors.Is(err, heal.ErrNotFound) || ctx.Err() != nil {
			return heal.PartitionInfo{Partition: pf.p}, err
		}
		if attempt == maxRelists {
			return heal.PartitionInfo{Partition: pf.p}, fmt.Errorf("files keep vanishing: %w", err)
		}
		if files, err = l.relist(ctx, ds, pf.p); err != nil {
			return heal.PartitionInfo{Partition: pf.p}, err
		}
		known = nil // read everything again: the listing changed
	}
}

// inspectFiles returns what each file holds: known[i] when set, else read
// from the file. Unusable files are quarantined and left nil.
func (l *Lake) inspectFiles(ctx context.Context, ds *heal.Dataset, p heal.Partition, files []fileRef, known []*fileInv, useFooter bool, lim limiter, rec *reconciler) ([]*fileInv, error) {
	invs := make([]*fileInv, len(files))
	g, gctx := errgroup.WithContext(ctx)
	for i, fr := range files {
		if known != nil && known[i] != nil {
			invs[i] = known[i]
			continue
		}
		g.Go(func() error {
			if err := lim.acquire(gctx); err != nil {
				return err
			}
			defer lim.release()
			fi, err := l.inspectFile(gctx, ds, p, fr.name, useFooter)
			if err != nil {
				var ce *corruptError
				if errors.As(err, &ce) {
					l.quarantine(gctx, ds, fr.name, err)
					return nil
				}
				return err
			}
			invs[i] = fi
			if rec != nil && rec.st != nil && fi.footer && fr.seq != "" {
				rec.add(idxEntry{op: opAdd, name: relName(ds, fr.name), key: p.Key, start: p.Start.Unix(), size: fr.size, slots: fi.enc})
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return invs, nil
}

// keySet is the set of keys, nil for all.
func keySet(keys []string) map[string]bool {
	if keys == nil {
		return nil
	}
	m := make(map[string]bool, len(keys))
	for _, k := range keys {
		m[k] = true
	}
	return m
}
