package heal

import (
	"context"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
)

// This file is the vocabulary: the five interfaces a pipeline plugs into an
// [Engine]. Read it top to bottom to learn how to bring your own data.
//
//	Source ──Fetch──▶ Engine ──Write──▶ Lake ◀──Inventory── audit (CompletenessRule)
//	                    │                 ▲                      │ gaps
//	                    │                 └──Write── repair ◀────┘
//	                    └──Derive──▶ Transformer ──▶ Lake (derived dataset)
//	                    └──Alarm──▶ Alarmer (once per episode, and when healed)

// Source acquires records of one [Dataset] from wherever they come from: an
// HTTP API, a database, a stream.
//
// A Source does not retry and does not rate-limit itself: the [Engine] owns
// both. It classifies its errors instead: wrap an error with [Permanent] when
// retrying cannot help (bad credentials, a plan that lacks the endpoint), or
// with [RetryAfter] when the remote asked for a wait (HTTP 429). Every other
// error is retried with exponential backoff.
//
// Fetch may be called concurrently from several goroutines.
type Source interface {
	// Fetch returns the records the source holds for req.Keys within
	// req.Window, with the Dataset's schema. Each call counts as one call
	// against the Source's [Limits.Rates].
	//
	// A live request (req.Live) asks for the current tick: req.Window is the
	// single slot being polled, and the records' time column should be set
	// to req.Window.Start (the slot the poll was scheduled for).
	//
	// A historical request is authoritative: the result must hold everything
	// the source has for those keys in that window. A slot of the window for
	// which no record is returned is recorded as confirmed empty and is not
	// fetched again. Return a zero-row record or an error for which
	// errors.Is(err, ErrNoData) when the source has nothing for the window.
	//
	// The engine never asks for more than [Limits.MaxKeys] keys or a window
	// longer than [Limits.MaxWindow]. The caller owns the returned record and
	// releases it.
	Fetch(ctx context.Context, req Request) (arrow.Record, error)

	// Limits reports the Source's request limits. It is called once, by New.
	Limits() Limits
}

// Request is what an [Engine] asks a [Source] for.
type Request struct {
	Keys   []string // entity keys, at least one and at most Limits.MaxKeys
	Window Window   // aligned to the dataset's grain; one slot when Live
	Live   bool     // true for the current tick, false for a historical backfill
}

// Limits are the constraints of a [Source] that the engine and the repair
// planner respect. The zero value means one key per request, any window, no
// rate limit.
type Limits struct {
	// MaxWindow is the longest window one historical request may cover
	// (e.g. Finnhub's minute candles: about a month). Zero: unlimited.
	MaxWindow time.Duration
	// MaxKeys is the largest number of keys one request may carry. Zero: 1.
	MaxKeys int
	// Rates caps the calls made to Fetch, live and historical together. All
	// of them hold at once: Finnhub's free plan is {60, time.Minute} and
	// {30, time.Second}. The engine guarantees that no window of length Per
	// holds more than Calls calls.
	Rates []Rate
}

// Rate is a number of calls allowed in any window of length Per.
type Rate struct {
	Calls int
	Per   time.Duration
}

// Lake is durable, partitioned storage of datasets as Parquet files.
//
// Writes are atomic (a reader sees all of a write or none of it) and
// idempotent: a (key, time) written twice is read back once. When several
// copies of a (key, time) are stored, the one from the most recent write
// wins, and within one write the last row wins ("newest wins"). The engine
// writes repaired records only into slots it found missing, so a repair never
// replaces a live record.
//
// [github.com/selfheal/heal/sink] holds the Parquet implementation, on local
// disk, in memory or on S3; [github.com/selfheal/heal/healtest] holds the
// conformance suite every Lake must pass. Methods may be called concurrently.
type Lake interface {
	// Write stores the rows of rec in the partitions of ds they belong to.
	// rec must have ds.Schema, a non-null key and a non-null time aligned to
	// ds.Grain in every row; otherwise Write returns an *[InputError] and
	// stores nothing. Write does not retain rec.
	Write(ctx context.Context, ds *Dataset, rec arrow.Record) error

	// Scan returns the rows of ds matching q, one copy of each (key, time),
	// ordered by key, then time. It reads one partition at a time, so memory
	// is bounded by the largest partition, not by the lake. The caller must
	// Release the reader; records are valid until the next call to Next.
	Scan(ctx context.Context, ds *Dataset, q Query) (array.RecordReader, error)

	// Inventory calls fn once per stored partition of ds matching q, in the
	// order of Scan, with the slots it holds. It is the audit's input and
	// should be cheap: the Parquet lake answers it from an index it writes
	// with each file, and only scans files without one.
	Inventory(ctx context.Context, ds *Dataset, q Query, fn func(PartitionInfo) error) error
}

// Sink receives records of a dataset: a [Lake] is one, and so is a stream
// producer such as [github.com/selfheal/heal/sink.KinesisSink], which hands
// records to a stream whose consumer lands them in the lake. Set
// [Options.LiveSink] to send the live path there.
type Sink interface {
	// Write sends the rows of rec, which has ds.Schema. It does not retain
	// rec. A nil error means the rows are durably accepted (stored, or
	// acknowledged by the stream), not necessarily readable yet.
	Write(ctx context.Context, ds *Dataset, rec arrow.Record) error
}

// Query selects partitions and rows of a dataset. The zero Query selects all.
type Query struct {
	Keys   []string // nil: every key
	Window Window   // zero: all time
}

// PartitionInfo describes what one stored partition holds.
type PartitionInfo struct {
	Partition Partition
	Present   Slots // distinct slots held (restricted to the query's window)
	Rows      int64 // physical rows, copies included; Rows-Present.Count() are duplicates
	Files     int   // files the partition is stored in
	Scanned   bool  // true when some file had no usable index and was read
}

// Duplicates is the number of stored rows beyond one per slot.
func (p PartitionInfo) Duplicates() int64 { return p.Rows - int64(p.Present.Count()) }

// Compactor is implemented by Lakes that can rewrite the files of a partition
// into one, dropping duplicate copies. The engine compacts partitions in
// which an audit found duplicates. Compaction must be safe while other
// goroutines or processes scan.
type Compactor interface {
	// Compact rewrites every partition of ds matching q that is stored in
	// more than one file, or holds duplicates, and reports how many it rewrote.
	Compact(ctx context.Context, ds *Dataset, q Query) (int, error)
}

// MetaStore is implemented by Lakes that can hold the engine's ledger next to
// the data (the Parquet lake keeps it under _heal/). Names are slash-separated
// paths without a leading slash.
type MetaStore interface {
	// PutMeta creates name with data. It never overwrites: if name exists it
	// returns an error for which errors.Is(err, ErrExist).
	PutMeta(ctx context.Context, name string, data []byte) error
	// GetMeta returns the contents of name, or an error for which
	// errors.Is(err, ErrNotFound).
	GetMeta(ctx context.Context, name string) ([]byte, error)
	// ListMeta returns the names under prefix, sorted.
	ListMeta(ctx context.Context, prefix string) ([]string, error)
	// DeleteMeta removes name; removing a missing name is not an error.
	DeleteMeta(ctx context.Context, name string) error
}

// Transformer derives an output dataset from an input dataset, for example
// hourly bars from minute quotes, and declares its lineage so that
// resynthesis recomputes exactly what a repair touched.
//
// Derive may be called concurrently for distinct keys or windows.
type Transformer interface {
	// Output describes the derived dataset.
	Output() *Dataset
	// Affected returns the output windows (aligned to the output grain)
	// whose rows depend on input rows in w.
	Affected(w Window) []Window
	// Derive computes the output rows of key for the output window out from
	// in, which holds every input row of key within out (deduplicated and
	// ordered by time; possibly zero rows). The rows returned replace the
	// stored rows of the same (key, time). The caller owns the result.
	Derive(ctx context.Context, key string, out Window, in arrow.Record) (arrow.Record, error)
}

// CompletenessRule says which slots of a dataset must exist: a calendar.
// [github.com/selfheal/heal/audit] has ready ones (every slot around the
// clock, trading sessions, US equities).
//
// Expected must be safe for concurrent use and cheap: the audit calls it for
// every key and window it looks at.
type CompletenessRule interface {
	// Expected returns the windows of w in which every slot of grain must
	// hold a record for key: sorted, disjoint, aligned to the grain.
	Expected(key string, w Window, grain time.Duration) []Window
}

// CompletenessRuleFunc adapts a function to a [CompletenessRule].
type CompletenessRuleFunc func(key string, w Window, grain time.Duration) []Window

// Expected calls f.
func (f CompletenessRuleFunc) Expected(key string, w Window, grain time.Duration) []Window {
	return f(key, w, grain)
}

// Alarmer is told when the engine gives up on a gap or a derived window, and
// when a later cycle heals it. The engine calls it once per episode: one
// alarm when repair or resynthesis fails permanently or exhausts its attempt
// budget, and one notice with Resolved set when the data is whole again.
//
// Alarm may be called concurrently. An error is logged and the alarm is
// retried on the next cycle.
type Alarmer interface {
	Alarm(ctx context.Context, a Alarm) error
}

// AlarmerFunc adapts a function to an [Alarmer].
type AlarmerFunc func(ctx context.Context, a Alarm) error

// Alarm calls f.
func (f AlarmerFunc) Alarm(ctx context.Context, a Alarm) error { return f(ctx, a) }

// Stage names the part of the cycle an [Alarm] is about.
type Stage string

// The stages that raise alarms.
const (
	StageRepair     Stage = "repair"
	StageResynth    Stage = "resynthesize"
	StageAcquire    Stage = "acquire"
	StageLakeWrite  Stage = "lake-write"
	StageCompaction Stage = "compact"
)

// Alarm is an event people must act on: a hole heal could not fill, or
// (Resolved) the notice that it was filled after all.
type Alarm struct {
	Dataset   string
	Key       string
	Window    Window
	Stage     Stage
	Attempts  int    // fetch or derive attempts spent on the episode
	LastError string // the last error, never holding secrets the Source kept out of its errors
	Resolved  bool   // true for the notice that a former alarm healed
	At        time.Time
}
