package sink

import (
	"context"
	"io"
	"time"
)

// Store is the object storage a [Lake] keeps its files in: a directory on
// local disk ([NewDirStore]), memory ([NewMemStore]) or an S3 bucket
// ([NewS3Store]). It is the driver half of the lake (the gocloud.dev split):
// the Parquet layout, deduplication, the presence index and compaction are
// written once, in Lake, over any Store.
//
// Names are slash-separated, relative, and never start with '/' or hold
// "." or ".." elements. Methods may be called concurrently. A Store does
// not retry: it returns errors, marked with heal.Permanent when retrying
// cannot help.
type Store interface {
	// Put stores data under name atomically: a concurrent reader or lister
	// sees either nothing or all of data, never a part, even if the process
	// dies during Put. With ifAbsent, Put fails with an error for which
	// errors.Is(err, heal.ErrExist) when name already exists, and two
	// concurrent creators cannot both succeed. Put does not retain data.
	Put(ctx context.Context, name string, data []byte, ifAbsent bool) error
	// Open returns a random-access reader over name, or an error for which
	// errors.Is(err, heal.ErrNotFound). The caller closes it.
	Open(ctx context.Context, name string) (Object, error)
	// List calls fn for every object whose name starts with prefix, in
	// lexical order of name. It pages through large listings without
	// holding them in memory. Objects being written by Put are not listed.
	List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error
	// Delete removes name. Removing a missing name is not an error.
	Delete(ctx context.Context, name string) error
}

// Object is an open stored object: what a Parquet reader needs.
type Object interface {
	io.ReaderAt
	io.Seeker
	io.Reader
	io.Closer
	Size() int64
}

// ObjectInfo describes a listed object.
type ObjectInfo struct {
	Name    string
	Size    int64
	ModTime time.Time
}
