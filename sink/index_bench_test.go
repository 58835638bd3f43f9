package sink

import (
	"fmt"
	"testing"
	"time"

	"github.com/selfheal/heal"
	"github.com/selfheal/heal/healtest"
)

// BenchmarkIndexDecode decodes and folds one index object of 10,000
// entries (a day of 500 symbols is 500), as every indexed inventory does.
func BenchmarkIndexDecode(b *testing.B) {
	ds := healtest.QuotesDataset()
	day := time.Date(2024, 1, 2, 0, 0, 0, 0, time.UTC)
	var entries []idxEntry
	for i := 0; i < 10000; i++ {
		p := ds.PartitionOf(fmt.Sprintf("S%04d", i%500), day.AddDate(0, 0, i/500))
		s := heal.NewSlots(heal.Window{Start: p.Start.Add(870 * time.Minute), End: p.Start.Add(1260 * time.Minute)}, ds.Grain)
		for m := 0; m < 390; m += 1 + m%11/10 {
			s.AddIndex(m)
		}
		entries = append(entries, addEntry(ds, p, PartitionPath(ds, p)+nextSeq()+fileExt, 9000, s))
	}
	data := encodeSections(ds, []idxSection{{seq: nextSeq(), entries: entries}})
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		secs, err := decodeSections(ds, data)
		if err != nil {
			b.Fatal(err)
		}
		if st := fold(secs); len(st.files) != 10000 || len(st.byPartition()) != 10000 {
			b.Fatal("lost entries")
		}
	}
}
