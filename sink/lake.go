package sink

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/apache/arrow/go/v17/arrow/memory"
	"github.com/apache/arrow/go/v17/parquet/compress"
	"github.com/selfheal/heal"
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
	// merges, and the footers an Inventory reads, at once. <=0: 4.
	Concurrency int
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
// (heal.crc) binding both to the file's first and last time. Inventory
// reads only footers; a file without a valid index is scanned instead.
//
// # Failures
//
// A Write spanning several partitions is atomic per partition: after a
// failure some partitions may hold the new rows and others not, and a retry
// of the same Write converges (the copies it leaves are identical and are
// read once, then merged by Compact). A crash during Compact leaves the
// data correct. A file that is not valid Parquet, or whose schema or rows do
// not match the dataset, is moved aside and logged; reads carry on with the
// remaining files. This includes files written under an earlier schema of
// the dataset: changing a dataset's columns or types quarantines its
// existing files on their next read (recoverable from _quarantine/), so
// migrate the data rather than the definition alone.
type Lake struct {
	store Store
	mem   memory.Allocator
	codec compress.Compression
	log   *slog.Logger
	conc  int

	storable sync.Map // schema fingerprint → error (nil: storable)
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
	return &Lake{store: store, mem: o.Allocator, codec: o.Compression, log: o.Logger, conc: o.Concurrency}
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

// maxPeriodPrefixes is the number of periods per key up to which a query
// with keys and a window lists each period directory rather than the key's.
const maxPeriodPrefixes = 62

// list returns the stored partitions of ds matching q, ordered by key, then
// time, each with its files in ascending precedence.
func (l *Lake) list(ctx context.Context, ds *heal.Dataset, q heal.Query) ([]*partFiles, error) {
	if err := ds.Validate(); err != nil {
		return nil, err
	}
	if !q.Window.IsZero() && q.Window.Empty() {
		return nil, ctx.Err()
	}
	var prefixes []string
	if q.Keys == nil {
		prefixes = []string{ds.Name + "/"}
	} else {
		keys := slices.Clone(q.Keys)
		slices.Sort(keys)
		keys = slices.Compact(keys)
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
		for _, k := range keys {
			if heal.ValidKey(k) != nil {
				continue // no such key can be stored
			}
			if periods == nil {
				prefixes = append(prefixes, keyDir(ds, k))
				continue
			}
			for _, start := range periods {
				prefixes = append(prefixes, partitionDir(ds, ds.PartitionOf(k, start)))
			}
		}
	}
	type partKey struct {
		key   string
		start int64
	}
	byPart := make(map[partKey]*partFiles)
	for _, prefix := range prefixes {
		err := l.store.List(ctx, prefix, func(oi ObjectInfo) error {
			p, file, ok, why := parseDataName(ds, oi.Name)
			if !ok {
				if why != "" {
					l.log.Debug("heal/sink: ignoring misplaced file", "dataset", ds.Name, "file", oi.Name, "err", why)
				}
				return nil
			}
			if !q.Window.IsZero() && !p.Window().Overlaps(q.Window) {
				return nil
			}
			if q.Keys != nil && !slices.Contains(q.Keys, p.Key) {
				return nil
			}
			pk := partKey{p.Key, p.Start.UnixNano()}
			pf := byPart[pk]
			if pf == nil {
				pf = &partFiles{p: p}
				byPart[pk] = pf
			}
			pf.files = append(pf.files, fileRef{name: oi.Name, seq: seqOf(file), size: oi.Size})
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("heal/sink: list %s: %w", prefix, err)
		}
	}
	parts := make([]*partFiles, 0, len(byPart))
	for _, pf := range byPart {
		slices.SortFunc(pf.files, func(a, b fileRef) int {
			switch {
			case precedes(a, b):
				return -1
			case precedes(b, a):
				return 1
			}
			return 0
		})
		parts = append(parts, pf)
	}
	slices.SortFunc(parts, func(a, b *partFiles) int {
		if c := strings.Compare(a.p.Key, b.p.Key); c != 0 {
			return c
		}
		return a.p.Start.Compare(b.p.Start)
	})
	return parts, nil
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
