package sink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/apache/arrow/go/v17/arrow/memory"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/selfheal/heal"
)

// KinesisConsumerOptions configures a [KinesisConsumer]. A nil pointer, or
// any zero field, means the default written beside the field.
type KinesisConsumerOptions struct {
	// Checkpoints keeps how far each shard was committed. nil: in the
	// lake, with [NewMetaCheckpointer] under the stream's name, when the
	// lake is a heal.MetaStore (the Parquet lake is); otherwise in memory
	// ([NewMemCheckpointer]), so a restart reads the stream from the start.
	Checkpoints Checkpointer
	// StartAtLatest makes shards that have no checkpoint when Run starts
	// begin at the tip of the stream (LATEST) rather than at the oldest
	// record retained (TRIM_HORIZON). Shards created later by a reshard
	// are always read from their start.
	StartAtLatest bool
	// MaxRows flushes a batch once it holds this many rows. 0: 100000.
	MaxRows int
	// MaxBytes flushes a batch once its records hold this many bytes.
	// 0: 32 MiB.
	MaxBytes int
	// FlushInterval flushes a batch this long after its first record
	// arrived, however small it is. 0: one minute.
	FlushInterval time.Duration
	// PollInterval is the wait after a GetRecords that returned nothing.
	// Kinesis allows 5 GetRecords per second per shard. 0: 1s.
	PollInterval time.Duration
	// ShardRefresh is how often the shard list is read again to find the
	// shards a reshard created. 0: one minute.
	ShardRefresh time.Duration
	// Retry is the backoff for reads and lake writes that fail in a
	// retryable way; they are retried until they succeed, a permanent
	// error occurs, or ctx ends (MaxAttempts is not used). Zero fields:
	// 100ms initial wait, doubling, 5s at most, ±50% jitter.
	Retry heal.RetryPolicy
	// Allocator is used for the Arrow records written. nil:
	// memory.DefaultAllocator.
	Allocator memory.Allocator
	// Logger receives the consumer's logs (stream, shard, rows). nil:
	// discarded.
	Logger *slog.Logger
	// OnReject is told of each record that is not a row of the dataset
	// (not JSON of its schema, a null or invalid key, a null time). The
	// record is skipped: it is checkpointed past with its batch. nil:
	// logged at level Warn.
	OnReject func(shard, seq string, data []byte, err error)
}

// ConsumerStats counts what a [KinesisConsumer] did since it was made.
type ConsumerStats struct {
	Records  int64 // stream records read
	Rows     int64 // rows written to the lake
	Rejected int64 // records skipped as not rows of the dataset
	Flushes  int64 // lake writes: one per flushed batch
}

// KinesisConsumer reads every shard of a Kinesis data stream and writes its
// records, rows of one dataset as a [KinesisSink] puts them, into a lake in
// micro-batches: the role Kinesis Data Firehose played in the original
// pipeline, but writing heal's partitioned Parquet lake. Make it with
// [NewKinesisConsumer] and call Run.
//
// Records are buffered across shards and flushed as one Lake.Write (so one
// file per partition touched, never one object per record) when the batch
// reaches MaxRows or MaxBytes, or FlushInterval after its first record.
// Only after the write succeeded is each shard's checkpoint advanced to the
// last record of the batch. A crash between the two re-reads the batch on
// restart (at-least-once delivery); as the lake keeps one copy per (key,
// time), the rows are stored exactly once.
//
// Shards are read concurrently, one goroutine each. A shard created by a
// reshard is read only after its parents were read to their end, so one
// key's rows reach the lake in the order they were put. Times are floored
// to the dataset's grain on the way in.
type KinesisConsumer struct {
	client *kinesis.Client
	stream string
	ds     *heal.Dataset
	lake   heal.Lake
	o      KinesisConsumerOptions
	log    *slog.Logger

	records, rows, rejected, flushes atomic.Int64
}

// NewKinesisConsumer returns a consumer of stream (a name or an ARN) for
// ds, writing into lake, with client the caller's.
func NewKinesisConsumer(client *kinesis.Client, stream string, ds *heal.Dataset, lake heal.Lake, opts *KinesisConsumerOptions) (*KinesisConsumer, error) {
	if err := ds.Validate(); err != nil {
		return nil, err
	}
	if client == nil || lake == nil || stream == "" {
		return nil, errors.New("heal/sink: NewKinesisConsumer needs a client, a stream and a lake")
	}
	var o KinesisConsumerOptions
	if opts != nil {
		o = *opts
	}
	if o.Checkpoints == nil {
		if ms, ok := lake.(heal.MetaStore); ok {
			o.Checkpoints = NewMetaCheckpointer(ms, stream)
		} else {
			o.Checkpoints = NewMemCheckpointer()
		}
	}
	if o.MaxRows <= 0 {
		o.MaxRows = 100000
	}
	if o.MaxBytes <= 0 {
		o.MaxBytes = 32 << 20
	}
	if o.FlushInterval <= 0 {
		o.FlushInterval = time.Minute
	}
	if o.PollInterval <= 0 {
		o.PollInterval = time.Second
	}
	if o.ShardRefresh <= 0 {
		o.ShardRefresh = time.Minute
	}
	o.Retry = retryDefaults(o.Retry)
	if o.Allocator == nil {
		o.Allocator = memory.DefaultAllocator
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("stream", stream, "dataset", ds.Name)
	if o.OnReject == nil {
		o.OnReject = func(shard, seq string, data []byte, err error) {
			log.Warn("record skipped: not a row of the dataset", "shard", shard, "seq", seq, "bytes", len(data), "err", err)
		}
	}
	return &KinesisConsumer{client: client, stream: stream, ds: ds, lake: lake, o: o, log: log}, nil
}

// Stats returns the consumer's counters. It may be called concurrently
// with Run.
func (c *KinesisConsumer) Stats() ConsumerStats {
	return ConsumerStats{Records: c.records.Load(), Rows: c.rows.Load(), Rejected: c.rejected.Load(), Flushes: c.flushes.Load()}
}

// shardMsg carries what a shard reader read: records, or the news that
// the shard is closed and was read to its end.
type shardMsg struct {
	shard   string
	records []types.Record
	done    bool
}

// batch is what the consumer holds between flushes.
type batch struct {
	rows   [][]byte
	shard  []string
	seq    []string
	last   map[string]string // shard -> last sequence number in the batch
	bytes  int
	opened time.Time
}

// Run reads the stream and writes to the lake until ctx ends or a
// permanent error occurs (a missing stream, refused credentials, a lake
// write that cannot succeed). When ctx ends it flushes what it holds,
// with a fresh 30s deadline, and returns an error for which
// errors.Is(err, ctx.Err()). Run must not be called twice at once.
func (c *KinesisConsumer) Run(ctx context.Context) (err error) {
	rctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()
	msgs := make(chan shardMsg, 16)
	fatal := make(chan error, 1)
	report := func(err error) {
		select {
		case fatal <- err:
		default:
		}
	}

	started := map[string]bool{}
	finished := map[string]bool{}
	first := true
	refresh := func() error {
		shards, err := c.listShards(rctx)
		if err != nil {
			return err
		}
		listed := map[string]bool{}
		for _, s := range shards {
			listed[aws.ToString(s.ShardId)] = true
		}
		ready := func(parent *string) bool {
			p := aws.ToString(parent)
			return p == "" || !listed[p] || finished[p]
		}
		for _, s := range shards {
			id := aws.ToString(s.ShardId)
			if started[id] || !ready(s.ParentShardId) || !ready(s.AdjacentParentShardId) {
				continue
			}
			from, err := c.o.Checkpoints.Checkpoint(rctx, id)
			if err != nil {
				return err
			}
			started[id] = true
			latest := first && c.o.StartAtLatest
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := c.readShard(rctx, id, from, latest, msgs); err != nil && rctx.Err() == nil {
					report(err)
				}
			}()
		}
		first = false
		return nil
	}
	if err := refresh(); err != nil {
		return fmt.Errorf("heal/sink: kinesis consumer %s: %w", c.stream, err)
	}
	ticker := time.NewTicker(c.o.ShardRefresh)
	defer ticker.Stop()

	b := &batch{last: map[string]string{}}
	var flushC <-chan time.Time
	var flushT *time.Timer
	stopTimer := func() {
		if flushT != nil {
			flushT.Stop()
			flushT, flushC = nil, nil
		}
	}
	defer stopTimer()
	flush := func(ctx context.Context) error {
		stopTimer()
		return c.flush(ctx, b)
	}
	final := func(cause error) error {
		fctx, fcancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer fcancel()
		if ferr := flush(fctx); ferr != nil {
			return errors.Join(cause, ferr)
		}
		return cause
	}
	flushFailed := func(err error) error {
		if ctx.Err() != nil { // ctx ended mid-write: one last try on a fresh deadline
			return final(fmt.Errorf("heal/sink: kinesis consumer %s: %w", c.stream, ctx.Err()))
		}
		return err // permanent: nothing was checkpointed
	}
	for {
		select {
		case <-ctx.Done():
			return final(fmt.Errorf("heal/sink: kinesis consumer %s: %w", c.stream, ctx.Err()))
		case err := <-fatal:
			return final(fmt.Errorf("heal/sink: kinesis consumer %s: %w", c.stream, err))
		case m := <-msgs:
			if m.done {
				finished[m.shard] = true
				c.log.Info("shard read to its end", "shard", m.shard)
				if err := refresh(); err != nil && rctx.Err() == nil {
					c.log.Warn("listing shards", "err", err)
				}
				continue
			}
			for _, r := range m.records {
				if len(b.rows) == 0 {
					b.opened = time.Now()
					flushT = time.NewTimer(c.o.FlushInterval)
					flushC = flushT.C
				}
				b.rows = append(b.rows, r.Data)
				b.shard = append(b.shard, m.shard)
				b.seq = append(b.seq, aws.ToString(r.SequenceNumber))
				b.last[m.shard] = aws.ToString(r.SequenceNumber)
				b.bytes += len(r.Data)
			}
			c.records.Add(int64(len(m.records)))
			if len(b.rows) >= c.o.MaxRows || b.bytes >= c.o.MaxBytes {
				if err := flush(ctx); err != nil {
					return flushFailed(err)
				}
			}
		case <-flushC:
			if err := flush(ctx); err != nil {
				return flushFailed(err)
			}
		case <-ticker.C:
			if err := refresh(); err != nil && rctx.Err() == nil {
				c.log.Warn("listing shards", "err", err)
			}
		}
	}
}

// flush writes b to the lake, retrying what is retryable, then advances
// the checkpoints, and empties b. On error b is kept: nothing was
// checkpointed.
func (c *KinesisConsumer) flush(ctx context.Context, b *batch) error {
	if len(b.rows) == 0 {
		return nil
	}
	rec, rejected := decodeJSONRows(c.o.Allocator, c.ds, b.rows)
	for _, i := range slices.Sorted(maps.Keys(rejected)) {
		c.o.OnReject(b.shard[i], b.seq[i], b.rows[i], rejected[i])
	}
	if rec != nil {
		defer rec.Release()
		bo := newBackoff(c.o.Retry)
		for {
			err := c.lake.Write(ctx, c.ds, rec)
			if err == nil {
				break
			}
			var ie *heal.InputError
			if heal.IsPermanent(err) || errors.As(err, &ie) || ctx.Err() != nil {
				return fmt.Errorf("heal/sink: kinesis consumer %s: lake write of %d rows: %w", c.stream, rec.NumRows(), err)
			}
			c.log.Warn("lake write failed; retrying", "rows", rec.NumRows(), "err", err)
			if werr := bo.wait(ctx); werr != nil {
				return fmt.Errorf("heal/sink: kinesis consumer %s: lake write of %d rows: %w", c.stream, rec.NumRows(), errors.Join(err, werr))
			}
		}
		c.rows.Add(rec.NumRows())
		c.flushes.Add(1)
	}
	c.rejected.Add(int64(len(rejected)))
	for shard, seq := range b.last {
		if err := c.o.Checkpoints.SetCheckpoint(ctx, shard, seq); err != nil {
			// The rows are in the lake; the shard will be re-read from
			// the previous checkpoint, which the lake absorbs.
			c.log.Warn("checkpoint not saved", "shard", shard, "err", err)
		}
	}
	c.log.Debug("flushed", "records", len(b.rows), "rejected", len(rejected), "bytes", b.bytes, "age", time.Since(b.opened))
	b.rows, b.shard, b.seq, b.bytes = b.rows[:0], b.shard[:0], b.seq[:0], 0
	clear(b.last)
	return nil
}

func (c *KinesisConsumer) listShards(ctx context.Context) ([]types.Shard, error) {
	var shards []types.Shard
	in := &kinesis.ListShardsInput{}
	setStream(c.stream, &in.StreamName, &in.StreamARN)
	for {
		out, err := c.client.ListShards(ctx, in)
		if err != nil {
			return nil, classifyAWS(fmt.Errorf("list shards: %w", err))
		}
		shards = append(shards, out.Shards...)
		if aws.ToString(out.NextToken) == "" {
			return shards, nil
		}
		in = &kinesis.ListShardsInput{NextToken: out.NextToken}
	}
}

// readShard reads shard from after the sequence number from ("" for its
// start, or its tip when latest) until it is closed and read to its end,
// ctx ends, or a permanent error occurs.
func (c *KinesisConsumer) readShard(ctx context.Context, shard, from string, latest bool, out chan<- shardMsg) error {
	log := c.log.With("shard", shard)
	bo := newBackoff(c.o.Retry)
	last := from
	iterator := func() (*string, error) {
		in := &kinesis.GetShardIteratorInput{ShardId: aws.String(shard)}
		setStream(c.stream, &in.StreamName, &in.StreamARN)
		switch {
		case last != "":
			in.ShardIteratorType = types.ShardIteratorTypeAfterSequenceNumber
			in.StartingSequenceNumber = aws.String(last)
		case latest:
			in.ShardIteratorType = types.ShardIteratorTypeLatest
		default:
			in.ShardIteratorType = types.ShardIteratorTypeTrimHorizon
		}
		for {
			o, err := c.client.GetShardIterator(ctx, in)
			if err == nil {
				return o.ShardIterator, nil
			}
			if err = classifyAWS(err); heal.IsPermanent(err) || ctx.Err() != nil {
				return nil, fmt.Errorf("shard %s: get iterator: %w", shard, err)
			}
			if werr := bo.wait(ctx); werr != nil {
				return nil, werr
			}
		}
	}
	it, err := iterator()
	if err != nil {
		return err
	}
	for it != nil {
		res, err := c.client.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: it})
		if err != nil {
			var expired *types.ExpiredIteratorException
			switch {
			case ctx.Err() != nil:
				return ctx.Err()
			case errors.As(err, &expired):
				log.Debug("iterator expired; getting a new one")
				if it, err = iterator(); err != nil {
					return err
				}
				continue
			}
			if err = classifyAWS(err); heal.IsPermanent(err) {
				return fmt.Errorf("shard %s: get records: %w", shard, err)
			}
			log.Debug("get records failed; retrying", "err", err)
			if werr := bo.wait(ctx); werr != nil {
				return werr
			}
			continue
		}
		bo.reset()
		if n := len(res.Records); n > 0 {
			select {
			case out <- shardMsg{shard: shard, records: res.Records}:
			case <-ctx.Done():
				return ctx.Err()
			}
			last = aws.ToString(res.Records[n-1].SequenceNumber)
		}
		it = res.NextShardIterator
		if it == nil {
			select {
			case out <- shardMsg{shard: shard, done: true}:
			case <-ctx.Done():
				return ctx.Err()
			}
			return nil
		}
		if len(res.Records) == 0 {
			t := time.NewTimer(c.o.PollInterval)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			}
		}
	}
	return nil
}
