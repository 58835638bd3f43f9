package main

// The AWS way of running the pipeline, the way the original ran: the lake
// on S3 (-lake s3://bucket/prefix), live quotes through a Kinesis stream
// into it (-stream kinesis://name), alarms to SNS (-alarm sns://topic-arn)
// and the API token in Secrets Manager (-token-secret NAME). Every client
// comes from config.LoadDefaultConfig: credentials, region and, for local
// servers only, endpoints (AWS_ENDPOINT_URL_S3, _KINESIS, _SNS,
// _SECRETS_MANAGER) come from the standard environment and files, never
// from flags.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"

	"github.com/selfheal/heal"
	"github.com/selfheal/heal/secret"
	"github.com/selfheal/heal/sink"
)

// openLake opens -lake: an s3://bucket/prefix URL (query parameters
// region= and use_path_style= as sink.OpenS3 reads them), or a directory,
// made when missing; "" is a new folder under the temporary directory. It
// returns the lake and how to name it to a person.
func openLake(ctx context.Context, where string) (*sink.Lake, string, error) {
	if strings.HasPrefix(where, "s3://") {
		st, err := sink.OpenS3(ctx, where, nil)
		if err != nil {
			return nil, "", fmt.Errorf("-lake: %w", err)
		}
		// Fail now, not after a day of polling, when the bucket is missing
		// or the credentials cannot read it.
		errStop := errors.New("stop")
		if err := st.List(ctx, "_heal/datasets/", func(sink.ObjectInfo) error { return errStop }); err != nil && !errors.Is(err, errStop) {
			return nil, "", fmt.Errorf("-lake: %w", err)
		}
		return sink.NewLake(st, nil), st.URL(), nil
	}
	if strings.Contains(where, "://") {
		return nil, "", fmt.Errorf("-lake %q: want a directory or s3://bucket/prefix", where)
	}
	if where == "" {
		var err error
		if where, err = os.MkdirTemp("", "heal-finnhub-"); err != nil {
			return nil, "", err
		}
	}
	lake, err := sink.OpenDir(where, nil)
	if err != nil {
		return nil, "", err
	}
	return lake, where, nil
}

// stream is -stream at work: the live quotes go to a Kinesis stream (the
// producer side), and a consumer in this process lands the stream in the
// lake in micro-batches, the role Kinesis Data Firehose played in the
// original pipeline.
type stream struct {
	sink     *countingSink
	consumer *sink.KinesisConsumer
	name     string
	cancel   context.CancelFunc
	done     chan error
}

// FlushInterval is how long the consumer holds a batch at most; settle is
// the engine's Settle to go with it (see heal.Options.LiveSink).
func streamTimes(simulated bool, speed float64) (flush, poll, settle time.Duration) {
	if simulated {
		// 200ms of real time is 400 simulated seconds at 2000x: audits
		// leave the last quarter hour alone while it is in flight.
		return 200 * time.Millisecond, 50 * time.Millisecond, max(15*time.Minute, time.Duration(float64(time.Second)*speed))
	}
	return 30 * time.Second, time.Second, 2 * time.Minute
}

// openStream starts -stream for ds over lake; nil, nil without the flag.
func openStream(ctx context.Context, rawURL string, ds *heal.Dataset, lake heal.Lake, simulated bool, speed float64, log *slog.Logger) (*stream, error) {
	if rawURL == "" {
		return nil, nil
	}
	client, name, err := sink.OpenKinesis(ctx, rawURL)
	if err != nil {
		return nil, fmt.Errorf("-stream: %w", err)
	}
	if _, err := client.DescribeStreamSummary(ctx, streamInput(name)); err != nil {
		return nil, fmt.Errorf("-stream %s: %w", name, err)
	}
	flush, poll, _ := streamTimes(simulated, speed)
	c, err := sink.NewKinesisConsumer(client, name, ds, lake, &sink.KinesisConsumerOptions{
		FlushInterval: flush, PollInterval: poll, Logger: log,
		// From the oldest record retained, or this lake's checkpoint for
		// the stream: records an earlier run left are landed too, once.
	})
	if err != nil {
		return nil, fmt.Errorf("-stream: %w", err)
	}
	cctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s := &stream{sink: &countingSink{Sink: sink.NewKinesisSink(client, name, nil)}, consumer: c, name: name, cancel: cancel, done: make(chan error, 1)}
	go func() { s.done <- c.Run(cctx) }()
	return s, nil
}

// drain waits until the consumer has landed every row sent so far, for at
// most timeout (real time).
func (s *stream) drain(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		sent, landed := s.sink.rows.Load(), s.consumer.Stats().Rows
		if landed >= sent {
			return nil
		}
		select {
		case err := <-s.done:
			s.done <- err
			return fmt.Errorf("stream %s: the consumer stopped with %d of %d rows landed: %v", s.name, landed, sent, err)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("stream %s: %d of %d rows landed after %s", s.name, landed, sent, timeout)
		}
	}
}

// Close stops the consumer.
func (s *stream) Close() error {
	s.cancel()
	err := <-s.done
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	return err
}

// countingSink counts the rows a sink accepted.
type countingSink struct {
	heal.Sink
	rows atomic.Int64
}

func (c *countingSink) Write(ctx context.Context, ds *heal.Dataset, rec arrow.Record) error {
	if err := c.Sink.Write(ctx, ds, rec); err != nil {
		return err
	}
	c.rows.Add(rec.NumRows())
	return nil
}

// tokenProvider is where the API token comes from: -token-secret (AWS
// Secrets Manager, cached and refreshed), else the FINNHUB_TOKEN variable;
// nil when neither is set (simulation).
func tokenProvider(ctx context.Context, cfg config) (secret.Provider, error) {
	if cfg.TokenSecret != "" {
		p, err := secret.OpenSecretsManager(ctx, cfg.TokenSecret, &secret.Options{Key: cfg.TokenKey})
		if err != nil {
			return nil, fmt.Errorf("-token-secret: %w", err)
		}
		return p, nil
	}
	if os.Getenv("FINNHUB_TOKEN") != "" {
		return secret.Env("FINNHUB_TOKEN"), nil
	}
	return nil, nil
}

// alarmers tells every non-nil alarmer of each alarm.
func alarmers(as ...heal.Alarmer) heal.Alarmer {
	var all []heal.Alarmer
	for _, a := range as {
		if a != nil {
			all = append(all, a)
		}
	}
	return heal.MultiAlarmer(all...)
}

// streamInput names a stream by name or ARN, as Kinesis wants it.
func streamInput(stream string) *kinesis.DescribeStreamSummaryInput {
	if strings.HasPrefix(stream, "arn:") {
		return &kinesis.DescribeStreamSummaryInput{StreamARN: aws.String(stream)}
	}
	return &kinesis.DescribeStreamSummaryInput{StreamName: aws.String(stream)}
}
