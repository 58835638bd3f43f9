package sink_test

import (
	"context"
	"testing"

	"github.com/apache/arrow/go/v17/arrow/memory"
	"github.com/apache/arrow/go/v17/parquet/compress"
	"github.com/selfheal/heal"
	"github.com/selfheal/heal/healtest"
	"github.com/selfheal/heal/sink"
)

// harness makes lakes over one store.
type harness struct {
	store     sink.Store
	opts      sink.Options
	reconcile bool // mark the suite's dataset's (empty) index whole first, so InventoryTrusted trusts it
}

func (h *harness) MakeLake(ctx context.Context, mem memory.Allocator) (heal.Lake, error) {
	o := h.opts
	o.Allocator = mem
	lake := sink.NewLake(h.store, &o)
	if h.reconcile {
		h.reconcile = false
		if _, err := lake.Verify(ctx, healtest.QuotesDataset(), heal.Query{}); err != nil {
			return nil, err
		}
	}
	return lake, nil
}

func (h *harness) Close() {}

func TestConformance(t *testing.T) {
	t.Run("DirStore", func(t *testing.T) {
		healtest.RunLakeTests(t, func(_ context.Context, t *testing.T) (healtest.LakeHarness, error) {
			s, err := sink.NewDirStore(t.TempDir())
			if err != nil {
				return nil, err
			}
			return &harness{store: s}, nil
		})
	})
	t.Run("MemStore", func(t *testing.T) {
		healtest.RunLakeTests(t, func(context.Context, *testing.T) (healtest.LakeHarness, error) {
			return &harness{store: sink.NewMemStore()}, nil
		})
	})
	// The other ways Inventory learns what files hold keep the contract too.
	for _, mode := range []sink.InventoryMode{sink.InventoryTrusted, sink.InventoryFooters, sink.InventoryScan} {
		t.Run("MemStore"+mode.String(), func(t *testing.T) {
			healtest.RunLakeTests(t, func(context.Context, *testing.T) (healtest.LakeHarness, error) {
				return &harness{store: sink.NewMemStore(), opts: sink.Options{Inventory: mode}, reconcile: mode == sink.InventoryTrusted}, nil
			})
		})
	}
	t.Run("MemStoreZstdSerial", func(t *testing.T) {
		healtest.RunLakeTests(t, func(context.Context, *testing.T) (healtest.LakeHarness, error) {
			return &harness{store: sink.NewMemStore(), opts: sink.Options{Concurrency: 1, Compression: compress.Codecs.Zstd}}, nil
		})
	})
}
