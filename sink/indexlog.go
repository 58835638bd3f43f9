package sink

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/selfheal/heal"
	"golang.org/x/sync/errgroup"
)

// The lake index: what each Write, Compact, Inventory and Verify committed,
// kept under _heal/index/<dataset>/ so that Inventory can answer without
// opening data files (see [IndexMode]).
//
// It is a log of create-only objects. Each operation that commits data
// files puts one object (level 0) holding one section: the operation's seq
// and its entries, sorted by name:
//
//	add    a data file: its name, partition, size and the slots it holds
//	remove a data file that was deleted (compacted or quarantined)
//	touch  a partition that changed (what is left of an expired remove)
//
// Objects are named "<level>.<seq>[.<rand>]": level 0 for an operation's
// own object, 1 and 2 for merges of 16 objects of the level below, 3 for a
// checkpoint holding everything (16 objects of level 2 join it once they
// weigh a quarter of it, and merge among themselves until then, so that a
// large checkpoint is rewritten rarely). Merging concatenates sections and never
// loses one; a checkpoint also drops the adds that later removes cancel, and
// the removes and touches older than indexRetention. When a seq appears in
// several objects (a merge crashed before deleting its inputs, or two
// processes merged at once), the copy in the highest object wins: merges
// only ever drop what a later section cancels, so every copy agrees on the
// files that exist.
//
// The index is a cache, never the only record: a data file without an
// entry is read from its footer (and its entry added back), and an entry
// for a file that is not listed is ignored, unless the lake runs
// [InventoryTrusted].

const (
	indexPrefix = metaPrefix + "index/"
	indexMagic  = "HIX1"
	// indexFanIn is how many objects of one level are merged into one of
	// the next, so that reading the index costs at most 3*indexFanIn+1
	// objects.
	indexFanIn = 16
	// indexTop is the level of checkpoints.
	indexTop = 3
	// indexRetention is how long removes and touches are kept: long enough
	// that no concurrent merge still holds the add a remove cancels, and the
	// oldest mark InventorySince answers incrementally.
	indexRetention = 24 * time.Hour
	// indexCheckEvery is how many index objects a process puts for a
	// dataset between looks at whether the index needs merging.
	indexCheckEvery = 8
	// reconciledPrefix names the markers Verify leaves when the index
	// matched a listing of the whole dataset.
	reconciledPrefix = "r."
)

func indexDir(ds *heal.Dataset) string { return indexPrefix + ds.Name + "/" }

type idxOp byte

const (
	opAdd    idxOp = 1
	opRemove idxOp = 2
	opTouch  idxOp = 3
)

// idxEntry is one entry of a section.
type idxEntry struct {
	op    idxOp
	name  string // data file relative to the dataset's directory; for touch, the partition's directory
	key   string
	start int64  // partition start, unix seconds
	size  int64  // add: the file's size
	slots []byte // add: heal.Slots.MarshalBinary of the rows, one row per slot
}

// idxSection is what one operation committed.
type idxSection struct {
	seq     string
	entries []idxEntry
}

// idxObject is one listed index object.
type idxObject struct {
	name   string // store name
	level  int
	maxSeq string
	size   int64
}

// parseIndexName parses the base name of an index object.
func parseIndexName(base string) (level int, seq string, ok bool) {
	if len(base) < 2+seqLen || base[1] != '.' || base[0] < '0' || base[0] > '0'+indexTop {
		return 0, "", false
	}
	seq = base[2 : 2+seqLen]
	if seqOf(seq+fileExt) == "" {
		return 0, "", false
	}
	if rest := base[2+seqLen:]; rest != "" && (len(rest) != 9 || rest[0] != '.') {
		return 0, "", false
	}
	return int(base[0] - '0'), seq, true
}

// seqTime is the wall-clock time a seq was taken.
func seqTime(seq string) time.Time {
	ns, err := strconv.ParseInt(seq[:20], 10, 64)
	if err != nil {
		return time.Time{}
	}
	return time.Unix(0, ns)
}

// relName is the name of a data file of ds relative to the dataset's
// directory, as index entries hold it.
func relName(ds *heal.Dataset, name string) string { return name[len(ds.Name)+1:] }

// encodeSections renders an index object.
func encodeSections(ds *heal.Dataset, secs []idxSection) []byte {
	n := 16
	for _, s := range secs {
		n += seqLen + 8
		for _, e := range s.entries {
			n += 32 + len(e.name) + len(e.key) + len(e.slots)
		}
	}
	b := make([]byte, 0, n)
	b = append(b, indexMagic...)
	b = binary.AppendUvarint(b, uint64(ds.Grain))
	b = binary.AppendUvarint(b, uint64(len(secs)))
	for _, s := range secs {
		b = append(b, s.seq...)
		b = binary.AppendUvarint(b, uint64(len(s.entries)))
		for _, e := range s.entries {
			at := len(b)
			b = append(b, byte(e.op))
			b = binary.AppendUvarint(b, uint64(len(e.name)))
			b = append(b, e.name...)
			b = binary.AppendUvarint(b, uint64(len(e.key)))
			b = append(b, e.key...)
			b = binary.AppendVarint(b, e.start)
			if e.op == opAdd {
				b = binary.AppendUvarint(b, uint64(e.size))
				b = binary.AppendUvarint(b, uint64(len(e.slots)))
				b = append(b, e.slots...)
			}
			b = binary.LittleEndian.AppendUint32(b, crc32.ChecksumIEEE(b[at:]))
		}
	}
	return binary.LittleEndian.AppendUint32(b, crc32.ChecksumIEEE(b))
}

var errCorruptIndex = errors.New("corrupt index object")

// decodeSections parses an index object of ds. Strings in the result share
// data's memory, which must not change afterwards.
func decodeSections(ds *heal.Dataset, data []byte) ([]idxSection, error) {
	if len(data) < len(indexMagic)+4 || string(data[:len(indexMagic)]) != indexMagic {
		return nil, errCorruptIndex
	}
	body := data[:len(data)-4]
	if crc32.ChecksumIEEE(body) != binary.LittleEndian.Uint32(data[len(data)-4:]) {
		return nil, fmt.Errorf("%w: checksum", errCorruptIndex)
	}
	d := decoder{b: body, off: len(indexMagic)}
	if grain := d.uvarint(); time.Duration(grain) != ds.Grain {
		return nil, fmt.Errorf("%w: grain %s, dataset %s", errCorruptIndex, time.Duration(grain), ds.Grain)
	}
	nsec := d.uvarint()
	if d.err != nil || nsec > uint64(len(body)) {
		return nil, errCorruptIndex
	}
	secs := make([]idxSection, 0, nsec)
	for range nsec {
		seq := d.str(seqLen)
		if d.err != nil || seqOf(seq+fileExt) == "" {
			return nil, errCorruptIndex
		}
		n := d.uvarint()
		if d.err != nil || n > uint64(len(body)) {
			return nil, errCorruptIndex
		}
		s := idxSection{seq: seq, entries: make([]idxEntry, n)}
		for i := range s.entries {
			at := d.off
			e := &s.entries[i]
			e.op = idxOp(d.byte())
			e.name = d.str(int(d.uvarint()))
			e.key = d.str(int(d.uvarint()))
			e.start = d.varint()
			switch e.op {
			case opAdd:
				e.size = int64(d.uvarint())
				e.slots = d.bytes(int(d.uvarint()))
			case opRemove, opTouch:
			default:
				return nil, errCorruptIndex
			}
			end := d.off
			if d.err != nil || crc32.ChecksumIEEE(body[at:end]) != d.u32() || d.err != nil {
				return nil, fmt.Errorf("%w: entry checksum", errCorruptIndex)
			}
		}
		secs = append(secs, s)
	}
	if d.off != len(body) {
		return nil, fmt.Errorf("%w: trailing bytes", errCorruptIndex)
	}
	return secs, nil
}

type decoder struct {
	b   []byte
	off int
	err error
}

func (d *decoder) fail() { d.err, d.off = errCorruptIndex, len(d.b) }

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b[d.off:])
	if n <= 0 {
		d.fail()
		return 0
	}
	d.off += n
	return v
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b[d.off:])
	if n <= 0 {
		d.fail()
		return 0
	}
	d.off += n
	return v
}

func (d *decoder) byte() byte {
	if d.off >= len(d.b) {
		d.fail()
		return 0
	}
	d.off++
	return d.b[d.off-1]
}

func (d *decoder) bytes(n int) []byte {
	if n < 0 || n > len(d.b)-d.off {
		d.fail()
		return nil
	}
	d.off += n
	return d.b[d.off-n : d.off : d.off]
}

func (d *decoder) str(n int) string {
	b := d.bytes(n)
	if len(b) == 0 {
		return ""
	}
	return unsafeString(b)
}

func (d *decoder) u32() uint32 {
	b := d.bytes(4)
	if len(b) < 4 {
		return 0
	}
	return binary.LittleEndian.Uint32(b)
}

// addEntry describes a data file of ds that holds, one row each, the slots s.
func addEntry(ds *heal.Dataset, p heal.Partition, name string, size int64, s heal.Slots) idxEntry {
	b, _ := s.MarshalBinary() // never fails
	return idxEntry{op: opAdd, name: relName(ds, name), key: p.Key, start: p.Start.Unix(), size: size, slots: b}
}

func removeEntry(ds *heal.Dataset, p heal.Partition, name string) idxEntry {
	return idxEntry{op: opRemove, name: relName(ds, name), key: p.Key, start: p.Start.Unix()}
}

// partition is the partition an entry is about.
func (e *idxEntry) partition(ds *heal.Dataset) heal.Partition {
	return heal.Partition{Dataset: ds.Name, Key: e.key, Start: time.Unix(e.start, 0).UTC(), Period: ds.Partition}
}

// valid reports whether an add describes, at ds's grain, slots of its
// partition.
func (e *idxEntry) valid(ds *heal.Dataset) bool {
	s, ok := parseSlotEnc(e.slots)
	if !ok || s.grain != int64(ds.Grain) || s.start%s.grain != 0 || s.n == 0 {
		return false
	}
	pstart := time.Unix(e.start, 0).UTC()
	pend := ds.Partition.Next(pstart)
	return s.start >= pstart.UnixNano() && s.start+int64(s.n)*s.grain <= pend.UnixNano()
}

// fileInv returns what an add says its file holds, or ok=false if the
// entry is not valid.
func (e *idxEntry) fileInv(ds *heal.Dataset) (*fileInv, bool) {
	if !e.valid(ds) {
		return nil, false
	}
	return &fileInv{enc: e.slots}, true
}

// logIndex puts a level-0 index object holding entries, sorted by name,
// and now and then merges the index. It never fails the operation that
// committed the data: an object that could not be put only leaves data
// files without entries, which readers take from their footers.
func (l *Lake) logIndex(ctx context.Context, ds *heal.Dataset, entries []idxEntry) {
	if len(entries) == 0 {
		return
	}
	slices.SortFunc(entries, func(a, b idxEntry) int { return strings.Compare(a.name, b.name) })
	seq := nextSeq()
	data := encodeSections(ds, []idxSection{{seq: seq, entries: entries}})
	if err := l.putIndex(ctx, indexDir(ds)+"0."+seq, data); err != nil {
		l.log.Warn("heal/sink: could not record the index; readers fall back to the files' footers", "dataset", ds.Name, "err", err)
		return
	}
	if l.indexPuts(ds).Add(1)%indexCheckEvery == 0 {
		if err := l.mergeIndex(ctx, ds); err != nil {
			l.log.Warn("heal/sink: merging the index", "dataset", ds.Name, "err", err)
		}
	}
}

// cachePutter is implemented by stores that can create an object without
// waiting for the disk ([DirStore.PutCache]). Index objects need not be
// durable: one lost or torn by a crash fails its checksums and is ignored,
// and the files it described are read from their footers; the data files
// themselves were made durable before their entries were written.
type cachePutter interface {
	PutCache(ctx context.Context, name string, data []byte) error
}

// putIndex creates an index object.
func (l *Lake) putIndex(ctx context.Context, name string, data []byte) error {
	if c, ok := l.store.(cachePutter); ok {
		return c.PutCache(ctx, name, data)
	}
	return l.store.Put(ctx, name, data, true)
}

// indexPuts counts the index objects this lake put for ds.
func (l *Lake) indexPuts(ds *heal.Dataset) *atomic.Int64 {
	v, _ := l.puts.LoadOrStore(ds.Name, new(atomic.Int64))
	return v.(*atomic.Int64)
}

// listIndex lists the index objects of ds and the newest reconcile marker.
func (l *Lake) listIndex(ctx context.Context, ds *heal.Dataset) (objs []idxObject, reconciled string, err error) {
	dir := indexDir(ds)
	err = l.store.List(ctx, dir, func(oi ObjectInfo) error {
		base := oi.Name[len(dir):]
		if r, ok := strings.CutPrefix(base, reconciledPrefix); ok && seqOf(r+fileExt) != "" {
			reconciled = max(reconciled, r)
			return nil
		}
		level, seq, ok := parseIndexName(base)
		if !ok {
			return nil
		}
		objs = append(objs, idxObject{name: oi.Name, level: level, maxSeq: seq, size: oi.Size})
		return nil
	})
	if err != nil {
		return nil, "", fmt.Errorf("heal/sink: list index %s: %w", ds.Name, err)
	}
	return objs, reconciled, nil
}

// readIndex reads and parses objs, up to the lake's concurrency at once.
// An object that vanished (merged meanwhile) or is corrupt is skipped, with
// ok false; what it held is then read from the files' footers.
func (l *Lake) readIndex(ctx context.Context, ds *heal.Dataset, objs []idxObject) (secs [][]idxSection, complete bool, err error) {
	secs = make([][]idxSection, len(objs))
	var missing atomic.Bool
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(l.conc)
	for i, o := range objs {
		g.Go(func() error {
			data, err := l.readObject(gctx, o.name)
			if errors.Is(err, heal.ErrNotFound) {
				missing.Store(true)
				return nil
			}
			if err != nil {
				return fmt.Errorf("heal/sink: read index %s: %w", o.name, err)
			}
			s, err := decodeSections(ds, data)
			if err != nil {
				l.log.Warn("heal/sink: ignoring an unreadable index object", "dataset", ds.Name, "object", o.name, "err", err)
				missing.Store(true)
				return nil
			}
			secs[i] = s
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, false, err
	}
	return secs, !missing.Load(), nil
}

func (l *Lake) readObject(ctx context.Context, name string) ([]byte, error) {
	obj, err := l.store.Open(ctx, name)
	if err != nil {
		return nil, err
	}
	defer obj.Close()
	data := make([]byte, obj.Size())
	if _, err := io.ReadFull(io.NewSectionReader(obj, 0, obj.Size()), data); err != nil {
		return nil, err
	}
	return data, nil
}

// indexFile is a live add and the seq of the section that added it.
type indexFile struct {
	e      *idxEntry
	seq    string
	listed bool // an inventory listed the file
}

// indexState is the index folded: the files it says exist, and when each
// partition last changed.
type indexState struct {
	files      map[string]*indexFile // by relative name
	sections   []idxSection          // what was folded, in seq order
	objects    []idxObject           // the objects read
	maxSeq     string                // the newest seq read
	reconciled string                // the newest reconcile marker
	complete   bool                  // every listed object was read
}

type partKey struct {
	key   string
	start int64 // unix seconds
}

// pickSections chooses, for each seq, the copy of the highest object, and
// returns the sections in seq order.
func pickSections(objs []idxObject, secs [][]idxSection) []idxSection {
	type pick struct {
		rank idxObject
		sec  *idxSection
	}
	higher := func(a, b idxObject) bool {
		if a.level != b.level {
			return a.level > b.level
		}
		if a.maxSeq != b.maxSeq {
			return a.maxSeq > b.maxSeq
		}
		return a.name > b.name
	}
	best := make(map[string]pick)
	for i, o := range objs {
		for j := range secs[i] {
			s := &secs[i][j]
			if p, ok := best[s.seq]; !ok || higher(o, p.rank) {
				best[s.seq] = pick{o, s}
			}
		}
	}
	out := make([]idxSection, 0, len(best))
	for _, p := range best {
		out = append(out, *p.sec)
	}
	slices.SortFunc(out, func(a, b idxSection) int { return strings.Compare(a.seq, b.seq) })
	return out
}

// fold applies sections in seq order.
func fold(secs []idxSection) *indexState {
	n := 0
	for _, s := range secs {
		n += len(s.entries)
	}
	st := &indexState{files: make(map[string]*indexFile, n), sections: secs}
	slab := make([]indexFile, 0, n)
	for i := range secs {
		s := &secs[i]
		st.maxSeq = max(st.maxSeq, s.seq)
		for j := range s.entries {
			e := &s.entries[j]
			switch e.op {
			case opAdd:
				slab = append(slab, indexFile{e: e, seq: s.seq})
				st.files[e.name] = &slab[len(slab)-1]
			case opRemove:
				delete(st.files, e.name)
			}
		}
	}
	return st
}

// changedSince returns the partitions a section newer than since touched.
func (st *indexState) changedSince(since string) map[partKey]bool {
	out := make(map[partKey]bool)
	i, _ := slices.BinarySearchFunc(st.sections, since, func(s idxSection, seq string) int {
		if s.seq <= seq {
			return -1
		}
		return 1
	})
	for _, s := range st.sections[i:] {
		for _, e := range s.entries {
			out[partKey{e.key, e.start}] = true
		}
	}
	return out
}

// loadIndex lists, reads and folds the index of ds.
func (l *Lake) loadIndex(ctx context.Context, ds *heal.Dataset) (*indexState, error) {
	objs, reconciled, err := l.listIndex(ctx, ds)
	if err != nil {
		return nil, err
	}
	secs, complete, err := l.readIndex(ctx, ds, objs)
	if err != nil {
		return nil, err
	}
	st := fold(pickSections(objs, secs))
	st.objects, st.reconciled, st.complete = objs, reconciled, complete
	return st, nil
}

// byPartition returns the live adds grouped by partition, partitions
// ordered by key, then time.
func (st *indexState) byPartition() [][]*idxEntry {
	// Grouping by key first keeps the sorts small: a lake has far fewer
	// keys than files.
	byKey := make(map[string][]*idxEntry)
	for _, f := range st.files {
		byKey[f.e.key] = append(byKey[f.e.key], f.e)
	}
	keys := make([]string, 0, len(byKey))
	for k := range byKey {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	out := make([][]*idxEntry, 0, len(st.files))
	for _, k := range keys {
		es := byKey[k]
		slices.SortFunc(es, func(a, b *idxEntry) int { return cmpInt64(a.start, b.start) })
		for i := 0; i < len(es); {
			j := i + 1
			for j < len(es) && es[j].start == es[i].start {
				j++
			}
			out = append(out, es[i:j:j])
			i = j
		}
	}
	return out
}

func cmpInt64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// mergeIndex merges each full level of the index of ds (indexFanIn
// objects) into one object of the next level. The objects merged are
// deleted after the merged object is stored.
func (l *Lake) mergeIndex(ctx context.Context, ds *heal.Dataset) error {
	l.merging.Lock() // one merge at a time per process; other processes may merge too
	defer l.merging.Unlock()
	objs, _, err := l.listIndex(ctx, ds)
	if err != nil {
		return err
	}
	for level := 0; level < indexTop; level++ {
		var same, top []idxObject
		var sameSize, topSize int64
		for _, o := range objs {
			switch o.level {
			case level:
				same, sameSize = append(same, o), sameSize+o.size
			case indexTop:
				top, topSize = append(top, o), topSize+o.size
			}
		}
		if len(same) < indexFanIn {
			continue
		}
		in, to := same, level+1
		if to == indexTop {
			// Fold into the checkpoint only once what waits is a fair share
			// of it, so that a large checkpoint is rewritten a logarithmic
			// number of times, not every few thousand writes; meanwhile the
			// level merges into one object of its own.
			if 4*sameSize >= topSize {
				in = append(in, top...)
			} else {
				to = level
			}
		}
		out, err := l.mergeObjects(ctx, ds, in, to)
		if err != nil {
			return err
		}
		// Carry on with the merged object in place of its inputs.
		objs = slices.DeleteFunc(objs, func(o idxObject) bool {
			return slices.ContainsFunc(in, func(x idxObject) bool { return x.name == o.name })
		})
		if out.name != "" {
			objs = append(objs, out)
		}
	}
	return nil
}

// mergeObjects merges in into one object of level to, then deletes in. A
// checkpoint (level indexTop) folds: it keeps only live adds, and removes
// and touches younger than indexRetention.
func (l *Lake) mergeObjects(ctx context.Context, ds *heal.Dataset, in []idxObject, to int) (idxObject, error) {
	secs, complete, err := l.readIndex(ctx, ds, in)
	if err != nil {
		return idxObject{}, err
	}
	if !complete {
		// Another process merged some of them meanwhile: leave it to the
		// next merge rather than build from part of the picture.
		return idxObject{}, nil
	}
	picked := pickSections(in, secs)
	if len(picked) == 0 {
		return idxObject{}, nil
	}
	if to == indexTop {
		picked = checkpointSections(ds, picked, time.Now())
	}
	maxSeq := ""
	for _, o := range in {
		maxSeq = max(maxSeq, o.maxSeq)
	}
	data := encodeSections(ds, picked)
	out := idxObject{name: indexDir(ds) + strconv.Itoa(to) + "." + maxSeq + "." + randHex(), level: to, maxSeq: maxSeq, size: int64(len(data))}
	if err := l.putIndex(ctx, out.name, data); err != nil {
		return idxObject{}, fmt.Errorf("heal/sink: merge index %s: %w", ds.Name, err)
	}
	var errs []error
	for _, o := range in {
		if err := l.store.Delete(ctx, o.name); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return out, fmt.Errorf("heal/sink: merge index %s: deleting merged objects: %w", ds.Name, err)
	}
	l.log.Debug("heal/sink: merged index objects", "dataset", ds.Name, "objects", len(in), "level", to, "sections", len(picked))
	return out, nil
}

// checkpointSections folds secs: live adds stay in their section, removes
// and touches stay while younger than indexRetention (a remove turns into a
// touch of its partition once its add is gone), and empty sections go.
func checkpointSections(ds *heal.Dataset, secs []idxSection, now time.Time) []idxSection {
	st := fold(secs)
	cutoff := now.Add(-indexRetention)
	var out []idxSection
	for _, s := range secs {
		keep := seqTime(s.seq).After(cutoff)
		var es []idxEntry
		touched := map[partKey]bool{}
		for _, e := range s.entries {
			if e.op == opAdd {
				if f, ok := st.files[e.name]; ok && f.seq == s.seq {
					es = append(es, e)
					touched[partKey{e.key, e.start}] = true
				}
			}
		}
		if keep {
			for _, e := range s.entries {
				switch e.op {
				case opRemove:
					es = append(es, e)
				case opTouch:
					if pk := (partKey{e.key, e.start}); !touched[pk] {
						touched[pk] = true
						es = append(es, e)
					}
				}
			}
		}
		if len(es) > 0 {
			slices.SortStableFunc(es, func(a, b idxEntry) int { return strings.Compare(a.name, b.name) })
			out = append(out, idxSection{seq: s.seq, entries: es})
		}
	}
	return out
}
