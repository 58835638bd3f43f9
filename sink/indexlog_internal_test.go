package sink

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/apache/arrow/go/v17/arrow/memory"
	"github.com/selfheal/heal"
	"github.com/selfheal/heal/healtest"
)

func testSlots(t *testing.T, ds *heal.Dataset, p heal.Partition, mins ...int) []byte {
	t.Helper()
	s := heal.NewSlots(p.Window(), ds.Grain)
	for _, m := range mins {
		s.Add(p.Start.Add(time.Duration(m) * time.Minute))
	}
	b, _ := s.MarshalBinary()
	return b
}

func seqAt(t time.Time, n int) string { return fmt.Sprintf("%020d-%08x", t.UnixNano(), n) }

func TestIndexFormat(t *testing.T) {
	ds := healtest.QuotesDataset()
	p := ds.PartitionOf("A/b", time.Date(2024, 1, 2, 0, 0, 0, 0, time.UTC))
	now := time.Now()
	secs := []idxSection{
		{seq: seqAt(now, 1), entries: []idxEntry{
			{op: opAdd, name: "symbol=A%2Fb/date=2024-01-02/x.parquet", key: p.Key, start: p.Start.Unix(), size: 123, slots: testSlots(t, ds, p, 1, 2, 3)},
			{op: opRemove, name: "symbol=A%2Fb/date=2024-01-02/y.parquet", key: p.Key, start: p.Start.Unix()},
		}},
		{seq: seqAt(now, 2), entries: []idxEntry{{op: opTouch, name: "symbol=A%2Fb/date=2024-01-02/", key: p.Key, start: p.Start.Unix()}}},
	}
	data := encodeSections(ds, secs)
	got, err := decodeSections(ds, data)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].seq != secs[0].seq || len(got[0].entries) != 2 || got[1].entries[0].op != opTouch {
		t.Fatalf("round trip: %+v", got)
	}
	e := got[0].entries[0]
	if e.name != secs[0].entries[0].name || e.key != p.Key || e.size != 123 || !slices.Equal(e.slots, secs[0].entries[0].slots) {
		t.Fatalf("entry round trip: %+v", e)
	}
	if fi, ok := e.fileInv(ds); !ok || fi.rows() != 3 {
		t.Fatalf("fileInv of a valid entry: %v %v", fi, ok)
	}
	// Every flipped byte, and every truncation, is detected.
	for i := range data {
		bad := slices.Clone(data)
		bad[i] ^= 0x40
		if _, err := decodeSections(ds, bad); err == nil {
			t.Fatalf("flipping byte %d went unnoticed", i)
		}
		if _, err := decodeSections(ds, data[:i]); err == nil {
			t.Fatalf("truncation to %d bytes went unnoticed", i)
		}
	}
	// An index of another grain is not this dataset's.
	hourly := *ds
	hourly.Grain = time.Hour
	if _, err := decodeSections(&hourly, data); err == nil {
		t.Fatal("an index at another grain was accepted")
	}
	// An entry reaching outside its partition is refused.
	other := ds.PartitionOf("A/b", p.Start.AddDate(0, 0, 1))
	wrong := idxEntry{op: opAdd, key: p.Key, start: other.Start.Unix(), slots: e.slots}
	if _, ok := wrong.fileInv(ds); ok {
		t.Fatal("an entry for slots outside its partition was accepted")
	}
}

func TestParseIndexName(t *testing.T) {
	seq := seqAt(time.Unix(1700000000, 0), 0xabc)
	for name, want := range map[string]int{
		"0." + seq:               0,
		"2." + seq + ".0123abcd": 2,
		"3." + seq + ".ffffffff": 3,
	} {
		if level, s, ok := parseIndexName(name); !ok || level != want || s != seq {
			t.Errorf("parseIndexName(%q) = %d, %q, %v", name, level, s, ok)
		}
	}
	for _, name := range []string{"4." + seq, "0" + seq, "0." + seq[:20], "0." + seq + ".x", "r." + seq, "0." + seq + "-0123abcd"} {
		if _, _, ok := parseIndexName(name); ok {
			t.Errorf("parseIndexName(%q) accepted it", name)
		}
	}
}

// TestPickAndFold: the highest copy of a section wins, sections apply in seq
// order, a remove cancels an earlier add.
func TestPickAndFold(t *testing.T) {
	ds := healtest.QuotesDataset()
	p := ds.PartitionOf("A", time.Date(2024, 1, 2, 0, 0, 0, 0, time.UTC))
	now := time.Now()
	add := func(name string, mins ...int) idxEntry {
		return idxEntry{op: opAdd, name: name, key: "A", start: p.Start.Unix(), size: 1, slots: testSlots(t, ds, p, mins...)}
	}
	rm := func(name string) idxEntry { return idxEntry{op: opRemove, name: name, key: "A", start: p.Start.Unix()} }
	s1 := idxSection{seq: seqAt(now, 1), entries: []idxEntry{add("f1", 1), add("f2", 2)}}
	s2 := idxSection{seq: seqAt(now, 2), entries: []idxEntry{add("f3", 1, 2), rm("f1"), rm("f2")}}
	s3 := idxSection{seq: seqAt(now, 3), entries: []idxEntry{add("f4", 9)}}
	// A merged copy of s1 with f2 folded away, in a higher object: it wins
	// over the log that still holds s1 (a merge that crashed before
	// deleting its inputs); s2's removes make the difference moot anyway.
	folded := idxSection{seq: s1.seq, entries: []idxEntry{add("f1", 1)}}
	objs := []idxObject{{name: "a", level: 0, maxSeq: s1.seq}, {name: "b", level: 1, maxSeq: s2.seq}, {name: "c", level: 0, maxSeq: s3.seq}}
	secs := [][]idxSection{{s1}, {folded, s2}, {s3}}
	picked := pickSections(objs, secs)
	if len(picked) != 3 || len(picked[0].entries) != 1 {
		t.Fatalf("picked %+v", picked)
	}
	st := fold(picked)
	var live []string
	for name := range st.files {
		live = append(live, name)
	}
	slices.Sort(live)
	if !slices.Equal(live, []string{"f3", "f4"}) || st.maxSeq != s3.seq {
		t.Fatalf("live files %v, max seq %s", live, st.maxSeq)
	}
	if ch := st.changedSince(s2.seq); len(ch) != 1 {
		t.Fatalf("changed since s2: %v", ch)
	}
	if ch := st.changedSince(""); len(ch) != 1 || !ch[partKey{"A", p.Start.Unix()}] {
		t.Fatalf("changed since the beginning: %v", ch)
	}

	// A checkpoint keeps live adds, and removes only while they are young.
	cp := checkpointSections(ds, picked, now)
	if n := countOps(cp); n[opAdd] != 2 || n[opRemove] != 2 {
		t.Fatalf("young checkpoint: %v", n)
	}
	cp = checkpointSections(ds, picked, now.Add(2*indexRetention))
	if n := countOps(cp); n[opAdd] != 2 || n[opRemove] != 0 || n[opTouch] != 0 {
		t.Fatalf("old checkpoint: %v", n)
	}
	if st2 := fold(cp); len(st2.files) != 2 {
		t.Fatalf("checkpoint folds to %d files", len(st2.files))
	}
}

func countOps(secs []idxSection) map[idxOp]int {
	n := map[idxOp]int{}
	for _, s := range secs {
		for _, e := range s.entries {
			n[e.op]++
		}
	}
	return n
}

// TestPresence checks the word-level union against a slot-by-slot model,
// with windows and files at every offset.
func TestPresence(t *testing.T) {
	ds := healtest.QuotesDataset()
	p := ds.PartitionOf("A", time.Date(2024, 1, 2, 0, 0, 0, 0, time.UTC))
	for off := 0; off < 140; off += 7 {
		for _, n := range []int{1, 63, 64, 65, 200} {
			for _, winLo := range []int{0, 3, 64, 100} {
				win := heal.Window{Start: p.Start.Add(time.Duration(winLo)*time.Minute + 30*time.Second), End: p.Start.Add(time.Duration(winLo+90) * time.Minute)}
				fw := heal.Window{Start: p.Start.Add(time.Duration(off) * time.Minute), End: p.Start.Add(time.Duration(off+n) * time.Minute)}
				fs := heal.NewSlots(fw, ds.Grain)
				for i := 0; i < n; i += 1 + i%3 {
					fs.AddIndex(i)
				}
				enc, _ := fs.MarshalBinary()
				se, ok := parseSlotEnc(enc)
				if !ok {
					t.Fatal("parse")
				}
				pr := newPresence(win, ds.Grain)
				added := pr.add(se)
				got := pr.slots()
				pr.release()
				want := 0
				for tm := range fs.All() {
					if win.Contains(tm) {
						want++
						if !got.Has(tm) {
							t.Fatalf("off %d n %d win %s: %s missing", off, n, win, tm)
						}
					}
				}
				if added != want || got.Count() != want {
					t.Fatalf("off %d n %d win %s: added %d, holds %d, want %d", off, n, win, added, got.Count(), want)
				}
			}
		}
	}
}

// TestInventorySinceChanges: only partitions changed after the mark are
// visited (without the minute of slack marks normally get).
func TestInventorySinceChanges(t *testing.T) {
	defer func(s time.Duration) { markSlack = s }(markSlack)
	markSlack = 0
	ctx := context.Background()
	ds := healtest.QuotesDataset()
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	for _, mode := range []InventoryMode{InventoryListed, InventoryTrusted} {
		t.Run(mode.String(), func(t *testing.T) {
			lake := NewLake(NewMemStore(), &Options{Allocator: mem, Inventory: mode})
			write := func(rows ...healtest.Row) {
				t.Helper()
				rec := healtest.Records(mem, ds, rows...)
				defer rec.Release()
				if err := lake.Write(ctx, ds, rec); err != nil {
					t.Fatal(err)
				}
			}
			day := time.Date(2024, 1, 2, 0, 0, 0, 0, time.UTC)
			for d := 0; d < 4; d++ {
				for _, k := range []string{"A", "B"} {
					write(healtest.Row{Key: k, Time: day.AddDate(0, 0, d), Price: 1})
				}
			}
			if mode == InventoryTrusted {
				if _, err := lake.Verify(ctx, ds, heal.Query{}); err != nil {
					t.Fatal(err)
				}
			}
			since := func(mark string) ([]string, string) {
				t.Helper()
				var parts []string
				next, err := lake.InventorySince(ctx, ds, heal.Query{}, mark, func(pi heal.PartitionInfo) error {
					parts = append(parts, fmt.Sprintf("%s:%d", pi.Partition, pi.Present.Count()))
					return nil
				})
				if err != nil {
					t.Fatal(err)
				}
				return parts, next
			}
			all, mark := since("")
			if len(all) != 8 {
				t.Fatalf("first call: %v", all)
			}
			if parts, next := since(mark); len(parts) != 0 || next != mark {
				t.Fatalf("nothing changed, yet %v (mark %s -> %s)", parts, mark, next)
			}
			time.Sleep(time.Millisecond)
			write(healtest.Row{Key: "A", Time: day.Add(time.Minute), Price: 2}, healtest.Row{Key: "B", Time: day.AddDate(0, 0, 3).Add(time.Minute), Price: 2})
			parts, next := since(mark)
			if want := []string{"quotes/A/2024-01-02:2", "quotes/B/2024-01-05:2"}; !slices.Equal(parts, want) || next <= mark {
				t.Fatalf("after two writes: %v (mark %s -> %s), want %v", parts, mark, next, want)
			}
			time.Sleep(time.Millisecond)
			if _, err := lake.Compact(ctx, ds, heal.Query{Keys: []string{"A"}}); err != nil {
				t.Fatal(err)
			}
			if parts, _ := since(next); !slices.Equal(parts, []string{"quotes/A/2024-01-02:2"}) {
				t.Fatalf("after compacting A: %v", parts)
			}
			old := seqAt(time.Now().Add(-indexRetention), 0)
			if parts, _ := since(old); len(parts) != 8 {
				t.Fatalf("a mark older than the index keeps changes must give everything: %v", parts)
			}
		})
	}
}

// TestSplitRows checks the grouping of Write against a model: the last row
// of each (key, time) wins, partitions in key then time order, rows sorted
// by time, for inputs in order, out of order and with repeats.
func TestSplitRows(t *testing.T) {
	ds := healtest.QuotesDataset()
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	day := time.Date(2024, 1, 2, 0, 0, 0, 0, time.UTC)
	rng := rand.New(rand.NewPCG(3, 4))
	for n := 0; n < 200; n++ {
		var rows []healtest.Row
		sorted := n%3 == 0
		for i := 0; i < 1+rng.IntN(60); i++ {
			k := string(rune('A' + rng.IntN(3)))
			m := rng.IntN(3000)
			if sorted {
				k, m = string(rune('A'+i/20)), i*97
			}
			rows = append(rows, healtest.Row{Key: k, Time: day.Add(time.Duration(m) * time.Minute), Price: float64(i)})
		}
		rec := healtest.Records(mem, ds, rows...)
		groups := splitRows(ds, rec)
		// The model: per partition, the last row index of each time.
		type pk struct {
			k string
			s int64
		}
		want := map[pk]map[int64]int{}
		for i, r := range rows {
			p := ds.PartitionOf(r.Key, r.Time)
			if want[pk{p.Key, p.Start.Unix()}] == nil {
				want[pk{p.Key, p.Start.Unix()}] = map[int64]int{}
			}
			want[pk{p.Key, p.Start.Unix()}][r.Time.Unix()] = i
		}
		if len(groups) != len(want) {
			t.Fatalf("%d groups, want %d", len(groups), len(want))
		}
		for gi, g := range groups {
			if gi > 0 {
				prev := groups[gi-1].p
				if prev.Key > g.p.Key || prev.Key == g.p.Key && !prev.Start.Before(g.p.Start) {
					t.Fatalf("groups out of order: %s then %s", prev, g.p)
				}
			}
			m := want[pk{g.p.Key, g.p.Start.Unix()}]
			if len(g.rows) != len(m) {
				t.Fatalf("%s: %d rows, want %d", g.p, len(g.rows), len(m))
			}
			for j, r := range g.rows {
				tm := rows[r].Time.Unix()
				if m[tm] != r || j > 0 && rows[g.rows[j-1]].Time.Unix() >= tm {
					t.Fatalf("%s: row %d (%v) is not the last of its time, or out of order", g.p, r, rows[r])
				}
			}
		}
		rec.Release()
	}
}
