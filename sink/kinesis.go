package sink

import (
	"context"
	"fmt"
	"net/url"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/selfheal/heal"
)

// Kinesis Data Streams limits PutRecords requests.
const (
	kinesisMaxRecords     = 500
	kinesisMaxBatchBytes  = 5 << 20 // data and partition keys of one request
	kinesisMaxRecordBytes = 1 << 20 // data and partition key of one record
	kinesisMaxKeyChars    = 256
)

// KinesisOptions configures a [KinesisSink]. A nil *KinesisOptions, or any
// zero field, means the default written beside the field.
type KinesisOptions struct {
	// Retry governs the records a PutRecords call reports as failed
	// (throttled shards, internal failures): only those are sent again,
	// after a backoff, up to Retry.MaxAttempts sends in all. Zero fields:
	// 100ms initial wait, doubling, 5s at most, ±50% jitter, 5 attempts.
	// Whole-request failures are retried by the SDK client, not here.
	Retry heal.RetryPolicy
}

// KinesisSink writes the rows of a dataset to a Kinesis data stream, as
// the original pipeline's producer did, for consumers such as a
// [KinesisConsumer] or Kinesis Data Firehose to pick up. Make it with
// [NewKinesisSink].
//
// Each row is one stream record: a JSON object (see [EncodeJSONRows]) with
// the row's key (the dataset's Key column, e.g. the symbol) as partition
// key, so one key's rows stay in order on one shard. Rows go out in
// PutRecords requests of at most 500 records and 5 MiB.
type KinesisSink struct {
	client *kinesis.Client
	stream string
	retry  heal.RetryPolicy
}

// NewKinesisSink returns a sink putting records to stream (a name or a
// stream ARN) with client, the caller's (config.LoadDefaultConfig and
// kinesis.NewFromConfig).
func NewKinesisSink(client *kinesis.Client, stream string, opts *KinesisOptions) *KinesisSink {
	var o KinesisOptions
	if opts != nil {
		o = *opts
	}
	return &KinesisSink{client: client, stream: stream, retry: retryDefaults(o.Retry)}
}

// Write puts every row of rec, which must have ds's schema, to the stream.
// It returns once every record was accepted, or with an error: a rejected
// record (a row without a key, larger than 1 MiB) is an *heal.InputError
// and nothing is sent; records still failing after Retry.MaxAttempts give
// an error counting them. Records sent before an error stay in the stream:
// a retried Write may send them twice, which the lake's (key, time)
// idempotency absorbs. Write does not retain rec and may be called
// concurrently.
func (s *KinesisSink) Write(ctx context.Context, ds *heal.Dataset, rec arrow.Record) error {
	if err := ds.CheckSchema(rec.Schema()); err != nil {
		return err
	}
	rows, err := EncodeJSONRows(rec)
	if err != nil {
		return heal.Permanent(err)
	}
	keys := rec.Column(ds.KeyIndex()).(*array.String)
	entries := make([]types.PutRecordsRequestEntry, len(rows))
	for i, data := range rows {
		if keys.IsNull(i) {
			return &heal.InputError{Dataset: ds.Name, Field: ds.Key, Row: i, Err: fmt.Errorf("null key: no partition key")}
		}
		key := keys.Value(i)
		if key == "" || utf8.RuneCountInString(key) > kinesisMaxKeyChars {
			return &heal.InputError{Dataset: ds.Name, Field: ds.Key, Row: i, Err: fmt.Errorf("key %q cannot be a partition key (1 to 256 characters)", key)}
		}
		if len(data)+len(key) > kinesisMaxRecordBytes {
			return &heal.InputError{Dataset: ds.Name, Field: ds.Key, Row: i, Err: fmt.Errorf("row of %d bytes is over the 1 MiB Kinesis record limit", len(data))}
		}
		entries[i] = types.PutRecordsRequestEntry{Data: data, PartitionKey: aws.String(key)}
	}
	for start := 0; start < len(entries); {
		end, size := start, 0
		for end < len(entries) && end-start < kinesisMaxRecords {
			n := len(entries[end].Data) + len(aws.ToString(entries[end].PartitionKey))
			if size+n > kinesisMaxBatchBytes {
				break
			}
			size += n
			end++
		}
		if err := s.put(ctx, entries[start:end]); err != nil {
			return fmt.Errorf("heal/sink: kinesis %s: rows %d to %d of %d: %w", s.stream, start, end-1, len(entries), err)
		}
		start = end
	}
	return nil
}

// put sends one batch, then only its failed records again, with backoff.
func (s *KinesisSink) put(ctx context.Context, pending []types.PutRecordsRequestEntry) error {
	b := newBackoff(s.retry)
	for attempt := 1; ; attempt++ {
		in := &kinesis.PutRecordsInput{Records: pending}
		setStream(s.stream, &in.StreamName, &in.StreamARN)
		out, err := s.client.PutRecords(ctx, in)
		if err != nil {
			return classifyAWS(err)
		}
		if aws.ToInt32(out.FailedRecordCount) == 0 {
			return nil
		}
		var failed []types.PutRecordsRequestEntry
		codes := map[string]int{}
		for i, r := range out.Records {
			if r.ErrorCode != nil && i < len(pending) {
				failed = append(failed, pending[i])
				codes[aws.ToString(r.ErrorCode)]++
			}
		}
		if len(failed) == 0 {
			return fmt.Errorf("kinesis reported %d failed records but marked none", aws.ToInt32(out.FailedRecordCount))
		}
		if attempt >= s.retry.MaxAttempts {
			return fmt.Errorf("%d of the records still failed after %d attempts (%s)", len(failed), attempt, codeSummary(codes))
		}
		if err := b.wait(ctx); err != nil {
			return fmt.Errorf("%d records failed (%s), and then: %w", len(failed), codeSummary(codes), err)
		}
		pending = failed
	}
}

func codeSummary(codes map[string]int) string {
	var parts []string
	for c, n := range codes {
		parts = append(parts, fmt.Sprintf("%d %s", n, c))
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}

// setStream sets the name or the ARN field of a request, whichever
// stream is.
func setStream(stream string, name, arn **string) {
	if strings.HasPrefix(stream, "arn:") {
		*arn = aws.String(stream)
	} else {
		*name = aws.String(stream)
	}
}

// OpenKinesis returns a client made with the standard AWS configuration
// (config.LoadDefaultConfig: credentials from the environment, shared files
// or the instance role; AWS_ENDPOINT_URL_KINESIS for a local server) and
// the stream a URL names: "kinesis://NAME" or "kinesis://arn:aws:kinesis:…"
// (the region then comes from the ARN). A region=NAME query parameter
// overrides the region. Use the pair with [NewKinesisSink] or
// [NewKinesisConsumer].
func OpenKinesis(ctx context.Context, rawURL string) (*kinesis.Client, string, error) {
	rest, ok := strings.CutPrefix(rawURL, "kinesis://")
	if !ok || rest == "" {
		return nil, "", fmt.Errorf("heal/sink: kinesis url %q: want kinesis://STREAM or kinesis://STREAM-ARN", rawURL)
	}
	stream, query, _ := strings.Cut(rest, "?")
	stream = strings.TrimSuffix(stream, "/")
	var loadOpts []func(*config.LoadOptions) error
	if region := arnRegion(stream); region != "" {
		loadOpts = append(loadOpts, config.WithRegion(region))
	}
	q, err := url.ParseQuery(query)
	if err != nil {
		return nil, "", fmt.Errorf("heal/sink: kinesis url %q: %w", rawURL, err)
	}
	if r := q.Get("region"); r != "" {
		loadOpts = append(loadOpts, config.WithRegion(r))
	}
	cfg, err := config.LoadDefaultConfig(ctx, loadOpts...)
	if err != nil {
		return nil, "", fmt.Errorf("heal/sink: kinesis: load aws config: %w", err)
	}
	return kinesis.NewFromConfig(cfg), stream, nil
}

// arnRegion returns the region field of an ARN, or "".
func arnRegion(s string) string {
	parts := strings.SplitN(s, ":", 6)
	if len(parts) == 6 && parts[0] == "arn" {
		return parts[3]
	}
	return ""
}
