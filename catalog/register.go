package catalog

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"

	"github.com/selfheal/heal"
)

// RegisterOptions configures [Register]. A nil *RegisterOptions, or a
// zero field, means the default written beside the field.
type RegisterOptions struct {
	// Logger receives registrations that failed after the write they
	// follow succeeded. nil: discarded.
	Logger *slog.Logger
}

// Register returns lake with every successful Write followed by the Glue
// registration of what it touched: the dataset's table on its first write
// ([Catalog.EnsureTable]) and the partitions new to this process
// ([Catalog.AddPartitions], idempotent on AlreadyExists), so Athena sees
// new data with no crawler. A partition is registered once per process;
// a restart registers the ones it writes again, harmlessly.
//
// A failed registration does not fail the write, whose data is committed:
// it is logged, and tried again with the next write to the partition (or
// run [Catalog.Sync]). The returned Lake is a [heal.MetaStore] and a
// [heal.Compactor] when lake is, so an engine can run over it.
func Register(lake heal.Lake, c *Catalog, opts *RegisterOptions) heal.Lake {
	var o RegisterOptions
	if opts != nil {
		o = *opts
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	r := &registering{Lake: lake, c: c, log: o.Logger, tables: map[string]bool{}, known: map[string]bool{}}
	ms, isMeta := lake.(heal.MetaStore)
	cp, isCompactor := lake.(heal.Compactor)
	if isMeta && isCompactor {
		return &registeringFull{registering: r, MetaStore: ms, Compactor: cp}
	}
	return r
}

type registering struct {
	heal.Lake
	c   *Catalog
	log *slog.Logger

	mu     sync.Mutex
	tables map[string]bool
	known  map[string]bool
}

// registeringFull is registering over a lake that keeps a ledger and
// compacts, as the Parquet lake does.
type registeringFull struct {
	*registering
	heal.MetaStore
	heal.Compactor
}

// Write writes to the lake, then registers what the write touched.
func (r *registering) Write(ctx context.Context, ds *heal.Dataset, rec arrow.Record) error {
	if err := r.Lake.Write(ctx, ds, rec); err != nil {
		return err
	}
	if err := r.register(ctx, ds, rec); err != nil {
		r.log.Warn("glue registration failed; retried with the next write", "dataset", ds.Name, "err", err)
	}
	return nil
}

func (r *registering) register(ctx context.Context, ds *heal.Dataset, rec arrow.Record) error {
	parts := partitionsOf(ds, rec)
	r.mu.Lock()
	table := !r.tables[ds.Name]
	var fresh []heal.Partition
	for _, p := range parts {
		if !r.known[partKey(p)] {
			fresh = append(fresh, p)
		}
	}
	r.mu.Unlock()
	if table {
		if err := r.c.EnsureTable(ctx, ds); err != nil {
			return err
		}
		r.mu.Lock()
		r.tables[ds.Name] = true
		r.mu.Unlock()
	}
	if len(fresh) == 0 {
		return nil
	}
	if _, err := r.c.AddPartitions(ctx, ds, fresh); err != nil {
		return err
	}
	r.mu.Lock()
	for _, p := range fresh {
		r.known[partKey(p)] = true
	}
	r.mu.Unlock()
	return nil
}

// partitionsOf returns the distinct partitions rec's rows fall in. The
// write it follows has validated rec: keys and times are not null.
func partitionsOf(ds *heal.Dataset, rec arrow.Record) []heal.Partition {
	keys, ok1 := rec.Column(ds.KeyIndex()).(*array.String)
	times, ok2 := rec.Column(ds.TimeIndex()).(*array.Timestamp)
	if !ok1 || !ok2 {
		return nil
	}
	unit := ds.TimeUnit()
	seen := map[string]bool{}
	var out []heal.Partition
	for i := 0; i < int(rec.NumRows()); i++ {
		if keys.IsNull(i) || times.IsNull(i) {
			continue
		}
		p := ds.PartitionOf(keys.Value(i), times.Value(i).ToTime(unit))
		if k := partKey(p); !seen[k] {
			seen[k] = true
			out = append(out, p)
		}
	}
	return out
}

// partKey names a partition for the known set (time.Time is compared by
// its instant, not its location).
func partKey(p heal.Partition) string {
	return fmt.Sprintf("%s\x00%s\x00%d\x00%d", p.Dataset, p.Key, p.Start.UnixNano(), p.Period)
}
