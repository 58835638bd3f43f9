package heal

import (
	"log/slog"
	"time"

	"github.com/apache/arrow/go/v17/arrow/memory"
)

// Options configures an [Engine]. A nil *Options, or any zero field, means
// the default written beside the field.
type Options struct {
	// Keys are the entities polled live and audited (e.g. stock symbols).
	// Required by Run and Heal.
	Keys []string
	// Rule says which slots must exist. nil: every slot of the grain,
	// around the clock.
	Rule CompletenessRule
	// Transformers derive datasets from this one; their outputs are
	// recomputed for exactly the windows a write touched.
	Transformers []Transformer
	// Alarmer is told of what cannot be healed. nil: logged with Logger at
	// level Error.
	Alarmer Alarmer
	// Logger receives structured logs with stable keys (dataset, key,
	// window, attempt). nil: discarded.
	Logger *slog.Logger
	// Clock is the engine's time. nil: the wall clock.
	Clock Clock
	// Allocator is used for every Arrow buffer the engine makes. nil:
	// memory.DefaultAllocator.
	Allocator memory.Allocator
	// Concurrency bounds the fetches, writes and derivations in flight.
	// <=0: 4.
	Concurrency int
	// Retry governs repairs: backoff between attempts and the per-gap budget.
	Retry RetryPolicy
	// Dispatcher, if set, receives the work the engine plans (live ticks
	// from Acquire and Run, repairs and resynthesis from Heal) as [Job]s,
	// to run elsewhere: workers call [Engine.RunJob] on them, e.g. from an
	// SQS queue ([github.com/selfheal/heal/dispatch]). nil: the engine runs
	// its work itself, in process (the embedded mode).
	Dispatcher Dispatcher
	// Shard makes this engine audit, plan and alarm only its share of
	// Keys, for several engines splitting a large key set; see [Shard].
	// Zero: all of Keys.
	Shard Shard
	// Lookback is how far back Run's audits look. 0: 24h.
	Lookback time.Duration
	// AuditEvery is how often Run audits, repairs and resynthesizes. 0: 1h.
	AuditEvery time.Duration
	// Settle is how old a slot must be before an audit counts it missing,
	// so a tick still in flight is not repaired. 0: one grain.
	Settle time.Duration
	// ReprobeAfter is how long after its alarm an unrepairable gap is tried
	// once more (a source may publish late). 0: 6h; <0: never.
	ReprobeAfter time.Duration
	// NoLiveReserve gives historical fetches (repairs) the Source's whole
	// rate limits. By default they leave room in every window of each of
	// Limits.Rates for one live tick of every key (ceil(Keys/MaxKeys) calls
	// per grain the window spans): with Finnhub's 60 a minute and 11
	// symbols, repairs use at most 49 calls in any minute, so a repair
	// backlog never makes a live poll wait for the limiter. Set it for an
	// engine that shares its quota with no live poller.
	NoLiveReserve bool
	// RateShare is the part of each of the Source's Limits.Rates this
	// engine may use, for when several processes call one Source under one
	// quota: the workers of a queue, shard engines, an engine beside its
	// workers. Each process only counts its own calls, so n of them
	// sharing a quota should each take 1/n: with Finnhub's 60 calls a
	// minute and three workers, RateShare 1.0/3 gives each 20. Calls are
	// rounded down, to at least one per window. 0: the whole rate (1).
	RateShare float64
	// LeaseTTL is how long a Heal holds the lake's heal lease, which keeps
	// two engines on one lake from repairing the same gaps twice. A cycle
	// renews it after each repair job and between phases once a third of
	// it has passed, so a cycle of hours keeps it; it releases it when
	// done; one that dies holds it until it expires. A single repair job
	// longer than LeaseTTL (a fetch that hangs) can lose it: the cycle then
	// stops with ErrLeaseLost. 0: 15 minutes.
	LeaseTTL time.Duration
	// CompactEvery is how many live slots pass between compactions of the
	// partitions the live path writes (one file per tick). 0: 60.
	CompactEvery int
	// LiveSink, if set, receives the live path's records instead of the
	// lake: a stream (Kinesis) whose consumer lands them in the lake, as
	// the original pipeline's Firehose did. Repairs still write to the lake
	// (the engine must see what it filled). The live path then derives
	// nothing, since its rows are not in the lake yet: Heal derives the
	// windows once they have landed. Set Settle above the stream's delivery
	// delay (its consumer's flush interval, plus a margin), or audits will
	// repair slots still in flight: harmless, as the lake keeps one copy
	// per slot, but wasted source calls.
	LiveSink Sink
	// Observer, if set, is told of every event as it happens, for metrics.
	Observer Observer
}

// RetryPolicy is exponential backoff with jitter under a per-gap budget.
type RetryPolicy struct {
	// InitialInterval is the wait after the first failure. 0: 500ms.
	InitialInterval time.Duration
	// MaxInterval caps the wait between attempts. 0: 30s.
	MaxInterval time.Duration
	// Multiplier grows the wait after each failure. 0: 2.
	Multiplier float64
	// Jitter randomizes each wait by ±Jitter of itself. 0: 0.5; <0: none.
	Jitter float64
	// MaxAttempts is the budget of fetch attempts per gap, across cycles and
	// restarts (the ledger remembers them; a crash may forget those of the
	// last few repair jobs, whose outcomes share a ledger object). When it
	// is spent, or an error is permanent, the gap is alarmed once and marked
	// unrepairable. 0: 5.
	MaxAttempts int
}

// WithDefaults returns p with every zero field set to the default written
// beside it. Components with their own retry loops (the Kinesis sink) use
// it so the policy's rules live in one place.
func (p RetryPolicy) WithDefaults() RetryPolicy {
	if p.InitialInterval <= 0 {
		p.InitialInterval = 500 * time.Millisecond
	}
	if p.MaxInterval <= 0 {
		p.MaxInterval = 30 * time.Second
	}
	if p.Multiplier <= 1 {
		p.Multiplier = 2
	}
	if p.Jitter == 0 {
		p.Jitter = 0.5
	} else if p.Jitter < 0 {
		p.Jitter = 0
	}
	if p.MaxAttempts <= 0 {
		p.MaxAttempts = 5
	}
	return p
}

// Observer is told of engine events as they happen, to feed metrics. Calls
// may be concurrent and must not block.
type Observer interface {
	Observe(e Event)
}

// ObserverFunc adapts a function to an [Observer].
type ObserverFunc func(Event)

// Observe calls f.
func (f ObserverFunc) Observe(e Event) { f(e) }

// EventKind names what an [Event] reports.
type EventKind string

// The events an engine reports.
const (
	EventFetch    EventKind = "fetch"     // a source call ended (Live tells which path); Err set on failure
	EventWrite    EventKind = "write"     // rows landed in the lake
	EventGap      EventKind = "gap"       // an audit found missing slots
	EventRepaired EventKind = "repaired"  // missing slots were filled
	EventEmpty    EventKind = "empty"     // the source confirmed slots empty
	EventDerived  EventKind = "derived"   // a derived window was recomputed
	EventAlarm    EventKind = "alarm"     // an alarm was raised
	EventResolved EventKind = "resolved"  // an alarmed episode healed
	EventAudit    EventKind = "audit"     // an audit finished
	EventCompact  EventKind = "compacted" // partitions were compacted
)

// Event is one thing that happened in the engine.
type Event struct {
	Kind    EventKind
	Dataset string
	Key     string
	Window  Window
	Live    bool          // for EventFetch and EventDerived: the live path rather than repair or resynthesis
	Rows    int           // rows or slots concerned
	Elapsed time.Duration // for EventFetch and EventDerived
	Err     error
}
