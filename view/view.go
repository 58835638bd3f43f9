// Package view keeps a materialized current-state view of heal datasets:
// the latest row of every key, how fresh it is and how complete the recent
// past is, so that a dashboard or another service reads the state without
// scanning the lake. [View.Handler] serves it as a small HTTP JSON API:
//
//	GET /v1/health                         every dataset: freshness, completeness, status
//	GET /v1/datasets                       the datasets served
//	GET /v1/datasets/{name}/latest[?key=K] the latest row of every key (or of K)
//
// A View is fed by an engine's events (it is a [heal.Observer]) and by the
// lake: an event only marks a key, or every key, of a dataset dirty from
// some time on, without blocking the engine; [View.Sync] then re-reads from
// the lake, for each dirty key, the latest slot at or after that time, and
// [View.Refresh] rebuilds everything from the lake. [View.Run] does both
// in the background. Because the state is always read back from the lake,
// it is consistent with it after a repair: a repaired slot newer than a
// key's latest becomes its latest, an older one changes nothing.
//
// # Memory
//
// A View holds one row per key (as JSON) and one completeness figure per
// key, for at most [Options].MaxKeys keys per dataset; reading the latest
// row holds one partition of one key at a time.
package view

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"

	"github.com/selfheal/heal"
	"github.com/selfheal/heal/internal/jsonval"
)

// Options configures a [View]. A nil *Options, or any zero field, means the
// default written beside the field.
type Options struct {
	// Clock is the view's time, against which freshness is measured. nil:
	// the wall clock.
	Clock heal.Clock
	// Window is the span, ending Settle before the clock, whose
	// completeness the view reports. 0: 24h.
	Window time.Duration
	// Settle is how old a slot must be before the completeness counts it,
	// so a tick still landing is not reported missing. 0: one grain of the
	// dataset (the engine's default).
	Settle time.Duration
	// MaxKeys caps the keys kept per dataset; keys beyond it (in key
	// order when found by Refresh, in order of arrival after that) are not
	// tracked, and the dataset is reported Truncated. 0: 10000.
	MaxKeys int
	// StaleAfter is the age of a key's latest slot past which /v1/health
	// reports the key stale. 0: five grains of the dataset.
	StaleAfter time.Duration
	// MinCompleteness, when set, is the completeness below which /v1/health
	// reports a key incomplete. 0: completeness is reported, never judged.
	MinCompleteness float64
	// Logger receives failures of background syncs. nil: discard.
	Logger *slog.Logger
}

// Auditor audits a dataset over a window; *[heal.Engine] is one (an engine
// made with a nil Source audits read-only).
type Auditor interface {
	Audit(ctx context.Context, w heal.Window) (*heal.AuditReport, error)
}

// Track says how a [View] follows one dataset. A nil *Track tracks only
// the latest rows.
type Track struct {
	// Auditor gives the completeness of the recent window. nil: none is
	// reported.
	Auditor Auditor
	// DerivedFrom names the dataset this one is derived from: an engine's
	// EventDerived events of that dataset mark this one dirty.
	DerivedFrom string
}

// View is the current state of some datasets of one lake. It is safe for
// concurrent use.
type View struct {
	lake heal.Lake
	opts Options
	log  *slog.Logger
	wake chan struct{} // signalled, without blocking, when something is dirty

	syncMu sync.Mutex // one Sync or Refresh at a time

	mu   sync.Mutex
	sets map[string]*dataset
}

// dataset is the view's state of one dataset. Its fields are guarded by
// View.mu.
type dataset struct {
	ds      *heal.Dataset
	track   Track
	latest  map[string]*keyState
	order   []string // keys, sorted
	truncd  bool
	window  heal.Window // of the completeness figures
	audited time.Time   // when the completeness was computed
	synced  time.Time   // when the latest rows were last brought up to date
	err     error       // of the last Refresh or Sync of this dataset

	dirtyAll  time.Time            // every key is dirty from this slot on (zero: none)
	dirtyKeys map[string]time.Time // the key is dirty from this slot on
}

// keyState is one key's latest row and completeness.
type keyState struct {
	at    time.Time       // the latest slot held; zero: none read yet
	row   json.RawMessage // the row at that slot, as a JSON object
	audit *heal.KeyAudit  // nil: not audited
}

// New returns an empty view of lake. opts may be nil.
func New(lake heal.Lake, opts *Options) (*View, error) {
	if lake == nil {
		return nil, errors.New("heal/view: New: nil Lake")
	}
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.Clock == nil {
		o.Clock = heal.SystemClock{}
	}
	if o.Window <= 0 {
		o.Window = 24 * time.Hour
	}
	if o.MaxKeys <= 0 {
		o.MaxKeys = 10000
	}
	if o.MinCompleteness < 0 || o.MinCompleteness > 1 {
		return nil, fmt.Errorf("heal/view: New: Options.MinCompleteness %g: want a share between 0 and 1", o.MinCompleteness)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &View{lake: lake, opts: o, log: o.Logger, wake: make(chan struct{}, 1), sets: map[string]*dataset{}}, nil
}

// Add tracks ds. Its state is empty until the next [View.Refresh].
func (v *View) Add(ds *heal.Dataset, t *Track) error {
	if err := ds.Validate(); err != nil {
		return err
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.sets[ds.Name] != nil {
		return fmt.Errorf("heal/view: dataset %q is tracked already", ds.Name)
	}
	d := &dataset{ds: ds, latest: map[string]*keyState{}, dirtyKeys: map[string]time.Time{}}
	if t != nil {
		d.track = *t
	}
	v.sets[ds.Name] = d
	return nil
}

// Observe implements [heal.Observer]: a write, a repair or a derivation
// marks the keys it concerns dirty from the start of its window on. It
// never blocks and does no I/O; [View.Sync] (or [View.Run]) reads the lake.
func (v *View) Observe(ev heal.Event) {
	switch ev.Kind {
	case heal.EventWrite, heal.EventRepaired, heal.EventDerived:
	default:
		return
	}
	if ev.Err != nil || ev.Window.Empty() {
		return
	}
	v.mu.Lock()
	marked := false
	for _, d := range v.sets {
		if ev.Kind == heal.EventDerived {
			if d.track.DerivedFrom != ev.Dataset {
				continue
			}
		} else if d.ds.Name != ev.Dataset {
			continue
		}
		from := d.ds.Slot(ev.Window.Start)
		// An engine's EventWrite names one key of the request at most:
		// without a key, or for a write, every key is marked.
		if ev.Key == "" || ev.Kind == heal.EventWrite {
			if d.dirtyAll.IsZero() || from.Before(d.dirtyAll) {
				d.dirtyAll = from
			}
		} else if prev, ok := d.dirtyKeys[ev.Key]; !ok || from.Before(prev) {
			if _, known := d.latest[ev.Key]; known || len(d.latest) < v.opts.MaxKeys {
				d.dirtyKeys[ev.Key] = from
			}
		}
		marked = true
	}
	v.mu.Unlock()
	if marked {
		select {
		case v.wake <- struct{}{}:
		default:
		}
	}
}

// Refresh rebuilds the state of every dataset from the lake: the latest
// slot of every key from the lake's inventory (no data read), the row at
// that slot, and the completeness of the recent window from the Auditor.
// A dataset that fails keeps its previous state and reports the error in
// /v1/health; Refresh returns the errors joined.
func (v *View) Refresh(ctx context.Context) error {
	v.syncMu.Lock()
	defer v.syncMu.Unlock()
	var errs []error
	for _, d := range v.datasets() {
		v.mu.Lock()
		// What is dirty now is covered by the full read below.
		d.dirtyAll, d.dirtyKeys = time.Time{}, map[string]time.Time{}
		v.mu.Unlock()
		err := v.refresh(ctx, d)
		if err == nil {
			err = v.audit(ctx, d)
		}
		v.mu.Lock()
		d.err = err
		v.mu.Unlock()
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Sync brings the latest rows up to date with the events observed since the
// last Sync or Refresh, reading only the keys and times they concern. It
// does not recompute completeness.
func (v *View) Sync(ctx context.Context) error {
	v.syncMu.Lock()
	defer v.syncMu.Unlock()
	var errs []error
	for _, d := range v.datasets() {
		v.mu.Lock()
		all, keys := d.dirtyAll, d.dirtyKeys
		d.dirtyAll, d.dirtyKeys = time.Time{}, map[string]time.Time{}
		known := slices.Clone(d.order) // stored or audited keys
		v.mu.Unlock()
		if all.IsZero() && len(keys) == 0 {
			continue
		}
		var err error
		if !all.IsZero() {
			// Every key from all on: the keys known (a new key waits for the
			// next Refresh), or every key while none is known.
			var q []string
			if len(known) > 0 {
				q = known
			}
			err = v.update(ctx, d, q, all)
		}
		for k, from := range keys {
			if err != nil {
				break
			}
			if !all.IsZero() && !from.Before(all) && (len(known) == 0 || slices.Contains(known, k)) {
				continue // read above
			}
			err = v.update(ctx, d, []string{k}, from)
		}
		if err != nil {
			// Mark it dirty again so the next Sync retries.
			v.mu.Lock()
			if !all.IsZero() && (d.dirtyAll.IsZero() || all.Before(d.dirtyAll)) {
				d.dirtyAll = all
			}
			for k, from := range keys {
				if prev, ok := d.dirtyKeys[k]; !ok || from.Before(prev) {
					d.dirtyKeys[k] = from
				}
			}
			v.mu.Unlock()
			errs = append(errs, err)
		}
		v.mu.Lock()
		d.err = err
		if err == nil {
			d.synced = v.opts.Clock.Now().UTC()
		}
		v.mu.Unlock()
	}
	return errors.Join(errs...)
}

// Run keeps the view up to date until ctx ends: a Refresh at once and
// every refreshEvery (<=0: a minute), a Sync whenever an event marks
// something dirty. Failures are logged and retried; Run returns ctx's
// error.
func (v *View) Run(ctx context.Context, refreshEvery time.Duration) error {
	if refreshEvery <= 0 {
		refreshEvery = time.Minute
	}
	t := time.NewTicker(refreshEvery)
	defer t.Stop()
	if err := v.Refresh(ctx); err != nil && ctx.Err() == nil {
		v.log.Warn("heal/view: refresh failed", "err", err)
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			if err := v.Refresh(ctx); err != nil && ctx.Err() == nil {
				v.log.Warn("heal/view: refresh failed", "err", err)
			}
		case <-v.wake:
			if err := v.Sync(ctx); err != nil && ctx.Err() == nil {
				v.log.Warn("heal/view: sync failed", "err", err)
			}
		}
	}
}

func (v *View) datasets() []*dataset {
	v.mu.Lock()
	defer v.mu.Unlock()
	out := make([]*dataset, 0, len(v.sets))
	for _, d := range v.sets {
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ds.Name < out[j].ds.Name })
	return out
}

// refresh reads every key's latest slot from the lake's inventory, then
// the rows at those slots, and replaces the dataset's latest rows.
func (v *View) refresh(ctx context.Context, d *dataset) error {
	last := map[string]time.Time{}
	var order []string
	truncated := false
	err := v.lake.Inventory(ctx, d.ds, heal.Query{}, func(p heal.PartitionInfo) error {
		k := p.Partition.Key
		if _, ok := last[k]; !ok {
			if len(order) >= v.opts.MaxKeys {
				truncated = true
				return nil
			}
			order = append(order, k)
		}
		if t, ok := lastSlot(p.Present); ok && t.After(last[k]) {
			last[k] = t
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("heal/view: refresh %s: inventory: %w", d.ds.Name, err)
	}
	fresh := make(map[string]*keyState, len(order))
	for _, k := range order {
		ks := &keyState{}
		if at := last[k]; !at.IsZero() {
			row, ok, err := v.readRow(ctx, d.ds, k, at)
			if err != nil {
				return err
			}
			if ok {
				ks.at, ks.row = at, row
			}
		}
		fresh[k] = ks
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	for k, ks := range d.latest { // keep the completeness until the next audit
		switch {
		case ks.audit == nil:
		case fresh[k] != nil:
			fresh[k].audit = ks.audit
		case len(fresh) < v.opts.MaxKeys:
			fresh[k] = &keyState{audit: ks.audit} // audited, nothing stored
		}
	}
	d.latest, d.truncd = fresh, truncated
	d.order = sortedKeys(fresh)
	d.synced = v.opts.Clock.Now().UTC()
	return nil
}

// update re-reads the latest slot at or after from of keys (nil: every
// key) and takes it as the key's latest when it is not older than the
// current one (a derivation may have rewritten the same slot).
func (v *View) update(ctx context.Context, d *dataset, keys []string, from time.Time) error {
	// The far end stops where the lake can count time.
	q := heal.Query{Keys: keys, Window: heal.Window{Start: from, End: time.Unix(0, math.MaxInt64).UTC().Truncate(d.ds.Grain)}}
	last := map[string]time.Time{}
	err := v.lake.Inventory(ctx, d.ds, q, func(p heal.PartitionInfo) error {
		if t, ok := lastSlot(p.Present); ok && t.After(last[p.Partition.Key]) {
			last[p.Partition.Key] = t
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("heal/view: sync %s: inventory: %w", d.ds.Name, err)
	}
	for _, k := range sortedKeys(last) {
		at := last[k]
		v.mu.Lock()
		cur := d.latest[k]
		full := cur == nil && len(d.latest) >= v.opts.MaxKeys
		if full {
			d.truncd = true
		}
		v.mu.Unlock()
		if full || cur != nil && !cur.at.IsZero() && at.Before(cur.at) {
			continue
		}
		row, ok, err := v.readRow(ctx, d.ds, k, at)
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		v.mu.Lock()
		ks := d.latest[k]
		if ks == nil {
			if len(d.latest) >= v.opts.MaxKeys {
				d.truncd = true
				v.mu.Unlock()
				continue
			}
			ks = &keyState{}
			d.latest[k] = ks
			d.order = sortedKeys(d.latest)
		}
		if ks.at.IsZero() || !at.Before(ks.at) {
			ks.at, ks.row = at, row
		}
		v.mu.Unlock()
	}
	return nil
}

// audit recomputes the completeness of the recent window.
func (v *View) audit(ctx context.Context, d *dataset) error {
	if d.track.Auditor == nil {
		return nil
	}
	now := v.opts.Clock.Now()
	settle := v.opts.Settle
	if settle <= 0 {
		settle = d.ds.Grain
	}
	end := d.ds.Slot(now.Add(-settle)) // as the engine's Heal: slots still landing are not missing
	w := heal.Window{Start: end.Add(-v.opts.Window), End: end}
	rep, err := d.track.Auditor.Audit(ctx, w)
	if err != nil {
		return fmt.Errorf("heal/view: audit %s: %w", d.ds.Name, err)
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	for k, ks := range d.latest {
		ks.audit = nil
		if ks.at.IsZero() {
			delete(d.latest, k)
		}
	}
	for i := range rep.Keys {
		ka := rep.Keys[i]
		ks := d.latest[ka.Key]
		if ks == nil {
			if len(d.latest) >= v.opts.MaxKeys {
				d.truncd = true
				continue
			}
			ks = &keyState{}
			d.latest[ka.Key] = ks
		}
		ks.audit = &ka
	}
	d.order = sortedKeys(d.latest)
	d.window, d.audited = rep.Window, now.UTC()
	return nil
}

// readRow reads the row of key at slot at.
func (v *View) readRow(ctx context.Context, ds *heal.Dataset, key string, at time.Time) (json.RawMessage, bool, error) {
	rd, err := v.lake.Scan(ctx, ds, heal.Query{Keys: []string{key}, Window: heal.Window{Start: at, End: at.Add(ds.Grain)}})
	if err != nil {
		return nil, false, fmt.Errorf("heal/view: read %s %s at %s: %w", ds.Name, key, at.Format(time.RFC3339), err)
	}
	defer rd.Release()
	var row json.RawMessage
	for rd.Next() {
		rec := rd.Record()
		if n := int(rec.NumRows()); n > 0 {
			if row, err = rowJSON(rec, n-1); err != nil {
				return nil, false, fmt.Errorf("heal/view: read %s %s at %s: %w", ds.Name, key, at.Format(time.RFC3339), err)
			}
		}
	}
	if err := rd.Err(); err != nil {
		return nil, false, fmt.Errorf("heal/view: read %s %s at %s: %w", ds.Name, key, at.Format(time.RFC3339), err)
	}
	return row, row != nil, nil
}

// rowJSON renders row i of rec as a JSON object of column name to value:
// timestamps as RFC 3339 in UTC, NaN and infinities as strings, nulls as
// null, everything else as Arrow marshals it.
func rowJSON(rec arrow.Record, i int) (json.RawMessage, error) {
	obj := make(map[string]any, rec.NumCols())
	for c, f := range rec.Schema().Fields() {
		obj[f.Name] = valueOf(rec.Column(c), i)
	}
	b, err := json.Marshal(obj)
	if err != nil {
		return nil, err
	}
	return b, nil
}

func valueOf(col arrow.Array, i int) any {
	if col.IsNull(i) {
		return nil
	}
	switch a := col.(type) {
	case *array.Timestamp:
		return a.Value(i).ToTime(a.DataType().(*arrow.TimestampType).Unit).UTC().Format(time.RFC3339Nano)
	case *array.Float64:
		return jsonval.Float(a.Value(i))
	case *array.Float32:
		return jsonval.Float(float64(a.Value(i)))
	}
	return col.GetOneForMarshal(i)
}

// lastSlot is the latest instant in s.
func lastSlot(s heal.Slots) (time.Time, bool) {
	var last time.Time
	ok := false
	for t := range s.All() {
		last, ok = t, true
	}
	return last, ok
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
