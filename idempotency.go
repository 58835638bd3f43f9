package heal

import (
	"context"
	"time"
)

type idempotencyKey struct{}

type idempotency struct {
	key string
	at  time.Time
}

// WithIdempotencyKey returns a copy of ctx under which a [Lake] that
// supports it makes its Writes idempotent: a Write under key stores, in
// each partition, only what no earlier Write under the same key stored
// there. Two processes repeating the same work under the same key (a
// redelivered job, two workers handed one message) then leave one file per
// partition, as one run would, instead of two copies that read back once
// but wait for compaction. The first Write to commit a partition wins; a
// later one's rows for that partition are dropped, which is right only
// when both hold the same data (rows from the same source for the same
// slots, as a repair fetches).
//
// at orders the rows written among other copies of the same (key, time)
// (the newest wins): it must be the same in every repetition, so it is a
// time of the work, such as the end of the window a job fetched, not the
// time it ran. Do not use a key for writes whose newer result must win
// over an older one, such as a derivation recomputed from data that
// changed in between.
//
// [github.com/selfheal/heal/sink.Lake] supports it: the file names become
// a function of key, at and the partition, and the create-only commit
// decides between racing writers. A Lake that does not simply writes
// again. [Engine.RunJob] writes a job's source rows under the job's [Job.ID].
func WithIdempotencyKey(ctx context.Context, key string, at time.Time) context.Context {
	return context.WithValue(ctx, idempotencyKey{}, idempotency{key, at})
}

// IdempotencyKeyFrom returns the key and time [WithIdempotencyKey] stored
// in ctx, if any: what a Lake calls in Write.
func IdempotencyKeyFrom(ctx context.Context) (key string, at time.Time, ok bool) {
	v, ok := ctx.Value(idempotencyKey{}).(idempotency)
	if !ok || v.key == "" {
		return "", time.Time{}, false
	}
	return v.key, v.at, true
}

type jobCtxKey struct{}

// withJob marks ctx as running j, so that the writes of its source rows
// (and only those: derived windows must let the newest computation win)
// are made under its ID.
func withJob(ctx context.Context, j Job) context.Context {
	return context.WithValue(ctx, jobCtxKey{}, j.ID())
}

// sourceWriteCtx is the context for writing rows fetched from the source:
// under the running job's idempotency key, at at.
func sourceWriteCtx(ctx context.Context, at time.Time) context.Context {
	if id, ok := ctx.Value(jobCtxKey{}).(string); ok {
		return WithIdempotencyKey(ctx, "job/"+id, at)
	}
	return ctx
}
