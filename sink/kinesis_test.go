package sink_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/memory"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/aws/smithy-go/middleware"

	"github.com/selfheal/heal"
	"github.com/selfheal/heal/healtest"
	"github.com/selfheal/heal/internal/awstest"
	"github.com/selfheal/heal/sink"
)

var kinT0 = time.Date(2024, 1, 2, 14, 0, 0, 0, time.UTC)

// kinRows returns n rows over the given symbols, one minute apart per
// symbol, starting at kinT0 plus offset minutes.
func kinRows(symbols []string, n, offset int) []healtest.Row {
	rows := make([]healtest.Row, n)
	for i := range rows {
		m := offset + i/len(symbols)
		rows[i] = healtest.Row{Key: symbols[i%len(symbols)], Time: kinT0.Add(time.Duration(m) * time.Minute), Price: float64(100 + i)}
	}
	return rows
}

var kinSymbols = []string{"AAPL", "MSFT", "GOOG", "AMZN", "BINANCE:BTCUSDT", "TSLA", "NVDA"}

// putRecordsSpy records what each PutRecords call carried and can make
// the first call report some records as throttled without sending them,
// as Kinesis does under a partial failure.
type putRecordsSpy struct {
	mu    sync.Mutex
	calls [][]types.PutRecordsRequestEntry
	// doom reports whether record i of the first call fails.
	doom func(i int) bool
	// dry answers every call with success without sending anything.
	dry bool
}

func (s *putRecordsSpy) option(o *kinesis.Options) {
	o.APIOptions = append(o.APIOptions, func(stack *middleware.Stack) error {
		return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("spy", func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
			pin, ok := in.Parameters.(*kinesis.PutRecordsInput)
			if !ok {
				return next.HandleInitialize(ctx, in)
			}
			s.mu.Lock()
			s.calls = append(s.calls, append([]types.PutRecordsRequestEntry(nil), pin.Records...))
			first := len(s.calls) == 1
			s.mu.Unlock()
			if s.dry {
				res := make([]types.PutRecordsResultEntry, len(pin.Records))
				for i := range res {
					res[i] = types.PutRecordsResultEntry{SequenceNumber: aws.String(fmt.Sprint(i + 1)), ShardId: aws.String("shardId-000000000000")}
				}
				return middleware.InitializeOutput{Result: &kinesis.PutRecordsOutput{Records: res, FailedRecordCount: aws.Int32(0)}}, middleware.Metadata{}, nil
			}
			if !first || s.doom == nil {
				return next.HandleInitialize(ctx, in)
			}
			var keep []types.PutRecordsRequestEntry
			var doomed []bool
			for i, r := range pin.Records {
				d := s.doom(i)
				doomed = append(doomed, d)
				if !d {
					keep = append(keep, r)
				}
			}
			sent := *pin
			sent.Records = keep
			in.Parameters = &sent
			out, md, err := next.HandleInitialize(ctx, in)
			if err != nil {
				return out, md, err
			}
			res := out.Result.(*kinesis.PutRecordsOutput)
			full := make([]types.PutRecordsResultEntry, len(pin.Records))
			failed, j := 0, 0
			for i := range full {
				if doomed[i] {
					full[i] = types.PutRecordsResultEntry{ErrorCode: aws.String("ProvisionedThroughputExceededException"), ErrorMessage: aws.String("Rate exceeded for shard")}
					failed++
					continue
				}
				full[i] = res.Records[j]
				j++
			}
			res.Records = full
			res.FailedRecordCount = aws.Int32(int32(failed))
			return out, md, nil
		}), middleware.Before)
	})
}

func (s *putRecordsSpy) sizes() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	var n []int
	for _, c := range s.calls {
		n = append(n, len(c))
	}
	return n
}

// TestKinesisSinkBatching checks the PutRecords limits on a client that
// sends nothing: at most 500 records and 5 MiB a request, partition key =
// the row's key.
func TestKinesisSinkBatching(t *testing.T) {
	spy := &putRecordsSpy{dry: true}
	client := kinesis.New(kinesis.Options{Region: awstest.Region, BaseEndpoint: aws.String("http://127.0.0.1:9")}, spy.option)
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	ctx := context.Background()

	ds := healtest.QuotesDataset()
	rec := healtest.Records(mem, ds, kinRows(kinSymbols, 1234, 0)...)
	defer rec.Release()
	s := sink.NewKinesisSink(client, "quotes", nil)
	if err := s.Write(ctx, ds, rec); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(spy.sizes()); got != "[500 500 234]" {
		t.Fatalf("request sizes %s, want [500 500 234]", got)
	}
	for _, call := range spy.calls {
		for _, e := range call {
			var row struct{ Symbol string }
			if err := json.Unmarshal(e.Data, &row); err != nil {
				t.Fatal(err)
			}
			if aws.ToString(e.PartitionKey) != row.Symbol {
				t.Fatalf("partition key %q for a row of %q", aws.ToString(e.PartitionKey), row.Symbol)
			}
		}
	}

	// Wide rows: the 5 MiB request limit binds before the 500 records.
	wide := &heal.Dataset{Name: "notes", Key: "k", Time: "t", Grain: time.Minute, Schema: arrow.NewSchema([]arrow.Field{
		{Name: "k", Type: arrow.BinaryTypes.String},
		{Name: "t", Type: &arrow.TimestampType{Unit: arrow.Millisecond, TimeZone: "UTC"}},
		{Name: "note", Type: arrow.BinaryTypes.String},
	}, nil)}
	b := array.NewRecordBuilder(mem, wide.Schema)
	defer b.Release()
	note := strings.Repeat("x", 20<<10)
	for i := range 600 {
		b.Field(0).(*array.StringBuilder).Append(kinSymbols[i%len(kinSymbols)])
		b.Field(1).(*array.TimestampBuilder).Append(arrow.Timestamp(kinT0.Add(time.Duration(i) * time.Minute).UnixMilli()))
		b.Field(2).(*array.StringBuilder).Append(note)
	}
	wrec := b.NewRecord()
	defer wrec.Release()
	spy.calls = nil
	if err := s.Write(ctx, wide, wrec); err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, call := range spy.calls {
		size := 0
		for _, e := range call {
			size += len(e.Data) + len(aws.ToString(e.PartitionKey))
		}
		if size > 5<<20 {
			t.Fatalf("a request of %d bytes is over 5 MiB", size)
		}
		total += len(call)
	}
	if total != 600 || len(spy.calls) != 3 {
		t.Fatalf("%d records in %d requests (%v), want 600 in 3", total, len(spy.calls), spy.sizes())
	}

	// A row over the 1 MiB record limit is refused before anything is sent.
	b.Field(0).(*array.StringBuilder).Append("BIG")
	b.Field(1).(*array.TimestampBuilder).Append(arrow.Timestamp(kinT0.UnixMilli()))
	b.Field(2).(*array.StringBuilder).Append(strings.Repeat("y", 1<<20))
	big := b.NewRecord()
	defer big.Release()
	spy.calls = nil
	var ie *heal.InputError
	if err := s.Write(ctx, wide, big); !errors.As(err, &ie) || len(spy.calls) != 0 {
		t.Fatalf("oversized row: %v after %d calls", err, len(spy.calls))
	}
	// A record of another schema is refused.
	if err := s.Write(ctx, ds, wrec); !errors.Is(err, heal.ErrSchemaMismatch) {
		t.Fatalf("wrong schema: %v", err)
	}
}

// kinStream creates a stream with shards on kinesalite and deletes it when
// t ends.
func kinStream(t *testing.T, c *kinesis.Client, shards int32) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	name := awstest.Name("heal-test")
	if _, err := c.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: aws.String(name), ShardCount: aws.Int32(shards)}); err != nil {
		t.Fatal(err)
	}
	if err := kinesis.NewStreamExistsWaiter(c, func(o *kinesis.StreamExistsWaiterOptions) { o.MinDelay = 50 * time.Millisecond }).
		Wait(ctx, &kinesis.DescribeStreamInput{StreamName: aws.String(name)}, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = c.DeleteStream(context.Background(), &kinesis.DeleteStreamInput{StreamName: aws.String(name)})
	})
	return name
}

// waitFor polls cond until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// runConsumer runs c until stop is called, which returns Run's error.
func runConsumer(c *sink.KinesisConsumer) (stop func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	return func() error {
		cancel()
		return <-done
	}
}

func fastConsumer(o sink.KinesisConsumerOptions) *sink.KinesisConsumerOptions {
	if o.FlushInterval == 0 {
		o.FlushInterval = 200 * time.Millisecond
	}
	o.PollInterval = 30 * time.Millisecond
	o.Retry = heal.RetryPolicy{InitialInterval: 10 * time.Millisecond, MaxInterval: 100 * time.Millisecond}
	return &o
}

func scanAll(t *testing.T, lake heal.Lake, ds *heal.Dataset) []healtest.Row {
	t.Helper()
	rows, _, err := healtest.ScanRows(context.Background(), lake, ds, heal.Query{})
	if err != nil {
		t.Fatal(err)
	}
	return rows
}

// sameRows compares as sets keyed by (key, time), with the price.
func sameRows(t *testing.T, got, want []healtest.Row) {
	t.Helper()
	m := map[string]float64{}
	for _, r := range want {
		m[r.Key+"@"+r.Time.Format(time.RFC3339)] = r.Price
	}
	if len(got) != len(m) {
		t.Fatalf("lake holds %d rows, want %d", len(got), len(m))
	}
	for _, r := range got {
		p, ok := m[r.Key+"@"+r.Time.Format(time.RFC3339)]
		if !ok || p != r.Price {
			t.Fatalf("unexpected row %v (want price %v, present %v)", r, p, ok)
		}
	}
}

// TestKinesisEndToEnd: rows put by the sink on a 2-shard kinesalite stream
// (one request failing in part) are consumed into a Parquet lake in a few
// flushes, once each, and a restarted consumer resumes from its
// checkpoints in the lake.
func TestKinesisEndToEnd(t *testing.T) {
	spy := &putRecordsSpy{doom: func(i int) bool { return i%7 == 3 }}
	kc := awstest.Kinesis(t, spy.option)
	stream := kinStream(t, kc, 2)
	ctx := s3Ctx(t)
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	ds := healtest.QuotesDataset()
	store := sink.NewMemStore()
	lake := sink.NewLake(store, &sink.Options{Allocator: mem})

	rows := kinRows(kinSymbols, 1200, 0)
	rec := healtest.Records(mem, ds, rows...)
	defer rec.Release()
	start := time.Now()
	if err := sink.NewKinesisSink(kc, stream, &sink.KinesisOptions{Retry: heal.RetryPolicy{InitialInterval: 10 * time.Millisecond}}).Write(ctx, ds, rec); err != nil {
		t.Fatal(err)
	}
	sizes := spy.sizes()
	// 1200 rows: 500+500+200, and the 71 throttled of the first request
	// (i%7==3 of 500) sent again alone.
	if fmt.Sprint(sizes) != "[500 71 500 200]" {
		t.Fatalf("PutRecords sizes %v, want [500 71 500 200]: only the failed records retried", sizes)
	}
	t.Logf("put 1200 rows in %v", time.Since(start))

	c, err := sink.NewKinesisConsumer(kc, stream, ds, lake, fastConsumer(sink.KinesisConsumerOptions{MaxRows: 700, Allocator: mem}))
	if err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	stop := runConsumer(c)
	waitFor(t, 30*time.Second, "1200 rows in the lake", func() bool { return c.Stats().Rows >= 1200 })
	if err := stop(); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run = %v, want context.Canceled", err)
	}
	st := c.Stats()
	t.Logf("consumed in %v: %+v", time.Since(start), st)
	if st.Records != 1200 || st.Rows != 1200 || st.Rejected != 0 {
		t.Fatalf("stats %+v", st)
	}
	// A handful of flushes (by size at 700 rows, or by time), never one per record.
	if st.Flushes < 1 || st.Flushes > 6 {
		t.Fatalf("%d flushes for 1200 records", st.Flushes)
	}
	files := 0
	_ = store.List(ctx, "quotes/", func(sink.ObjectInfo) error { files++; return nil })
	if files > int(st.Flushes)*len(kinSymbols) {
		t.Fatalf("%d files for %d flushes over %d partitions", files, st.Flushes, len(kinSymbols))
	}
	sameRows(t, scanAll(t, lake, ds), rows)

	// Restart: checkpoints (kept in the lake) skip what was committed.
	more := append(kinRows(kinSymbols, 70, 1000), rows[:30]...) // 70 new, 30 re-sent
	mrec := healtest.Records(mem, ds, more...)
	defer mrec.Release()
	if err := sink.NewKinesisSink(kc, stream, nil).Write(ctx, ds, mrec); err != nil {
		t.Fatal(err)
	}
	c2, err := sink.NewKinesisConsumer(kc, stream, ds, sink.NewLake(store, &sink.Options{Allocator: mem}), fastConsumer(sink.KinesisConsumerOptions{Allocator: mem}))
	if err != nil {
		t.Fatal(err)
	}
	stop = runConsumer(c2)
	waitFor(t, 30*time.Second, "100 more records", func() bool { return c2.Stats().Rows >= 100 })
	_ = stop()
	if st := c2.Stats(); st.Records != 100 {
		t.Fatalf("restarted consumer read %d records, want the 100 new ones only", st.Records)
	}
	sameRows(t, scanAll(t, lake, ds), append(rows, more...))
}

// failingCheckpointer loses every checkpoint: a crash after each lake
// write, before the checkpoint.
type failingCheckpointer struct{ sink.Checkpointer }

func (failingCheckpointer) SetCheckpoint(context.Context, string, string) error {
	return errors.New("crashed before the checkpoint")
}

// TestKinesisExactlyOnce: a consumer that "crashes" between each lake write
// and its checkpoint makes the next one read everything again; the lake
// still holds each (key, time) once.
func TestKinesisExactlyOnce(t *testing.T) {
	kc := awstest.Kinesis(t)
	stream := kinStream(t, kc, 1)
	ctx := s3Ctx(t)
	ds := healtest.QuotesDataset()
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	lake := sink.NewLake(sink.NewMemStore(), &sink.Options{Allocator: mem})
	rows := kinRows(kinSymbols[:3], 300, 0)
	rec := healtest.Records(mem, ds, rows...)
	defer rec.Release()
	if err := sink.NewKinesisSink(kc, stream, nil).Write(ctx, ds, rec); err != nil {
		t.Fatal(err)
	}
	cps := sink.NewMemCheckpointer()
	for round, cp := range []sink.Checkpointer{failingCheckpointer{cps}, cps, cps} {
		c, err := sink.NewKinesisConsumer(kc, stream, ds, lake, fastConsumer(sink.KinesisConsumerOptions{Checkpoints: cp, Allocator: mem}))
		if err != nil {
			t.Fatal(err)
		}
		stop := runConsumer(c)
		if round < 2 {
			waitFor(t, 30*time.Second, "300 rows", func() bool { return c.Stats().Rows >= 300 })
		} else {
			time.Sleep(300 * time.Millisecond) // all checkpointed: nothing to read
		}
		_ = stop()
		want := []int64{300, 300, 0}[round]
		if got := c.Stats().Records; got != want {
			t.Fatalf("round %d read %d records, want %d", round, got, want)
		}
	}
	got := scanAll(t, lake, ds)
	sameRows(t, got, rows)
	var stored, present int64
	if err := lake.Inventory(ctx, ds, heal.Query{}, func(p heal.PartitionInfo) error {
		stored += p.Rows
		present += int64(p.Present.Count())
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if stored != 600 || present != 300 {
		t.Fatalf("inventory: %d rows stored, %d slots present; want 600 (two deliveries) and 300", stored, present)
	}
}

// TestKinesisConsumerRejectsAndFlushesByTime: records that are not rows of
// the dataset are skipped and reported; a small batch is flushed by time.
func TestKinesisConsumerRejectsAndFlushesByTime(t *testing.T) {
	kc := awstest.Kinesis(t)
	stream := kinStream(t, kc, 1)
	ctx := s3Ctx(t)
	ds := healtest.QuotesDataset()
	for _, data := range []string{
		`{"symbol":"AAPL","ts":"2024-01-02T14:00:00Z","price":1}`,
		`not json`,
		`{"symbol":null,"ts":"2024-01-02T14:01:00Z","price":2}`,
		`{"symbol":"AAPL","ts":"2024-01-02T14:02:30Z","price":3}`, // floored to 14:02
	} {
		if _, err := kc.PutRecord(ctx, &kinesis.PutRecordInput{StreamName: aws.String(stream), Data: []byte(data + "\n"), PartitionKey: aws.String("p")}); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	var rejected []string
	lake := sink.NewLake(sink.NewMemStore(), nil)
	c, err := sink.NewKinesisConsumer(kc, stream, ds, lake, fastConsumer(sink.KinesisConsumerOptions{
		FlushInterval: 300 * time.Millisecond,
		OnReject: func(shard, seq string, data []byte, err error) {
			mu.Lock()
			rejected = append(rejected, strings.TrimSpace(string(data)))
			mu.Unlock()
		},
	}))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	stop := runConsumer(c)
	waitFor(t, 10*time.Second, "a flush", func() bool { return c.Stats().Flushes >= 1 })
	if el := time.Since(start); el < 250*time.Millisecond {
		t.Fatalf("flushed after %v, before FlushInterval", el)
	}
	_ = stop()
	st := c.Stats()
	if st.Rows != 2 || st.Rejected != 2 || st.Flushes != 1 {
		t.Fatalf("stats %+v, want 2 rows, 2 rejected, 1 flush", st)
	}
	if len(rejected) != 2 || rejected[0] != "not json" {
		t.Fatalf("rejected %q", rejected)
	}
	got := scanAll(t, lake, ds)
	if len(got) != 2 || !got[1].Time.Equal(kinT0.Add(2*time.Minute)) {
		t.Fatalf("lake holds %v", got)
	}
}

func TestKinesisConsumerMissingStream(t *testing.T) {
	kc := awstest.Kinesis(t)
	c, err := sink.NewKinesisConsumer(kc, "heal-no-such-stream", healtest.QuotesDataset(), sink.NewLake(sink.NewMemStore(), nil), fastConsumer(sink.KinesisConsumerOptions{}))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := c.Run(ctx); !heal.IsPermanent(err) {
		t.Fatalf("Run on a missing stream = %v, want a permanent error", err)
	}
}

func TestOpenKinesisURL(t *testing.T) {
	t.Setenv("AWS_REGION", "us-east-1")
	t.Setenv("AWS_CONFIG_FILE", "/dev/null")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
	ctx := context.Background()
	for _, tc := range []struct{ url, stream, region string }{
		{"kinesis://quotes", "quotes", "us-east-1"},
		{"kinesis://quotes/?region=eu-west-1", "quotes", "eu-west-1"},
		{"kinesis://arn:aws:kinesis:ap-south-1:123456789012:stream/quotes", "arn:aws:kinesis:ap-south-1:123456789012:stream/quotes", "ap-south-1"},
		{"kinesis://", "", ""},
		{"s3://quotes", "", ""},
	} {
		c, stream, err := sink.OpenKinesis(ctx, tc.url)
		if tc.stream == "" {
			if err == nil {
				t.Errorf("OpenKinesis(%q) succeeded", tc.url)
			}
			continue
		}
		if err != nil || stream != tc.stream || c.Options().Region != tc.region {
			t.Errorf("OpenKinesis(%q) = %q in %q, %v", tc.url, stream, c.Options().Region, err)
		}
	}
}
