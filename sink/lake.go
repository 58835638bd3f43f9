package sink

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/apache/arrow/go/v17/arrow/memory"
	"github.com/apache/arrow/go/v17/parquet/compress"
	"github.com/selfheal/heal"
	"golang.org/x/sync/errgroup"
)

// Options configures a [Lake]. A nil *Options, or any zero field, means the
// default written beside the field.
type Options struct {
	// Allocator is used for every Arrow and Parquet buffer the lake makes.
	// nil: memory.DefaultAllocator.
	Allocator memory.Allocator
	// Compression is the Parquet codec of written files. Zero
	// (compress.Codecs.Uncompressed): compress.Codecs.Snappy, which writes
	// the many small files of micro-batches several times faster than
	// arrow/go v17's zstd (see BenchmarkWrite); files cannot be written
	// uncompressed.
	Compression compress.Compression
	// Logger receives warnings about files moved to quarantine and similar
	// events, with stable keys (dataset, partition, file, err). nil: discard.
	Logger *slog.Logger
	// Concurrency bounds the partitions a Write encodes or a Compact
	// merges, and the files an Inventory reads, at once. <=0: 4.
	Concurrency int
	// Inventory says where Inventory learns what each file holds. Zero:
	// InventoryListed, the lake index checked against a listing of the
	// files.
	Inventory InventoryMode
	// Encryption encrypts the sensitive columns of the datasets it names,
	// each file with its own data key (see [Encryption]). nil: files are
	// written in clear, and encrypted files are audited but their
	// encrypted columns not read.
	Encryption *Encryption
}

// Lake is the Parquet implementation of [heal.Lake] over any [Store]. It
// also implements [heal.Compactor] and [heal.MetaStore].
//
// # Layout
//
// Files are laid out Hive-style, so DuckDB, Spark or Athena read a lake as
// it is:
//
//	<dataset>/<key column>=<escaped key>/<period>=<value>/<seq>.parquet
//	quotes/symbol=AAPL/date=2024-01-02/01717000000000000000-1a2b3c4d.parquet
//
// Keys are escaped with [EscapeKey]. Each Write adds one new file per
// partition it touches; it never rewrites a file. The engine's ledger lives
// under _heal/ ([Lake.PutMeta]) and files the lake could not read are moved
// to _quarantine/<original name>, never destroyed. Names starting with '_'
// or '.' are never data.
//
// # Precedence
//
// seq (unix nanoseconds, strictly increasing within a process, then 8
// random hex digits) orders the files of a partition: when a (key, time) is
// stored in several files, the row of the file with the greatest seq wins,
// and within one file the last row wins ("newest wins"). A compacted file
// carries the greatest seq of its inputs. Files not named by heal (dropped
// in by other tools) rank below heal's files, by name.
//
// # Presence index
//
// Each file carries, in its Parquet key-value metadata, the slots it holds
// (heal.slots: base64 of [heal.Slots.MarshalBinary] at the dataset's grain,
// over the span from its first to its last row, so that a one-row file
// carries a few bytes of index), its row count (heal.rows) and a checksum
// (heal.crc) binding both to the file's first and last time.
//
// # Lake index
//
// So that an audit need not open every file, the lake also records what it
// commits in a log under _heal/index/<dataset>/ (the MetaStore methods do
// not show it): each Write, Compact and quarantine puts one create-only
// object listing the files it stored (name, size, slots, checksummed) or
// removed. Objects are merged sixteen at a time, level by level, into
// checkpoints, so reading the index costs a few dozen objects however many
// writes there were. [Options].Inventory says how Inventory uses it
// ([InventoryListed] by default: entries checked against a listing of the
// files); [Lake.Verify] checks it against the data, and
// [Lake.InventorySince] reads from it which partitions changed since a
// previous audit. The index is never the only record: a file without a
// matching entry is read from its footer index, or from its key and time
// columns when it has none, and its entry added back.
//
// # Failures
//
// A Write spanning several partitions is atomic per partition: after a
// failure some partitions may hold the new rows and others not, and a retry
// of the same Write converges (the copies it leaves are identical and are
// read once, then merged by Compact). A crash during Compact leaves the
// data correct. A file that is not valid Parquet, or whose schema or rows do
// not match the dataset, is moved aside and logged; reads carry on with the
// remaining files. Files written before a nullable column was added to the
// dataset are read with that column null (columns are matched by name);
// any other change of a dataset's columns or types (a breaking change)
// quarantines its existing files on their next read (recoverable from
// _quarantine/): declare a new major version in a dataset of its own
// instead (see [heal.Dataset].Version and package evolve).
type Lake struct {
	store Store
	mem   memory.Allocator
	codec compress.Compression
	log   *slog.Logger
	conc  int
	inv   InventoryMode
	enc   *Encryption

	storable    sync.Map     // schema fingerprint → error (nil: storable)
	schemas     sync.Map     // dataset and stored Arrow schema → schemaCheck
	schemaCount atomic.Int64 // entries in schemas
	puts        sync.Map     // dataset name → *atomic.Int64: index objects put
	policies    sync.Map     // dataset name → *policyState: its encryption policy
	merging     sync.Mutex   // one index merge at a time
}

// Compile-time checks.
var (
	_ heal.Lake      = (*Lake)(nil)
	_ heal.Compactor = (*Lake)(nil)
	_ heal.MetaStore = (*Lake)(nil)
)

// NewLake returns a lake over store. opts may be nil.
func NewLake(store Store, opts *Options) *Lake {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.Allocator == nil {
		o.Allocator = memory.DefaultAllocator
	}
	if o.Compression == compress.Codecs.Uncompressed {
		o.Compression = compress.Codecs.Snappy
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 4
	}
	return &Lake{store: store, mem: o.Allocator, codec: o.Compression, log: o.Logger, conc: o.Concurrency, inv: o.Inventory, enc: o.Encryption}
}

// OpenDir returns a lake in the directory dir on local disk, creating it if
// needed.
func OpenDir(dir string, opts *Options) (*Lake, error) {
	s, err := NewDirStore(dir)
	if err != nil {
		return nil, err
	}
	return NewLake(s, opts), nil
}

// NewMemLake returns a lake in memory, for tests and examples.
func NewMemLake(opts *Options) *Lake { return NewLake(NewMemStore(), opts) }

// Store returns the store the lake keeps its files in.
func (l *Lake) Store() Store { return l.store }

// partFiles is one stored partition and its files, lowest precedence first.
type partFiles struct {
	p     heal.Partition
	files []fileRef
}

// The listing strategy: a query names keys and a window, and the lake lists
// the directories of those partitions when they are few, else those of the
// keys, else the whole dataset once, whichever costs fewer requests on an
// object store (one listing request returns up to a thousand names).
const (
	// maxPeriodPrefixes is the number of periods per key up to which a query
	// with keys and a window lists each period directory rather than the key's.
	maxPeriodPrefixes = 62
	// maxPrefixes is the number of directories beyond which the lake lists
	// a wider prefix once rather than each.
	maxPrefixes = 1024
	// maxKeyPrefixes is the number of keys beyond which the lake lists the
	// whole dataset rather than each key's directory.
	maxKeyPrefixes = 64
)

// list returns the stored partitions of ds matching q, ordered by key, then
// time, each with its files in ascending precedence.
func (l *Lake) list(ctx context.Context, ds *heal.Dataset, q heal.Query) ([]*partFiles, error) {
	return l.listWith(ctx, ds, q, nil)
}

// listWith is list restricted, when only is not nil, to those partitions.
func (l *Lake) listWith(ctx context.Context, ds *heal.Dataset, q heal.Query, only map[partKey]bool) ([]*partFiles, error) {
	if err := ds.Validate(); err != nil {
		return nil, err
	}
	if !q.Window.IsZero() && q.Window.Empty() {
		return nil, ctx.Err()
	}
	keys := keySet(q.Keys)
	var prefixes []string
	switch {
	case only != nil:
		for pk := range only {
			p := heal.Partition{Dataset: ds.Name, Key: pk.key, Start: time.Unix(pk.start, 0).UTC(), Period: ds.Partition}
			if keys != nil && !keys[p.Key] || heal.ValidKey(p.Key) != nil || !q.Window.IsZero() && !p.Window().Overlaps(q.Window) {
				continue
			}
			prefixes = append(prefixes, partitionDir(ds, p))
		}
		if len(prefixes) > maxPrefixes {
			prefixes = []string{ds.Name + "/"}
		}
	case keys == nil:
		prefixes = []string{ds.Name + "/"}
	default:
		valid := make([]string, 0, len(keys))
		for k := range keys {
			if heal.ValidKey(k) == nil { // no other key can be stored
				valid = append(valid, k)
			}
		}
		slices.Sort(valid)
		var periods []time.Time
		if !q.Window.IsZero() {
			for s := ds.Partition.Floor(q.Window.Start); s.Before(q.Window.End); s = ds.Partition.Next(s) {
				if len(periods) > maxPeriodPrefixes {
					periods = nil
					break
				}
				periods = append(periods, s)
			}
		}
		switch {
		case periods != nil && len(valid)*len(periods) <= maxPrefixes:
			for _, k := range valid {
				for _, start := range periods {
					prefixes = append(prefixes, partitionDir(ds, ds.PartitionOf(k, start)))
				}
			}
		case len(valid) <= maxKeyPrefixes:
			for _, k := range valid {
				prefixes = append(prefixes, keyDir(ds, k))
			}
		default:
			prefixes = []string{ds.Name + "/"}
		}
	}
	slices.Sort(prefixes)
	// Each prefix is listed on its own, several at once; the partitions are
	// gathered per prefix and sorted at the end.
	found := make([][]*partFiles, len(prefixes))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(l.conc)
	for i, prefix := range prefixes {
		g.Go(func() error {
			parts, err := l.listPrefix(gctx, ds, prefix, q.Window, keys, only)
			if err != nil {
				return fmt.Errorf("heal/sink: list %s: %w", prefix, err)
			}
			found[i] = parts
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	type pk struct {
		key   string
		start int64
	}
	var parts []*partFiles
	seen := make(map[pk]*partFiles)
	for _, ps := range found {
		for _, pf := range ps {
			k := pk{pf.p.Key, pf.p.Start.UnixNano()}
			if prev := seen[k]; prev != nil { // two prefixes held one partition: cannot happen, but merge
				prev.files = append(prev.files, pf.files...)
				continue
			}
			seen[k] = pf
			parts = append(parts, pf)
		}
	}
	for _, pf := range parts {
		slices.SortFunc(pf.files, func(a, b fileRef) int {
			switch {
			case precedes(a, b):
				return -1
			case precedes(b, a):
				return 1
			}
			return 0
		})
	}
	slices.SortFunc(parts, func(a, b *partFiles) int {
		if c := strings.Compare(a.p.Key, b.p.Key); c != 0 {
			return c
		}
		return a.p.Start.Compare(b.p.Start)
	})
	return parts, nil
}

// listPrefix lists one prefix and returns the partitions found, with
// their files. A listing returns names in lexical order, so the files of a
// partition are consecutive and its directory is parsed once.
func (l *Lake) listPrefix(ctx context.Context, ds *heal.Dataset, prefix string, w heal.Window, keys map[string]bool, only map[partKey]bool) ([]*partFiles, error) {
	var (
		parts   []*partFiles
		lastDir string
		cur     *partFiles // nil: the last directory is not wanted
		dirOK   bool
	)
	err := l.store.List(ctx, prefix, func(oi ObjectInfo) error {
		dir, file := oi.Name, ""
		if i := strings.LastIndexByte(oi.Name, '/'); i >= 0 {
			dir, file = oi.Name[:i+1], oi.Name[i+1:]
		}
		if dir != lastDir || lastDir == "" {
			lastDir, cur, dirOK = dir, nil, false
			p, _, ok, why := parseDataName(ds, dir+"x"+fileExt)
			if !ok {
				if why != "" {
					l.log.Debug("heal/sink: ignoring misplaced file", "dataset", ds.Name, "file", oi.Name, "err", why)
				}
				return nil
			}
			dirOK = true
			if !w.IsZero() && !p.Window().Overlaps(w) || keys != nil && !keys[p.Key] || only != nil && !only[partKey{p.Key, p.Start.Unix()}] {
				return nil
			}
			cur = &partFiles{p: p}
			parts = append(parts, cur)
		}
		if !dirOK || cur == nil {
			return nil
		}
		// The checks parseDataName makes of a file's name (the directory
		// passed them above).
		if file == "" || file[0] == '_' || file[0] == '.' || !strings.HasSuffix(file, fileExt) || strings.ContainsAny(file, "\x00\\") {
			return nil
		}
		cur.files = append(cur.files, fileRef{name: oi.Name, seq: seqOf(file), size: oi.Size})
		return nil
	})
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(parts, func(pf *partFiles) bool { return len(pf.files) == 0 }), nil
}

// relist lists the files of one partition again, after one vanished.
func (l *Lake) relist(ctx context.Context, ds *heal.Dataset, p heal.Partition) ([]fileRef, error) {
	parts, err := l.list(ctx, ds, heal.Query{Keys: []string{p.Key}, Window: heal.Window{Start: p.Start, End: p.Start.Add(1)}})
	if err != nil {
		return nil, err
	}
	for _, pf := range parts {
		if pf.p.Key == p.Key && pf.p.Start.Equal(p.Start) {
			return pf.files, nil
		}
	}
	return nil, nil
}
