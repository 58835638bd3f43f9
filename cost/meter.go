package cost

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/selfheal/heal"
	"github.com/selfheal/heal/sink"
)

// Request is a kind of lake request, as S3 bills them.
type Request string

// The kinds of lake request.
const (
	Put    Request = "PUT"    // PUT and POST (a multipart upload's parts, its start and completion)
	Get    Request = "GET"    // GET and HEAD
	List   Request = "LIST"   // one page of up to 1,000 names
	Delete Request = "DELETE" // free on S3
)

// RequestKinds returns the kinds of lake request in display order.
func RequestKinds() []Request { return []Request{Put, Get, List, Delete} }

// StageOther is the stage [Usage] is filed under when the call's ctx holds
// no [heal.Stage]: work outside an engine's cycle (a tool compacting the
// lake, the caller's own writes).
const StageOther heal.Stage = "other"

// Usage is what one stage spent in one interval.
type Usage struct {
	SourceCalls  int64             `json:"source_calls,omitempty"`  // source calls, failed ones included
	SourceErrors int64             `json:"source_errors,omitempty"` // failed source calls (no-data answers excluded)
	SourceBytes  int64             `json:"source_bytes,omitempty"`  // response bytes, where known
	SourceTime   time.Duration     `json:"source_ns,omitempty"`     // sum of the calls' Elapsed (engine clock)
	Derived      int64             `json:"derived,omitempty"`       // derivations (EventDerived)
	DeriveTime   time.Duration     `json:"derive_ns,omitempty"`     // sum of their Elapsed (engine clock)
	Requests     map[Request]int64 `json:"requests,omitempty"`      // lake requests by kind
	BytesWritten int64             `json:"bytes_written,omitempty"` // bytes put into the lake
	BytesRead    int64             `json:"bytes_read,omitempty"`    // bytes read from the lake
	LakeTime     time.Duration     `json:"lake_ns,omitempty"`       // wall time inside lake requests
	// WallBusy is Busy on the wall clock: the event durations divided by
	// the record's ClockRate, plus LakeTime. Set when a record is made.
	WallBusy time.Duration `json:"wall_busy_ns,omitempty"`
	CPU      time.Duration `json:"cpu_ns,omitempty"` // the stage's estimated share of process CPU
}

// Busy is the time the stage is known to have spent: source calls,
// derivations and lake requests (the first two on the engine's clock).
func (u *Usage) Busy() time.Duration { return u.SourceTime + u.DeriveTime + u.LakeTime }

// wallBusy is Busy on the wall clock, the engine's clock running at rate
// engine seconds per wall second.
func (u *Usage) wallBusy(rate float64) float64 {
	return float64(u.SourceTime+u.DeriveTime)/rate + float64(u.LakeTime)
}

// Add adds o's counts to u.
func (u *Usage) Add(o *Usage) {
	if o == nil {
		return
	}
	u.SourceCalls += o.SourceCalls
	u.SourceErrors += o.SourceErrors
	u.SourceBytes += o.SourceBytes
	u.SourceTime += o.SourceTime
	u.Derived += o.Derived
	u.DeriveTime += o.DeriveTime
	for k, v := range o.Requests {
		if u.Requests == nil {
			u.Requests = map[Request]int64{}
		}
		u.Requests[k] += v
	}
	u.BytesWritten += o.BytesWritten
	u.BytesRead += o.BytesRead
	u.LakeTime += o.LakeTime
	u.WallBusy += o.WallBusy
	u.CPU += o.CPU
}

// RequestCount is the number of lake requests of every kind.
func (u *Usage) RequestCount() int64 {
	var n int64
	for _, v := range u.Requests {
		n += v
	}
	return n
}

// Events counts what the engine reported in an interval.
type Events struct {
	Audits   int64 `json:"audits,omitempty"`
	Gaps     int64 `json:"gaps,omitempty"`     // missing slots found (EventGap rows)
	Repaired int64 `json:"repaired,omitempty"` // slots filled by repair
	Empty    int64 `json:"empty,omitempty"`    // slots confirmed empty
	Alarms   int64 `json:"alarms,omitempty"`
	Resolved int64 `json:"resolved,omitempty"`
	LiveRows int64 `json:"live_rows,omitempty"` // rows landed by the live path
}

// Add adds o's counts to e.
func (e *Events) Add(o Events) {
	e.Audits += o.Audits
	e.Gaps += o.Gaps
	e.Repaired += o.Repaired
	e.Empty += o.Empty
	e.Alarms += o.Alarms
	e.Resolved += o.Resolved
	e.LiveRows += o.LiveRows
}

// Record is what a [Meter] measured over one interval, as it is kept in the
// lake.
type Record struct {
	Dataset string                `json:"dataset"`
	Start   time.Time             `json:"start"` // on the Meter's clock
	End     time.Time             `json:"end"`
	Stages  map[heal.Stage]*Usage `json:"stages"`
	CPU     time.Duration         `json:"cpu_ns"` // process user+system CPU over the interval (wall clock)
	// ClockRate is how fast the Meter's clock ran over the interval, in its
	// seconds per wall-clock second: 1 for the wall clock, 1000 for a
	// simulation at 1000x. Event durations are divided by it before CPU is
	// shared among the stages.
	ClockRate float64 `json:"clock_rate,omitempty"`
	Events    Events  `json:"events"`
	// StoredBytes and StoredObjects are what the Meter's storage prefixes
	// held at End; -1 when not measured (no Store decorated).
	StoredBytes   int64 `json:"stored_bytes"`
	StoredObjects int64 `json:"stored_objects"`
}

// Total is the sum of the record's stages.
func (r *Record) Total() Usage {
	var u Usage
	for _, s := range r.Stages {
		u.Add(s)
	}
	return u
}

// Options configures a [Meter]. A nil *Options, or any zero field, means the
// default written beside the field.
type Options struct {
	// Clock stamps the records' intervals and paces Run. Pass the engine's,
	// so records line up with the data's time. nil: the wall clock.
	Clock heal.Clock
	// Logger receives warnings (a flush that failed and is retried). nil:
	// discard.
	Logger *slog.Logger
	// StoragePrefixes are the store prefixes whose bytes are this
	// pipeline's storage, measured at each Flush. nil: the dataset's
	// directory, "<dataset>/". Add derived datasets' directories here.
	StoragePrefixes []string
}

// Meter counts what one engine's pipeline spends; see the package doc. It
// is a [heal.Observer] (set it as Options.Observer, or call Observe from
// yours), decorates the lake's store ([Meter.Store]) and the source's HTTP
// transport ([Meter.Transport]), and persists its counts with
// [Meter.Flush]. Its methods may be called concurrently and Observe never
// blocks on I/O.
type Meter struct {
	dataset  string
	clock    heal.Clock
	log      *slog.Logger
	prefixes []string

	mu     sync.Mutex
	start  time.Time
	wall0  time.Time // wall clock at start
	cpu0   time.Duration
	stages map[heal.Stage]*Usage
	events Events
	store  sink.Store // the decorated store, for storage measurement
}

// NewMeter returns a meter for the named dataset, starting its first
// interval now. opts may be nil.
func NewMeter(dataset string, opts *Options) *Meter {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.Clock == nil {
		o.Clock = heal.SystemClock{}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.StoragePrefixes == nil {
		o.StoragePrefixes = []string{dataset + "/"}
	}
	cpu, _ := processCPU()
	return &Meter{
		dataset: dataset, clock: o.Clock, log: o.Logger.With("dataset", dataset), prefixes: o.StoragePrefixes,
		start: o.Clock.Now().UTC(), wall0: time.Now(), cpu0: cpu, stages: map[heal.Stage]*Usage{},
	}
}

// Dataset is the dataset the meter records for.
func (m *Meter) Dataset() string { return m.dataset }

// usage returns the stage's usage; m.mu must be held.
func (m *Meter) usage(s heal.Stage) *Usage {
	if s == "" {
		s = StageOther
	}
	u := m.stages[s]
	if u == nil {
		u = &Usage{Requests: map[Request]int64{}}
		m.stages[s] = u
	}
	return u
}

// Observe implements [heal.Observer]. Events of other datasets than the
// meter's are ignored.
func (m *Meter) Observe(ev heal.Event) {
	if ev.Dataset != "" && ev.Dataset != m.dataset {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	switch ev.Kind {
	case heal.EventFetch:
		u := m.usage(heal.StageRepair)
		if ev.Live {
			u = m.usage(heal.StageAcquire)
		}
		u.SourceCalls++
		u.SourceTime += ev.Elapsed
		if ev.Err != nil && !errors.Is(ev.Err, heal.ErrNoData) {
			u.SourceErrors++
		}
	case heal.EventDerived:
		u := m.usage(heal.StageResynth)
		if ev.Live {
			u = m.usage(heal.StageAcquire)
		}
		u.Derived++
		u.DeriveTime += ev.Elapsed
	case heal.EventWrite:
		if ev.Live {
			m.events.LiveRows += int64(ev.Rows)
		}
	case heal.EventAudit:
		m.events.Audits++
	case heal.EventGap:
		m.events.Gaps += int64(ev.Rows)
	case heal.EventRepaired:
		m.events.Repaired += int64(ev.Rows)
	case heal.EventEmpty:
		m.events.Empty += int64(ev.Rows)
	case heal.EventAlarm:
		m.events.Alarms++
	case heal.EventResolved:
		m.events.Resolved++
	}
}

// AddSourceBytes counts n bytes fetched from the source in the stage of
// ctx ([heal.StageOf]), for sources that know their traffic by other means
// than HTTP ([Meter.Transport] counts HTTP by itself).
func (m *Meter) AddSourceBytes(ctx context.Context, n int64) {
	m.mu.Lock()
	m.usage(heal.StageOf(ctx)).SourceBytes += n
	m.mu.Unlock()
}

// lake counts lake requests made in stage.
func (m *Meter) lake(stage heal.Stage, kind Request, n, written, read int64, took time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	u := m.usage(stage)
	if n > 0 {
		u.Requests[kind] += n
	}
	u.BytesWritten += written
	u.BytesRead += read
	u.LakeTime += took
}

// Snapshot returns the counts of the current interval so far, without
// measuring storage or starting a new interval.
func (m *Meter) Snapshot() Record {
	cpu, _ := processCPU()
	m.mu.Lock()
	defer m.mu.Unlock()
	r := Record{
		Dataset: m.dataset, Start: m.start, End: m.clock.Now().UTC(), Stages: map[heal.Stage]*Usage{},
		CPU: cpu - m.cpu0, Events: m.events, StoredBytes: -1,
	}
	r.ClockRate = clockRate(r.End.Sub(r.Start), time.Since(m.wall0))
	for s, u := range m.stages {
		c := *u
		c.Requests = nil
		c.Add(&Usage{Requests: u.Requests})
		r.Stages[s] = &c
	}
	apportionCPU(&r)
	return r
}

// clockRate is span on the meter's clock per wall-clock second, 1 when
// either is unknown.
func clockRate(span, wall time.Duration) float64 {
	if span <= 0 || wall <= 0 {
		return 1
	}
	return min(max(float64(span)/float64(wall), 1e-6), 1e9)
}

// apportionCPU splits r.CPU over the stages by their busy time on the wall
// clock.
func apportionCPU(r *Record) {
	rate := r.ClockRate
	if rate <= 0 {
		rate = 1
	}
	var busy float64
	for _, u := range r.Stages {
		u.CPU = 0
		u.WallBusy = time.Duration(u.wallBusy(rate))
		busy += u.wallBusy(rate)
	}
	if r.CPU <= 0 {
		return
	}
	if busy <= 0 {
		u := r.Stages[StageOther]
		if u == nil {
			u = &Usage{}
			r.Stages[StageOther] = u
		}
		u.CPU = r.CPU
		return
	}
	var given time.Duration
	var last *Usage
	for _, u := range r.Stages {
		u.CPU = time.Duration(float64(r.CPU) * u.wallBusy(rate) / busy)
		given += u.CPU
		if u.Busy() > 0 {
			last = u
		}
	}
	last.CPU += r.CPU - given // rounding
}

// Flush ends the current interval: it measures storage (listing the
// storage prefixes of the decorated store; those LIST requests are not
// counted), writes the interval's [Record] to meta under
// cost/<dataset>/, create-only (nor is that PUT), and starts a new
// interval. On a failed
// write the counts are kept for the next Flush. An interval with nothing
// counted is not written; Flush then returns nil, nil.
func (m *Meter) Flush(ctx context.Context, meta heal.MetaStore) (*Record, error) {
	cpu, _ := processCPU()
	m.mu.Lock()
	end := m.clock.Now().UTC()
	wallNow := time.Now()
	r := &Record{Dataset: m.dataset, Start: m.start, End: end, Stages: m.stages, CPU: cpu - m.cpu0, Events: m.events, StoredBytes: -1,
		ClockRate: clockRate(end.Sub(m.start), wallNow.Sub(m.wall0))}
	cpu0, wall0 := m.cpu0, m.wall0
	m.stages, m.events, m.start, m.wall0, m.cpu0 = map[heal.Stage]*Usage{}, Events{}, end, wallNow, cpu
	store := m.store
	m.mu.Unlock()

	if len(r.Stages) == 0 && r.Events == (Events{}) {
		return nil, nil
	}
	apportionCPU(r)
	if store != nil {
		r.StoredBytes, r.StoredObjects = 0, 0
		for _, p := range m.prefixes {
			err := store.List(ctx, p, func(oi sink.ObjectInfo) error {
				r.StoredBytes += oi.Size
				r.StoredObjects++
				return nil
			})
			if err != nil {
				m.log.Warn("could not measure the lake's storage", "prefix", p, "err", err)
				r.StoredBytes, r.StoredObjects = -1, 0
				break
			}
		}
	}
	err := put(context.WithValue(ctx, selfKey{}, m), meta, r)
	if err != nil {
		// Keep the counts: fold them back into the interval under way.
		m.mu.Lock()
		for s, u := range r.Stages {
			u.CPU, u.WallBusy = 0, 0
			m.usage(s).Add(u)
		}
		m.events.Add(r.Events)
		m.start, m.wall0, m.cpu0 = r.Start, wall0, cpu0
		m.mu.Unlock()
		return nil, err
	}
	return r, nil
}

// Run flushes every interval of the meter's clock until ctx ends, then
// flushes once more (with a fresh 30-second context) and returns ctx's
// error. A failed flush is logged and its counts carried to the next.
func (m *Meter) Run(ctx context.Context, meta heal.MetaStore, every time.Duration) error {
	if every <= 0 {
		every = time.Hour
	}
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			defer cancel()
			if _, err := m.Flush(fctx, meta); err != nil {
				m.log.Warn("final cost flush failed", "err", err)
			}
			return ctx.Err()
		case <-m.clock.After(every):
			if _, err := m.Flush(ctx, meta); err != nil && ctx.Err() == nil {
				m.log.Warn("cost flush failed; the counts are kept for the next", "err", err)
			}
		}
	}
}

// selfKey marks the ctx of the meter's own writes, which it does not count.
type selfKey struct{}

// recordPrefix is where a dataset's records live in the MetaStore.
func recordPrefix(dataset string) string { return "cost/" + dataset + "/" }

func put(ctx context.Context, meta heal.MetaStore, r *Record) error {
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("heal/cost: encode record: %w", err)
	}
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	name := fmt.Sprintf("%s%020d-%s.json", recordPrefix(r.Dataset), r.End.UnixNano(), hex.EncodeToString(rnd[:]))
	if err := meta.PutMeta(ctx, name, b); err != nil {
		return fmt.Errorf("heal/cost: write record: %w", err)
	}
	return nil
}
