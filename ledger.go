package heal

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/selfheal/heal/internal/span"
)

// The ledger is the engine's memory, kept inside the lake (MetaStore) under
// ledger/<dataset>/ as an append-only log: one create-only JSON object per
// batch of events, named by time and a random suffix so two engines never
// overwrite each other. A restarted engine folds the log and carries on:
// attempt counts, confirmed-empty slots, unrepairable gaps and delivered
// alarms survive it. Every snapshotEvery objects the engine writes a
// snapshot of the folded state and deletes the objects it covers.

const snapshotEvery = 200

// slot statuses
const (
	slotOpen         = "open"
	slotRepaired     = "repaired"
	slotEmpty        = "empty"
	slotUnrepairable = "unrepairable"
	slotPresent      = "present" // filled by someone else: live data, another engine
)

type ledgerEvent struct {
	Kind     string       `json:"kind"` // gap, attempt, repaired, empty, unrepairable, alarm, resolved, dirty, clean, audit, snapshot
	At       time.Time    `json:"at"`
	Key      string       `json:"key,omitempty"`
	Slots    []span.Range `json:"slots,omitempty"` // slot indices (unix time / grain)
	Attempts int          `json:"attempts,omitempty"`
	Err      string       `json:"err,omitempty"`
	Alarm    *alarmRecord `json:"alarm,omitempty"`
	Audit    *AuditRecord `json:"audit,omitempty"`
	Snapshot *ledgerState `json:"snapshot,omitempty"`
	// Covers, on a snapshot, names the objects folded into it. A reader
	// folds every other object on top of the snapshot, whatever its name,
	// so an object another writer put while the snapshot was being made is
	// never lost. nil (snapshots before covers were kept): the snapshot
	// replaces everything folded before it.
	Covers []string `json:"covers,omitempty"`
}

type slotState struct {
	Status   string `json:"s"`
	Attempts int    `json:"a,omitempty"`
	Err      string `json:"e,omitempty"`
	// Since is when the slot entered its status (alarm time for unrepairable).
	Since time.Time `json:"t"`
}

type alarmRecord struct {
	ID        string       `json:"id"`
	Key       string       `json:"key"`
	Stage     Stage        `json:"stage"`
	Slots     []span.Range `json:"slots"`
	Attempts  int          `json:"attempts"`
	LastError string       `json:"last_error"`
	At        time.Time    `json:"at"`
	Delivered bool         `json:"delivered"`
	Resolved  bool         `json:"resolved"`
	Notified  bool         `json:"notified"` // resolved notice delivered
}

// AuditRecord is one audit as the ledger keeps it.
type AuditRecord struct {
	At         time.Time `json:"at"`
	Window     Window    `json:"window"`
	Expected   int       `json:"expected"`
	Present    int       `json:"present"`
	Missing    int       `json:"missing"`
	Duplicates int64     `json:"duplicates"`
	Repaired   int       `json:"repaired"`
	Empty      int       `json:"empty"`
	Calls      int       `json:"calls"`
	Alarms     int       `json:"alarms"`
}

type ledgerState struct {
	Slots  map[string]slotMap      `json:"slots"` // key -> slot -> state
	Alarms map[string]*alarmRecord `json:"alarms"`
	Dirty  map[string]span.Set     `json:"dirty"` // key -> input slots whose derived windows are pending
	Audits []AuditRecord           `json:"audits"`
}

func newLedgerState() *ledgerState {
	return &ledgerState{Slots: map[string]slotMap{}, Alarms: map[string]*alarmRecord{}, Dirty: map[string]span.Set{}}
}

type ledger struct {
	store  MetaStore
	prefix string
	clock  Clock

	// gate, if set, is asked before a snapshot: ok false skips it (another
	// writer may be snapshotting), and release is called after it. Only
	// one writer at a time may snapshot, or two snapshots could each drop
	// objects the other covers; see [Engine] sharding.
	gate func(ctx context.Context) (release func(), ok bool)
	// loaded is set by the first load. Until then the ledger keeps only
	// the names of the objects it writes.
	loaded bool
	// appendOnly is set on a worker's ledger, which only appends the
	// outcomes of its jobs: until it is loaded, it never snapshots.
	appendOnly bool

	mu      sync.Mutex
	st      *ledgerState
	read    map[string]bool          // objects folded already
	events  map[string][]ledgerEvent // events of the objects folded since the last snapshot, to fold again over a snapshot that does not cover them
	covered map[string]bool          // objects a folded snapshot covers, until a listing no longer shows them
	objects int                      // objects in the log since the last snapshot
	last    int64                    // the last name's time, to keep names increasing
	pending []ledgerEvent
}

func newLedger(store MetaStore, dataset string, clock Clock) *ledger {
	return &ledger{
		store: store, prefix: "ledger/" + dataset + "/", clock: clock, st: newLedgerState(),
		read: map[string]bool{}, events: map[string][]ledgerEvent{}, covered: map[string]bool{},
	}
}

// load folds the objects not read yet (all of them the first time), in
// name order. Several writers may append at once (shard engines, workers):
// a snapshot replaces the state with what it covers and the objects it does
// not cover are folded again on top of it, so the fold ends the same
// whatever order the writers' objects were named in.
func (l *ledger) load(ctx context.Context) error {
	names, err := l.store.ListMeta(ctx, l.prefix)
	if err != nil {
		return fmt.Errorf("heal: ledger: list: %w", err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	first := !l.loaded
	if first {
		// What this ledger wrote before (jobs it ran) is folded from the
		// log like the rest; what it recorded and did not write is applied
		// again after.
		l.st = newLedgerState()
		clear(l.read)
		defer func() {
			for _, ev := range l.pending {
				l.apply(ev)
			}
		}()
	}
	l.loaded = true
	listed := make(map[string]bool, len(names))
	for _, n := range names {
		listed[n] = true
	}
	for n := range l.covered { // deleted by now; names are never reused
		if !listed[n] {
			delete(l.covered, n)
			delete(l.read, n)
		}
	}
	for _, n := range names {
		if l.read[n] || !strings.HasSuffix(n, ".json") {
			continue
		}
		b, err := l.store.GetMeta(ctx, n)
		if errors.Is(err, ErrNotFound) {
			continue // deleted by a concurrent snapshot; its events are in the snapshot
		}
		if err != nil {
			return fmt.Errorf("heal: ledger: read %s: %w", n, err)
		}
		var evs []ledgerEvent
		if err := json.Unmarshal(b, &evs); err != nil {
			return fmt.Errorf("heal: ledger: decode %s: %w", n, err)
		}
		l.fold(n, evs)
		var t int64
		if _, err := fmt.Sscanf(strings.TrimPrefix(n, l.prefix), "%d-", &t); err == nil && t > l.last {
			l.last = t // a restarted engine writes after what it read, even if its clock is behind
		}
	}
	return nil
}

// fold applies the events of object n. Caller holds mu.
func (l *ledger) fold(n string, evs []ledgerEvent) {
	l.read[n] = true
	if len(evs) != 1 || evs[0].Kind != "snapshot" {
		for _, ev := range evs {
			l.apply(ev)
		}
		l.events[n] = evs
		l.objects++
		return
	}
	snap := evs[0]
	l.apply(snap)
	covers := make(map[string]bool, len(snap.Covers))
	for _, c := range snap.Covers {
		covers[c] = true
	}
	var again []string
	for name := range l.events {
		if snap.Covers != nil && !covers[name] {
			again = append(again, name)
			continue
		}
		delete(l.events, name)
		if l.read[name] {
			l.covered[name] = true
		}
	}
	sort.Strings(again)
	for _, name := range again {
		for _, ev := range l.events[name] {
			l.apply(ev)
		}
	}
	for _, ev := range l.pending { // recorded here, not written yet
		l.apply(ev)
	}
	for _, c := range snap.Covers {
		if !l.read[c] {
			l.read[c], l.covered[c] = true, true // not folded yet: it is in the snapshot
		}
	}
	l.objects = 1 + len(again)
}

// record applies ev now and queues it for the next flush.
func (l *ledger) record(ev ledgerEvent) {
	if ev.At.IsZero() {
		ev.At = l.clock.Now().UTC()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.apply(ev)
	l.pending = append(l.pending, ev)
}

// flush writes the queued events as one object.
func (l *ledger) flush(ctx context.Context) error {
	l.mu.Lock()
	evs := l.pending
	l.pending = nil
	l.mu.Unlock()
	if len(evs) == 0 {
		return nil
	}
	if err := l.put(ctx, evs); err != nil {
		l.mu.Lock()
		l.pending = append(evs, l.pending...)
		l.mu.Unlock()
		return err
	}
	l.mu.Lock()
	needSnap := l.objects >= snapshotEvery && (l.loaded || !l.appendOnly)
	l.mu.Unlock()
	if !needSnap {
		return nil
	}
	if l.gate != nil {
		release, ok := l.gate(ctx)
		if !ok {
			return nil // another writer is snapshotting; a later flush tries again
		}
		defer release()
	}
	// Fold every object first (another writer's snapshot included), so
	// the snapshot covers all it replaces.
	if err := l.load(ctx); err != nil {
		return err
	}
	return l.snapshot(ctx)
}

func (l *ledger) put(ctx context.Context, evs []ledgerEvent) error {
	b, err := json.Marshal(evs)
	if err != nil {
		return fmt.Errorf("heal: ledger: encode: %w", err)
	}
	return l.putEncoded(ctx, b, evs, false)
}

// putEncoded writes b, the encoding of evs or (snapshot) of a snapshot.
func (l *ledger) putEncoded(ctx context.Context, b []byte, evs []ledgerEvent, snapshot bool) error {
	name := l.prefix + l.seq() + ".json"
	if err := l.store.PutMeta(ctx, name, b); err != nil {
		return fmt.Errorf("heal: ledger: write %s: %w", name, err)
	}
	l.mu.Lock()
	l.read[name] = true
	switch {
	case snapshot:
		l.objects = 1
	case !l.loaded: // a first load folds it from the log
		l.objects++
	default:
		l.events[name] = evs
		l.objects++
	}
	l.mu.Unlock()
	return nil
}

// retention is how long settled slot entries (repaired, empty, present)
// stay in snapshots; open and unrepairable ones stay until they settle.
const retention = 90 * 24 * time.Hour

// snapshot writes the folded state and deletes the objects it covers.
func (l *ledger) snapshot(ctx context.Context) error {
	l.mu.Lock()
	cut := l.clock.Now().Add(-retention)
	for k, m := range l.st.Slots {
		for i, s := range m {
			if s.Status != slotOpen && s.Status != slotUnrepairable && s.Since.Before(cut) {
				delete(m, i)
			}
		}
		if len(m) == 0 {
			delete(l.st.Slots, k)
		}
	}
	var covered []string
	for n := range l.read {
		covered = append(covered, n)
	}
	sort.Strings(covered)
	// Encoded under the lock, as the state is now: no copy of it is kept.
	b, err := json.Marshal([]ledgerEvent{{Kind: "snapshot", At: l.clock.Now().UTC(), Snapshot: l.st, Covers: covered}})
	l.mu.Unlock()
	if err != nil {
		return fmt.Errorf("heal: ledger: encode snapshot: %w", err)
	}
	if err := l.putEncoded(ctx, b, nil, true); err != nil {
		return err
	}
	l.mu.Lock()
	for _, n := range covered {
		delete(l.events, n)
	}
	l.mu.Unlock()
	for _, n := range covered {
		if err := l.store.DeleteMeta(ctx, n); err != nil {
			return fmt.Errorf("heal: ledger: prune %s: %w", n, err)
		}
		l.mu.Lock()
		delete(l.read, n)
		delete(l.covered, n)
		l.mu.Unlock()
	}
	return nil
}

// seq names the next object: time, then a random suffix that keeps two
// engines apart. Within one engine names strictly increase even when the
// clock stands still, so the log folds in the order it was written.
func (l *ledger) seq() string {
	var r [4]byte
	_, _ = rand.Read(r[:])
	l.mu.Lock()
	n := l.clock.Now().UnixNano()
	if n <= l.last {
		n = l.last + 1
	}
	l.last = n
	l.mu.Unlock()
	return fmt.Sprintf("%020d-%s", n, hex.EncodeToString(r[:]))
}

func (l *ledger) slot(key string, i int64) *slotState {
	m := l.st.Slots[key]
	if m == nil {
		m = slotMap{}
		l.st.Slots[key] = m
	}
	s := m[i]
	if s == nil {
		s = &slotState{Status: slotOpen}
		m[i] = s
	}
	return s
}

// apply folds one event into the state. Caller holds mu.
func (l *ledger) apply(ev ledgerEvent) {
	st := l.st
	each := func(f func(*slotState)) {
		for _, r := range ev.Slots {
			for i := r.Lo; i < r.Hi; i++ {
				f(l.slot(ev.Key, i))
			}
		}
	}
	switch ev.Kind {
	case "snapshot":
		if ev.Snapshot != nil {
			*st = *ev.Snapshot
			if st.Slots == nil {
				st.Slots = map[string]slotMap{}
			}
			if st.Alarms == nil {
				st.Alarms = map[string]*alarmRecord{}
			}
			if st.Dirty == nil {
				st.Dirty = map[string]span.Set{}
			}
		}
	case "gap":
		each(func(s *slotState) {
			if s.Status != slotUnrepairable {
				if s.Status != slotOpen {
					s.Attempts = 0
				}
				s.Status, s.Since = slotOpen, ev.At
			}
		})
	case "attempt":
		each(func(s *slotState) { s.Attempts++; s.Err = ev.Err })
	case "repaired":
		each(func(s *slotState) { s.Status, s.Since, s.Err = slotRepaired, ev.At, "" })
	case "empty":
		each(func(s *slotState) { s.Status, s.Since = slotEmpty, ev.At })
	case "unrepairable":
		each(func(s *slotState) { s.Status, s.Since, s.Err = slotUnrepairable, ev.At, ev.Err })
	case "present": // filled by someone else (live, another engine): the gap is closed
		each(func(s *slotState) {
			if s.Status == slotOpen || s.Status == slotUnrepairable {
				s.Status, s.Since = slotPresent, ev.At
			}
		})
	case "alarm":
		if ev.Alarm != nil {
			// Flags only ever turn on, so folding two engines' logs in any
			// order never un-delivers an alarm.
			a := *ev.Alarm
			if old := st.Alarms[a.ID]; old != nil {
				a.Delivered = a.Delivered || old.Delivered
				a.Resolved = a.Resolved || old.Resolved
				a.Notified = a.Notified || old.Notified
			}
			st.Alarms[a.ID] = &a
		}
	case "resolved":
		if ev.Alarm != nil {
			if a := st.Alarms[ev.Alarm.ID]; a != nil {
				a.Resolved, a.Notified = true, ev.Alarm.Notified
			}
		}
	case "dirty":
		st.Dirty[ev.Key] = span.Union(st.Dirty[ev.Key], ev.Slots)
	case "clean":
		st.Dirty[ev.Key] = span.Subtract(st.Dirty[ev.Key], ev.Slots)
		if len(st.Dirty[ev.Key]) == 0 {
			delete(st.Dirty, ev.Key)
		}
	case "audit":
		if ev.Audit != nil {
			st.Audits = append(st.Audits, *ev.Audit)
			if n := len(st.Audits); n > 1000 {
				st.Audits = append([]AuditRecord(nil), st.Audits[n-1000:]...)
			}
		}
	}
}

// view runs f with the state locked.
func (l *ledger) view(f func(st *ledgerState)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	f(l.st)
}
