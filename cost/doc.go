// Package cost counts what a heal pipeline spends, stage by stage, and turns
// the counts into money with a price table, so the cost of running the
// pipeline can be set against the cost of healing it.
//
// # What is counted
//
// A [Meter] counts, per stage of the cycle ([heal.StageOf]: acquire, audit,
// repair, resynthesize, compact):
//
//   - source calls and failures, from the engine's [heal.Event]s (the Meter
//     is a [heal.Observer]): EventFetch with Live is the live path, without
//     it a repair;
//   - bytes fetched from the source, where it can tell: [Meter.Transport]
//     wraps the http.RoundTripper of an HTTP source and counts response
//     bytes, attributed by the stage in the request's context; other
//     sources call [Meter.AddSourceBytes];
//   - lake requests by kind (PUT, GET, LIST, DELETE) and bytes written and
//     read: [Meter.Store] decorates a sink.Store. Requests are counted as
//     sink.S3Store issues them (one PUT per object, or a multipart upload of
//     parts plus two; a HEAD on open, billed as a GET; one GET for the last
//     64 KiB of an object and one per read before it; one LIST per 1,000
//     names), so a lake on local disk is priced as the same lake on S3;
//   - bytes stored: at each [Meter.Flush] the Meter lists its storage
//     prefixes (by default the dataset's directory);
//   - time per stage: the wall-clock time of lake requests, measured by the
//     Store decorator, plus the Elapsed of EventFetch and EventDerived
//     (measured on the engine's clock: a scaled clock in a simulation
//     scales them too);
//   - CPU: the process's user+system CPU time over each interval, from
//     getrusage(2) (zero where it is unavailable). It is apportioned to the
//     stages by their share of the time above, on the wall clock (event
//     durations are divided by how fast the engine's clock ran over the
//     interval, [Record.ClockRate]); this is an estimate, since Go does not
//     account CPU per goroutine. The whole process is counted, including
//     anything else it runs.
//
// # Records
//
// [Meter.Flush] writes the counts since the last flush as one [Record] into
// the lake's MetaStore under cost/<dataset>/<end>-<random>.json,
// create-only, and starts a new interval. [Load] reads them back (the heal
// command and the health report do), and [Summarize] prices them.
//
// # Prices
//
// [DefaultPrices] are public AWS list prices (S3 Standard and Fargate in
// us-east-1) and Finnhub's free plan, each documented with its source;
// [Prices.Set] overrides them from a "name=value,..." flag. Money is in US
// dollars. The pipeline's cost is the live path, compaction, anything not
// tagged with a stage, and storage; the cost of healing is the audit, the
// repairs and the resynthesis.
package cost
