package cost_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/selfheal/heal"
	"github.com/selfheal/heal/cost"
	"github.com/selfheal/heal/sink"
)

// BenchmarkStore measures what metering adds to a store call (MemStore,
// so the store itself costs as little as possible).
func BenchmarkStore(b *testing.B) {
	data := make([]byte, 4<<10)
	for _, metered := range []bool{false, true} {
		b.Run(fmt.Sprintf("metered=%v", metered), func(b *testing.B) {
			var st sink.Store = sink.NewMemStore()
			m := cost.NewMeter("d", nil)
			if metered {
				st = m.Store(st)
			}
			ctx := context.Background()
			buf := make([]byte, 512)
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				name := fmt.Sprintf("d/%d", i%1024)
				if err := st.Put(ctx, name, data, false); err != nil {
					b.Fatal(err)
				}
				o, err := st.Open(ctx, name)
				if err != nil {
					b.Fatal(err)
				}
				o.ReadAt(buf, 0)
				o.Close()
			}
		})
	}
}

// BenchmarkObserve is the cost of one event.
func BenchmarkObserve(b *testing.B) {
	m := cost.NewMeter("d", nil)
	ev := heal.Event{Kind: heal.EventFetch, Dataset: "d", Live: true}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		m.Observe(ev)
	}
}
