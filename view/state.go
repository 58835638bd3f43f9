package view

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/selfheal/heal"
)

// Latest is one key's current state, as GET /v1/datasets/{name}/latest
// reports it.
type Latest struct {
	Key string `json:"key"`
	// Time is the key's latest slot held in the lake; nil when the lake
	// holds nothing for the key (it is only audited).
	Time *time.Time `json:"time"`
	// AgeSeconds is how old Time is against the view's clock.
	AgeSeconds float64 `json:"age_seconds,omitempty"`
	// Stale is set when the age exceeds Options.StaleAfter, or nothing is held.
	Stale bool `json:"stale"`
	// Row is the row at Time: column name to value; null when nothing is held.
	Row json.RawMessage `json:"row"`
	// Completeness is the key's share of the recent window; nil when the
	// dataset has no Auditor.
	Completeness *Completeness `json:"completeness,omitempty"`
}

// Completeness is what an audit of the recent window found for one key, or
// a whole dataset.
type Completeness struct {
	Start    time.Time `json:"start"`
	End      time.Time `json:"end"`
	Expected int       `json:"expected"`
	Present  int       `json:"present"`
	Empty    int       `json:"empty"`   // confirmed empty by the source
	Missing  int       `json:"missing"` // neither held nor confirmed empty
	// Share is (Present+Empty)/Expected, 1 when nothing is expected.
	Share float64 `json:"share"`
	// Incomplete is set when Share is below Options.MinCompleteness.
	Incomplete bool `json:"incomplete,omitempty"`
}

func (c *Completeness) add(k heal.KeyAudit) {
	c.Expected += k.Expected
	c.Present += k.Present
	c.Empty += k.Empty
	c.Missing += k.Missing
	c.Share = 1
	if c.Expected > 0 {
		c.Share = float64(c.Present+c.Empty) / float64(c.Expected)
	}
}

// State is a dataset's current state, as GET /v1/datasets/{name}/latest
// reports it.
type State struct {
	Dataset string    `json:"dataset"`
	Key     string    `json:"key_column"`
	Time    string    `json:"time_column"`
	Grain   string    `json:"grain"`
	AsOf    time.Time `json:"as_of"` // the view's clock when the state was taken
	// SyncedAt is when the latest rows were last read from the lake (zero:
	// never); AuditedAt when the completeness was last computed.
	SyncedAt  time.Time `json:"synced_at"`
	AuditedAt time.Time `json:"audited_at,omitzero"`
	// Truncated is set when the dataset has more keys than Options.MaxKeys.
	Truncated bool `json:"truncated,omitempty"`
	// Completeness sums the keys'; nil without an Auditor.
	Completeness *Completeness `json:"completeness,omitempty"`
	Keys         []Latest      `json:"keys"`
	// Error is the last refresh's or sync's failure, if any; the state is
	// then the last one read.
	Error string `json:"error,omitempty"`
}

// Health is the state of every dataset, summed up, as GET /v1/health
// reports it.
type Health struct {
	// Status is "ok", or "degraded" when some dataset has stale or
	// incomplete keys or failed to refresh.
	Status   string          `json:"status"`
	AsOf     time.Time       `json:"as_of"`
	Datasets []DatasetHealth `json:"datasets"`
}

// DatasetHealth is one dataset's line of a [Health].
type DatasetHealth struct {
	Name string `json:"name"`
	Keys int    `json:"keys"`
	// Latest is the newest slot of any key; Oldest the oldest of the keys'
	// latest slots, whose age is MaxAgeSeconds.
	Latest        *time.Time    `json:"latest"`
	Oldest        *time.Time    `json:"oldest"`
	MaxAgeSeconds float64       `json:"max_age_seconds"`
	Stale         []string      `json:"stale"`
	Incomplete    []string      `json:"incomplete"`
	Completeness  *Completeness `json:"completeness,omitempty"`
	SyncedAt      time.Time     `json:"synced_at"`
	Error         string        `json:"error,omitempty"`
}

// Datasets returns the names of the datasets tracked, sorted.
func (v *View) Datasets() []string {
	var out []string
	for _, d := range v.datasets() {
		out = append(out, d.ds.Name)
	}
	return out
}

// State returns the current state of the named dataset; with keys, only
// of those keys (an unknown one is an error for which errors.Is(err,
// heal.ErrNotFound)). An untracked dataset gives such an error too.
func (v *View) State(name string, keys ...string) (*State, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	d := v.sets[name]
	if d == nil {
		return nil, fmt.Errorf("heal/view: dataset %q is not served: %w", name, heal.ErrNotFound)
	}
	now := v.opts.Clock.Now().UTC()
	st := &State{
		Dataset: d.ds.Name, Key: d.ds.Key, Time: d.ds.Time, Grain: d.ds.Grain.String(), AsOf: now,
		SyncedAt: d.synced, AuditedAt: d.audited, Truncated: d.truncd, Keys: []Latest{},
	}
	if d.err != nil {
		st.Error = d.err.Error()
	}
	want := d.order
	if len(keys) > 0 {
		for _, k := range keys {
			if d.latest[k] == nil {
				return nil, fmt.Errorf("heal/view: dataset %q has no key %q: %w", name, k, heal.ErrNotFound)
			}
		}
		want = keys
	}
	if d.track.Auditor != nil && !d.audited.IsZero() {
		st.Completeness = &Completeness{Start: d.window.Start, End: d.window.End, Share: 1}
	}
	for _, k := range want {
		l := v.latestOf(d, k, now)
		if l.Completeness != nil && st.Completeness != nil {
			st.Completeness.add(heal.KeyAudit{Expected: l.Completeness.Expected, Present: l.Completeness.Present,
				Empty: l.Completeness.Empty, Missing: l.Completeness.Missing})
		}
		st.Keys = append(st.Keys, l)
	}
	if st.Completeness != nil {
		st.Completeness.Incomplete = st.Completeness.Share < v.opts.MinCompleteness
	}
	return st, nil
}

// latestOf renders one key's state. v.mu is held.
func (v *View) latestOf(d *dataset, k string, now time.Time) Latest {
	ks := d.latest[k]
	l := Latest{Key: k, Row: json.RawMessage("null"), Stale: true}
	if !ks.at.IsZero() {
		at := ks.at
		l.Time, l.Row = &at, ks.row
		age := now.Sub(at)
		l.AgeSeconds = age.Seconds()
		l.Stale = age > v.staleAfter(d)
	}
	if a := ks.audit; a != nil {
		c := &Completeness{Start: d.window.Start, End: d.window.End}
		c.add(*a)
		c.Incomplete = c.Share < v.opts.MinCompleteness
		l.Completeness = c
	}
	return l
}

func (v *View) staleAfter(d *dataset) time.Duration {
	if v.opts.StaleAfter > 0 {
		return v.opts.StaleAfter
	}
	return 5 * d.ds.Grain
}

// Health sums up every dataset.
func (v *View) Health() *Health {
	h := &Health{Status: "ok", AsOf: v.opts.Clock.Now().UTC(), Datasets: []DatasetHealth{}}
	for _, name := range v.Datasets() {
		st, err := v.State(name)
		if err != nil {
			continue // removed meanwhile: cannot happen, datasets are never removed
		}
		dh := DatasetHealth{Name: name, Keys: len(st.Keys), Stale: []string{}, Incomplete: []string{},
			Completeness: st.Completeness, SyncedAt: st.SyncedAt, Error: st.Error}
		for _, l := range st.Keys {
			if l.Stale {
				dh.Stale = append(dh.Stale, l.Key)
			}
			if l.Completeness != nil && l.Completeness.Incomplete {
				dh.Incomplete = append(dh.Incomplete, l.Key)
			}
			if l.Time == nil {
				continue
			}
			if dh.Latest == nil || l.Time.After(*dh.Latest) {
				dh.Latest = l.Time
			}
			if dh.Oldest == nil || l.Time.Before(*dh.Oldest) {
				dh.Oldest = l.Time
				dh.MaxAgeSeconds = l.AgeSeconds
			}
		}
		if len(dh.Stale) > 0 || len(dh.Incomplete) > 0 || dh.Error != "" || st.SyncedAt.IsZero() {
			h.Status = "degraded"
		}
		h.Datasets = append(h.Datasets, dh)
	}
	return h
}
