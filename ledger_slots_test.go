package heal

import (
	"context"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/selfheal/heal/internal/span"
)

func sameState(a, b *slotState) bool {
	return a.Status == b.Status && a.Attempts == b.Attempts && a.Err == b.Err && a.Since.Equal(b.Since)
}

// TestSlotMapGroups: slot states are written grouped by state with
// delta-coded ranges and read back exactly; scattered one-slot holes cost
// a few bytes each; the two older snapshot forms are still read; damaged
// ranges are refused.
func TestSlotMapGroups(t *testing.T) {
	t0 := time.Date(2024, 3, 4, 14, 0, 0, 0, time.UTC)
	m := slotMap{}
	for i := int64(28_000_100); i < 28_000_160; i++ { // one repair of an hour
		m[i] = &slotState{Status: slotRepaired, Since: t0}
	}
	m[28_000_160] = &slotState{Status: slotEmpty, Since: t0}
	m[28_000_161] = &slotState{Status: slotRepaired, Since: t0.Add(time.Hour)} // another episode
	m[28_000_300] = &slotState{Status: slotOpen, Attempts: 2, Err: "503", Since: t0}
	m[28_000_301] = &slotState{Status: slotOpen, Attempts: 2, Err: "503", Since: t0}
	m[28_000_302] = &slotState{Status: slotOpen, Attempts: 3, Err: "503", Since: t0}
	for i := int64(0); i < 1000; i++ { // scattered holes, one repair
		m[28_010_000+11*i] = &slotState{Status: slotRepaired, Since: t0.Add(2 * time.Hour)}
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var groups []slotGroup
	if err := json.Unmarshal(b, &groups); err != nil {
		t.Fatal(err)
	}
	if len(groups) != 6 {
		t.Fatalf("%d groups, want 6 (one per state): %s", len(groups), b)
	}
	if len(b) > 1000*4+600 {
		t.Fatalf("%d bytes for 1,066 slots in 6 states: the scattered ones should cost about 3 bytes each", len(b))
	}
	var back slotMap
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if len(back) != len(m) {
		t.Fatalf("read back %d slots, want %d", len(back), len(m))
	}
	for i, s := range m {
		if g := back[i]; g == nil || !sameState(g, s) {
			t.Fatalf("slot %d: read back %+v, want %+v", i, g, s)
		}
	}
	if back[28_000_100] == back[28_000_101] {
		t.Fatal("slots of one group share a state: changing one would change all")
	}

	old := `{"7":{"s":"repaired","t":"2024-03-04T14:00:00Z"},"9":{"s":"open","a":1,"e":"x","t":"2024-03-04T14:00:00Z"}}`
	runs := `[{"lo":7,"hi":8,"s":"repaired","t":"2024-03-04T14:00:00Z"},{"lo":9,"hi":10,"s":"open","a":1,"e":"x","t":"2024-03-04T14:00:00Z"}]`
	want := slotMap{7: {Status: slotRepaired, Since: t0}, 9: {Status: slotOpen, Attempts: 1, Err: "x", Since: t0}}
	for _, in := range []string{old, runs} {
		var got slotMap
		if err := json.Unmarshal([]byte(in), &got); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%s read as %v", in, got)
		}
	}
	for _, bad := range []string{`[{"lo":5,"hi":3,"s":"open"}]`, `[{"s":"open","r":[[0,99999999999]]}]`, `[{"s":"open","r":[5,-2]}]`, `[{"s":"open","r":["x"]}]`, `{"x":{}}`} {
		var m slotMap
		if err := json.Unmarshal([]byte(bad), &m); err == nil {
			t.Errorf("%s read without error", bad)
		}
	}
}

// TestLedgerSnapshotSize: a snapshot of a ledger that repaired 500 keys
// an hour at a time for a day holds a few runs per key, not an entry per
// slot, and a fresh ledger reads it back to the same state.
func TestLedgerSnapshotSize(t *testing.T) {
	ctx := context.Background()
	store := &mapMeta{m: map[string][]byte{}}
	t0 := time.Date(2024, 3, 4, 0, 0, 0, 0, time.UTC)
	l := newLedger(store, "quotes", &stillClock{t0.Add(25 * time.Hour)})
	l.loaded = true
	base := t0.Unix() / 60
	for k := 0; k < 500; k++ {
		key := "K" + strings.Repeat("x", k%7) + string(rune('a'+k%26)) + string(rune('a'+k/26))
		for h := int64(0); h < 24; h++ {
			lo := base + h*60
			l.record(ledgerEvent{Kind: "repaired", Key: key, Slots: span.Set{{Lo: lo, Hi: lo + 55}}, At: t0.Add(time.Duration(h+1) * time.Hour)})
			l.record(ledgerEvent{Kind: "empty", Key: key, Slots: span.Set{{Lo: lo + 55, Hi: lo + 60}}, At: t0.Add(time.Duration(h+1) * time.Hour)})
		}
	}
	if err := l.flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := l.snapshot(ctx); err != nil {
		t.Fatal(err)
	}
	names, _ := store.ListMeta(ctx, "ledger/quotes/")
	if len(names) != 1 {
		t.Fatalf("%d objects after the snapshot, want 1", len(names))
	}
	size := len(store.m[names[0]])
	// 500 keys x 48 groups of one range; an entry per slot was ~45 bytes x 720,000.
	if size > 500*48*100 {
		t.Fatalf("snapshot of 720,000 settled slots in 48 groups per key is %d bytes", size)
	}
	fresh := newLedger(store, "quotes", &stillClock{t0.Add(25 * time.Hour)})
	if err := fresh.load(ctx); err != nil {
		t.Fatal(err)
	}
	var n, repaired int
	fresh.view(func(st *ledgerState) {
		for _, m := range st.Slots {
			for _, s := range m {
				n++
				if s.Status == slotRepaired {
					repaired++
				}
			}
		}
	})
	if n != 500*24*60 || repaired != 500*24*55 {
		t.Fatalf("reloaded %d slots, %d repaired; want %d, %d", n, repaired, 500*24*60, 500*24*55)
	}
	t.Logf("snapshot: %d bytes for %d slots", size, n)
}
