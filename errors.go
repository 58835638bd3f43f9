package heal

import (
	"errors"
	"fmt"
	"time"
)

// Sentinel errors. Check them with errors.Is: implementations wrap them.
var (
	// ErrNotFound is returned for a partition, file or ledger entry that
	// does not exist.
	ErrNotFound = errors.New("heal: not found")
	// ErrExist is returned by create-only writes (MetaStore.PutMeta, a
	// conditional object put) when the name is already taken: someone else
	// won the race.
	ErrExist = errors.New("heal: already exists")
	// ErrNoData is returned by a Source that has no records at all for a
	// historical window: the window is confirmed empty, not failed.
	ErrNoData = errors.New("heal: source has no data for the window")
	// ErrSchemaMismatch is returned when a record's schema is not the
	// dataset's. It is wrapped in an *InputError naming the field.
	ErrSchemaMismatch = errors.New("heal: schema does not match the dataset")
	// ErrClosed is returned by methods called after Close.
	ErrClosed = errors.New("heal: closed")
	// ErrLeaseLost is returned by a Heal that stopped because another
	// engine took the dataset's heal lease: this one could not renew it
	// before it expired (Options.LeaseTTL), and the other may now be
	// repairing the same gaps. Nothing written is wrong; the cycle's
	// remaining work is left to the holder.
	ErrLeaseLost = errors.New("heal: the heal lease was lost to another engine")
)

// PermanentError marks an error that retrying cannot fix. Create it with
// [Permanent]; detect it with [IsPermanent].
type PermanentError struct{ Err error }

func (e *PermanentError) Error() string { return e.Err.Error() }
func (e *PermanentError) Unwrap() error { return e.Err }

// Permanent marks err as not worth retrying: the engine stops retrying at
// once and raises an alarm. Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &PermanentError{Err: err}
}

// IsPermanent reports whether err, or an error it wraps, was marked with
// [Permanent].
func IsPermanent(err error) bool {
	var p *PermanentError
	return errors.As(err, &p)
}

// RetryAfterError is a retryable error that asks for a minimum wait before
// the next attempt, as an HTTP 429 with Retry-After does.
type RetryAfterError struct {
	Wait time.Duration
	Err  error
}

func (e *RetryAfterError) Error() string {
	return fmt.Sprintf("%v (retry after %s)", e.Err, e.Wait)
}
func (e *RetryAfterError) Unwrap() error { return e.Err }

// RetryAfter wraps err with a requested wait. RetryAfter(d, nil) is nil.
func RetryAfter(wait time.Duration, err error) error {
	if err == nil {
		return nil
	}
	return &RetryAfterError{Wait: wait, Err: err}
}

// InputError reports a record heal refused: a schema that does not match the
// dataset, a null key or time, a key that cannot name a partition. Nothing
// of the record was stored.
type InputError struct {
	Dataset string
	Field   string // the column at fault
	Row     int    // the row's position in the record, or -1 for the whole record
	Err     error
}

func (e *InputError) Error() string {
	if e.Row < 0 {
		return fmt.Sprintf("heal: dataset %q: field %q: %v", e.Dataset, e.Field, e.Err)
	}
	return fmt.Sprintf("heal: dataset %q: row %d: field %q: %v", e.Dataset, e.Row, e.Field, e.Err)
}
func (e *InputError) Unwrap() error { return e.Err }
