// Package healtest holds the conformance suites for implementations of
// heal's interfaces, in the style of gocloud.dev's drivertest and
// testing/slogtest: [RunLakeTests] checks that a [heal.Lake] (and, when
// implemented, [heal.Compactor] and [heal.MetaStore]) behaves as documented,
// through the public API only, with checked allocators that catch leaked
// Arrow memory. [RunLakeBenchmarks] measures the paths an engine uses.
//
// It also holds small helpers for tests: [QuotesDataset], a minute-grain
// dataset partitioned by day, [Records] to build records from [Row]
// values, and [RowsOf] and [ScanRows] to read them back.
package healtest
