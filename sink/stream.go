package sink

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/memory"

	"github.com/selfheal/heal"
	"github.com/selfheal/heal/internal/jsonval"
)

// This file holds what stream sinks and consumers share: the record
// encoding on the wire, checkpoints, and backoff.

// # Encoding
//
// A stream record is one row, as a JSON object terminated by a newline:
//
//	{"symbol":"AAPL","ts":"2024-01-02T14:00:00Z","close":185.2,"volume":1200}
//
// Columns appear in schema order under their names; nulls are null;
// timestamps are RFC 3339 in UTC; NaN and ±Inf are the strings "NaN",
// "+Inf", "-Inf"; integers beyond ±2^53 are decimal strings (so no JSON
// reader rounds them). The trailing newline keeps a concatenation of
// records (what Kinesis Data Firehose writes to S3) newline-delimited JSON
// that Athena, DuckDB and jq read as it is. JSON rather than Arrow IPC was
// chosen for that reason: every consumer of the stream, not only heal, can
// read it, and one row per record lets the partition key be the row's key.

// EncodeJSONRows returns one newline-terminated JSON object per row of rec,
// in the encoding described above.
func EncodeJSONRows(rec arrow.Record) ([][]byte, error) {
	fields := rec.Schema().Fields()
	names := make([][]byte, len(fields))
	for j, f := range fields {
		n, err := json.Marshal(f.Name)
		if err != nil {
			return nil, err
		}
		names[j] = n
	}
	out := make([][]byte, rec.NumRows())
	var buf bytes.Buffer
	for i := range int(rec.NumRows()) {
		buf.Reset()
		buf.WriteByte('{')
		for j, col := range rec.Columns() {
			if j > 0 {
				buf.WriteByte(',')
			}
			buf.Write(names[j])
			buf.WriteByte(':')
			if err := appendJSONValue(&buf, col, i); err != nil {
				return nil, fmt.Errorf("heal/sink: encode row %d column %q: %w", i, fields[j].Name, err)
			}
		}
		buf.WriteString("}\n")
		out[i] = bytes.Clone(buf.Bytes())
	}
	return out, nil
}

const maxExactFloatInt = 1 << 53

func appendJSONValue(buf *bytes.Buffer, col arrow.Array, i int) error {
	if col.IsNull(i) {
		buf.WriteString("null")
		return nil
	}
	var v any
	switch c := col.(type) {
	case *array.Timestamp:
		toTime, err := c.DataType().(*arrow.TimestampType).GetToTimeFunc()
		if err != nil {
			return err
		}
		v = toTime(c.Value(i)).UTC().Format(time.RFC3339Nano)
	case *array.Float64:
		v = jsonval.Float(c.Value(i))
	case *array.Float32:
		v = jsonval.Float(float64(c.Value(i)))
	case *array.Int64:
		if x := c.Value(i); x > maxExactFloatInt || x < -maxExactFloatInt {
			v = fmt.Sprint(x)
		} else {
			v = x
		}
	case *array.Uint64:
		if x := c.Value(i); x > maxExactFloatInt {
			v = fmt.Sprint(x)
		} else {
			v = x
		}
	default:
		v = col.GetOneForMarshal(i)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	buf.Write(b)
	return nil
}

// decodeJSONRows decodes rows (one JSON object each) with ds's schema and
// aligns their times to the grain (heal's rule for times off the grain).
// A row that does not decode, or has a null or invalid key or a null time,
// is left out and reported in rejected (by index, with the reason); the
// others come back as one record (nil when none is left), which the caller
// releases.
func decodeJSONRows(mem memory.Allocator, ds *heal.Dataset, rows [][]byte) (arrow.Record, map[int]error) {
	rejected := map[int]error{}
	for {
		rec, bad, err := decodeOnce(mem, ds, rows, rejected)
		if err == nil {
			return rec, rejected
		}
		rejected[bad] = err
	}
}

// decodeOnce decodes the rows not yet rejected. On the first bad row it
// returns that row's index and why; the caller rejects it and tries again
// (arrow builders cannot take back a half-appended row).
func decodeOnce(mem memory.Allocator, ds *heal.Dataset, rows [][]byte, rejected map[int]error) (arrow.Record, int, error) {
	b := array.NewRecordBuilder(mem, ds.Schema)
	defer b.Release()
	idx := make([]int, 0, len(rows)) // row of the record -> index in rows
	for i, data := range rows {
		if _, ok := rejected[i]; ok {
			continue
		}
		if err := b.UnmarshalJSON(data); err != nil {
			return nil, i, fmt.Errorf("heal/sink: not a JSON row of %s: %w", ds.Name, err)
		}
		idx = append(idx, i)
	}
	if len(idx) == 0 {
		return nil, 0, nil
	}
	raw := b.NewRecord()
	defer raw.Release()
	rec, err := ds.Align(mem, raw)
	if err != nil {
		var ie *heal.InputError
		if errors.As(err, &ie) && ie.Row >= 0 && ie.Row < len(idx) {
			return nil, idx[ie.Row], err
		}
		// Not a row's fault (the schema itself): every row is refused.
		return nil, idx[0], err
	}
	return rec, 0, nil
}

// Checkpointer remembers how far a consumer has read each shard of a
// stream. A consumer sets a checkpoint only after the records up to it are
// in the lake, so a restart re-reads at most what was not yet committed
// (at-least-once), and the lake's (key, time) idempotency turns that into
// exactly-once. Methods may be called concurrently.
type Checkpointer interface {
	// Checkpoint returns the sequence number of the last record committed
	// from shard, or "" when none was.
	Checkpoint(ctx context.Context, shard string) (string, error)
	// SetCheckpoint records seq as the last record committed from shard.
	SetCheckpoint(ctx context.Context, shard, seq string) error
}

// NewMemCheckpointer returns a Checkpointer in memory: a restarted process
// reads every shard from the start again.
func NewMemCheckpointer() Checkpointer { return &memCheckpointer{m: map[string]string{}} }

type memCheckpointer struct {
	mu sync.Mutex
	m  map[string]string
}

func (c *memCheckpointer) Checkpoint(_ context.Context, shard string) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[shard], nil
}

func (c *memCheckpointer) SetCheckpoint(_ context.Context, shard, seq string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.m[shard] = seq
	return nil
}

// NewMetaCheckpointer returns a Checkpointer kept in ms (the Parquet lake
// is a heal.MetaStore) under "streams/<name>/<shard>/". As a MetaStore
// never overwrites, each checkpoint is a new entry named by its sequence
// number, zero-padded so that names sort like numbers; older entries are
// deleted after a new one is written, and the greatest one wins when a
// crash left several.
func NewMetaCheckpointer(ms heal.MetaStore, name string) Checkpointer {
	return &metaCheckpointer{ms: ms, prefix: "streams/" + EscapeKey(name) + "/"}
}

type metaCheckpointer struct {
	ms     heal.MetaStore
	prefix string
}

// seqWidth is the width sequence numbers are padded to: Kinesis documents
// them as strings of up to 128 decimal digits.
const seqWidth = 128

func (c *metaCheckpointer) dir(shard string) string { return c.prefix + EscapeKey(shard) + "/" }

func (c *metaCheckpointer) Checkpoint(ctx context.Context, shard string) (string, error) {
	names, err := c.ms.ListMeta(ctx, c.dir(shard))
	if err != nil {
		return "", fmt.Errorf("heal/sink: checkpoint of %s: %w", shard, err)
	}
	if len(names) == 0 {
		return "", nil
	}
	last := names[len(names)-1]
	return strings.TrimLeft(last[strings.LastIndexByte(last, '/')+1:], "0"), nil
}

func (c *metaCheckpointer) SetCheckpoint(ctx context.Context, shard, seq string) error {
	if seq == "" || len(seq) > seqWidth || strings.Trim(seq, "0123456789") != "" {
		return fmt.Errorf("heal/sink: checkpoint of %s: %q is not a sequence number", shard, seq)
	}
	dir := c.dir(shard)
	name := dir + strings.Repeat("0", seqWidth-len(seq)) + seq
	if err := c.ms.PutMeta(ctx, name, []byte(seq)); err != nil && !errors.Is(err, heal.ErrExist) {
		return fmt.Errorf("heal/sink: checkpoint of %s: %w", shard, err)
	}
	names, err := c.ms.ListMeta(ctx, dir)
	if err != nil {
		return nil // the new checkpoint is written; old ones go next time
	}
	for _, n := range names {
		if n < name {
			_ = c.ms.DeleteMeta(ctx, n)
		}
	}
	return nil
}

// backoff yields the waits of a heal.RetryPolicy (with its defaults filled
// in by the caller) for one operation.
type backoff struct {
	p    heal.RetryPolicy
	next time.Duration
}

func newBackoff(p heal.RetryPolicy) *backoff { return &backoff{p: p, next: p.InitialInterval} }

// wait sleeps for the next interval, or returns ctx's error.
func (b *backoff) wait(ctx context.Context) error {
	d := b.next
	if j := b.p.Jitter; j > 0 {
		d = time.Duration(float64(d) * (1 + j*(2*rand.Float64()-1)))
	}
	b.next = min(time.Duration(float64(b.next)*b.p.Multiplier), b.p.MaxInterval)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func (b *backoff) reset() { b.next = b.p.InitialInterval }

// retryDefaults fills the zero fields of p for stream I/O, which wants
// shorter waits than the engine's repairs.
func retryDefaults(p heal.RetryPolicy) heal.RetryPolicy {
	if p.InitialInterval <= 0 {
		p.InitialInterval = 100 * time.Millisecond
	}
	if p.MaxInterval <= 0 {
		p.MaxInterval = 5 * time.Second
	}
	return p.WithDefaults()
}
