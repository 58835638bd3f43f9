// Package heal keeps a dataset complete by itself.
//
// Data pipelines lose data: a poller skips a tick, a stream redelivers, an
// API times out, and downstream aggregates are silently wrong. heal closes
// the loop: it acquires records from a [Source] into a [Lake] (Parquet,
// Hive-partitioned, on local disk or S3), derives datasets with
// [Transformer]s, audits the lake against a [CompletenessRule], re-acquires
// exactly the missing slots from the Source's historical path, recomputes
// only the derived windows the repair touched, and tells an [Alarmer] once
// when something cannot be healed, and again when it heals.
//
// # Concepts
//
// A [Dataset] is described once: name, Arrow schema, key column, time
// column, grain (one slot per key per grain) and partition period. A slot is
// one (key, grain-aligned time). An audit compares the slots a rule expects
// with the slots the lake holds; the difference, minus slots the source has
// confirmed empty, are gaps. A gap episode lasts from the audit that finds
// it until it is filled; an alarm is raised at most once per episode.
//
// The [Engine] wires everything. [Engine.Run] is the continuous loop;
// [Engine.Heal] runs one audit → repair → resynthesize pass and is meant for
// cron or Lambda: all state the engine needs between runs lives in the
// ledger, inside the lake, under _heal/ledger/<dataset>/.
//
// To scale out, the work an engine plans is a [Job] (a live tick, a repair,
// a resynthesis): with Options.Dispatcher set the engine sends its jobs to a
// queue and workers run them with [Engine.RunJob]
// ([github.com/selfheal/heal/dispatch] does it through SQS and Lambda), and
// with Options.Shard several engines split the keys ([Shard]).
//
// # Implementing a Source or Lake
//
// Most users implement a [Source] for their data and use the Parquet lake
// in [github.com/selfheal/heal/sink]. The conformance suites in
// [github.com/selfheal/heal/healtest] check an implementation against the
// contracts written on each interface: run them from your tests.
//
// Optional capabilities are separate interfaces detected at run time:
// [Compactor] (the engine compacts partitions holding duplicates) and
// [MetaStore] (where the ledger lives; required by [New]).
//
// # Errors
//
// Sources and Lakes do not retry; the engine does. They classify errors:
// [Permanent] marks an error retrying cannot fix, [RetryAfter] asks for a
// minimum wait, everything else is retried with exponential backoff and
// jitter under the per-gap budget of [RetryPolicy]. Conditions are
// sentinels checked with errors.Is: [ErrNotFound], [ErrExist], [ErrNoData],
// [ErrSchemaMismatch]. Refused input is an *[InputError] naming the dataset,
// the field and the row.
//
// # Concurrency
//
// An Engine is safe for concurrent use; Heal calls are serialized. Work
// inside a cycle fans out under [Options.Concurrency]. All source calls, live
// and repair together, pass one limiter built from [Limits.Rates], which
// guarantees that no window of a rate's length holds more calls than it
// allows. Repairs leave room in each window for one live tick of every key
// (see [Options.NoLiveReserve]), so a backlog never delays a live poll.
//
// # Memory
//
// heal follows Arrow's ownership rules. A record or reader returned to you
// is yours to Release; a record passed to you is borrowed (Retain it to keep
// it). Records from a RecordReader are valid until the next call to Next.
// Every Arrow buffer the engine makes comes from [Options.Allocator]; tests
// pass a memory.CheckedAllocator and assert it ends at zero.
//
// # Time
//
// Every time is UTC. The engine reads time from [Options.Clock], so a
// simulation can run a trading day in seconds ([NewScaledClock]) through the
// same code path as real time. A record whose time is off the grain is
// floored to its slot ([Dataset.Align]): a quote polled at 14:03:27 belongs
// to 14:03.
package heal
