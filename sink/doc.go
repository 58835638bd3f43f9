// Package sink holds where heal's data lands: the Parquet [Lake], which
// implements [heal.Lake], [heal.Compactor] and [heal.MetaStore] over any
// object [Store], and the stores themselves: [DirStore] on local disk,
// [MemStore] in memory and [S3Store] on S3.
//
// The split follows gocloud.dev: a Store is the small driver (put, open,
// list, delete, with create-only puts), and everything about the lake (the
// Hive layout, newest-wins precedence, the presence index in each file's
// footer and the lake index beside the data, quarantine of unusable files,
// compaction) is written once, in Lake. A new backend needs only a Store;
// [github.com/selfheal/heal/healtest] checks the result.
//
// # Audits
//
// Inventory, the audit's input, answers from the lake index (what each
// write recorded under _heal/index/) without opening data files; see
// [InventoryMode] for the trade-offs of listing the files or trusting the
// index alone, [Lake.Verify] for the deep check, and [Lake.InventorySince]
// for incremental audits. BENCHMARKS.md at the root of the module has the
// measurements.
//
//	lake, err := sink.OpenDir("/var/lib/heal", nil)          // local disk
//	lake := sink.NewLake(sink.NewS3Store(client, "bucket", "lake/", nil), nil)
//
// # Encryption at rest
//
// [Options].Encryption encrypts the sensitive columns of chosen datasets
// on the client, each file with its own data key wrapped by a key from a
// [github.com/selfheal/heal/crypt.KeyProvider] (AWS KMS or local); key and
// time columns, footers and the lake index stay in clear, so audits need
// no key. [Lake.Rewrap] rotates the key-encryption key without rewriting
// data. See [Encryption].
//
// # Errors
//
// Errors are wrapped with %w and prefixed "heal/sink:". Check conditions
// with errors.Is: heal.ErrNotFound (a missing object or ledger entry),
// heal.ErrExist (a create-only put lost the race), heal.ErrSchemaMismatch,
// and errors.As for the *heal.InputError Write returns for bad input, and
// for the *KeyError a read of an encrypted file without its key returns.
//
// # Concurrency
//
// Every method of Lake and the stores may be called concurrently, from one
// process or several sharing the storage: files are created once and never
// modified, compaction only deletes the files it merged, and readers that
// find a file gone list its partition again.
//
// # Memory
//
// Lake allocates every Arrow and Parquet buffer from Options.Allocator.
// Records a Scan yields are valid until the next call to Next; the caller
// releases the reader.
package sink
