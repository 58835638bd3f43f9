package dispatch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/selfheal/heal"
)

// StageJob is the [heal.Stage] of the alarm raised for a dead job.
const StageJob heal.Stage = "job"

// Runner runs one job: a [*heal.Engine] is one.
type Runner interface {
	RunJob(ctx context.Context, j heal.Job) error
}

// RunnerFunc adapts a function to a [Runner], e.g. to route jobs of
// several datasets to their engines by j.Dataset.
type RunnerFunc func(ctx context.Context, j heal.Job) error

// RunJob calls f.
func (f RunnerFunc) RunJob(ctx context.Context, j heal.Job) error { return f(ctx, j) }

// WorkerOptions configures a [Worker] and [HandleSQSEvent]. A nil
// *WorkerOptions, or any zero field, means the default written beside the
// field.
type WorkerOptions struct {
	// VisibilityTimeout is how long a received job stays hidden from other
	// workers; the worker extends it every third of it while the job runs,
	// so it bounds how long a dead worker's job waits to be redelivered.
	// 0: 60s.
	VisibilityTimeout time.Duration
	// WaitTime is the long-polling wait of each receive. 0: 20s (the most
	// SQS allows).
	WaitTime time.Duration
	// MaxReceives is how many times a job may be received before it is
	// dead: alarmed, sent to DeadLetterQueueURL and deleted. 0: 5.
	MaxReceives int
	// DeadLetterQueueURL receives dead jobs. "": they are alarmed and
	// deleted; the next audit re-plans what they left missing.
	DeadLetterQueueURL string
	// Concurrency is how many jobs one worker runs at once. 0: 1.
	Concurrency int
	// Alarmer is told of dead jobs, once per key. nil: logged at level
	// Error with Logger.
	Alarmer heal.Alarmer
	// Logger receives a line per job started, done, failed or dead, with
	// the keys job, kind, keys, window and receive. nil: discarded.
	Logger *slog.Logger
}

func (o *WorkerOptions) withDefaults() WorkerOptions {
	var w WorkerOptions
	if o != nil {
		w = *o
	}
	if w.VisibilityTimeout <= 0 {
		w.VisibilityTimeout = time.Minute
	}
	if w.WaitTime <= 0 || w.WaitTime > 20*time.Second {
		w.WaitTime = 20 * time.Second
	}
	if w.MaxReceives <= 0 {
		w.MaxReceives = 5
	}
	if w.Concurrency <= 0 {
		w.Concurrency = 1
	}
	if w.Logger == nil {
		w.Logger = slog.New(slog.DiscardHandler)
	}
	if w.Alarmer == nil {
		w.Alarmer = heal.LogAlarmer(w.Logger)
	}
	return w
}

// Worker takes jobs from an SQS queue and runs them. Make it with
// [NewWorker]; see the package documentation for how delivery works.
type Worker struct {
	client *sqs.Client
	url    string
	run    Runner
	opts   WorkerOptions
}

// NewWorker returns a worker taking jobs from the queue at queueURL with
// client and running them with r.
func NewWorker(client *sqs.Client, queueURL string, r Runner, opts *WorkerOptions) *Worker {
	return &Worker{client: client, url: queueURL, run: r, opts: opts.withDefaults()}
}

// Run takes and runs jobs until ctx ends, then returns ctx's error. A job
// interrupted by the end of ctx is made visible again at once for another
// worker. Errors receiving from the queue are logged and retried.
func (w *Worker) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for range w.opts.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			wait := time.Second
			for ctx.Err() == nil {
				if _, err := w.RunOnce(ctx); err != nil && ctx.Err() == nil {
					w.opts.Logger.Warn("receive failed; retrying", "queue", w.url, "err", err)
					select {
					case <-ctx.Done():
					case <-time.After(wait):
					}
					wait = min(2*wait, 30*time.Second)
					continue
				}
				wait = time.Second
			}
		}()
	}
	wg.Wait()
	return ctx.Err()
}

// RunOnce receives at most one job, waiting up to WaitTime for it, and
// handles it. It reports how many messages it handled (0 or 1).
func (w *Worker) RunOnce(ctx context.Context) (int, error) {
	out, err := w.client.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
		QueueUrl:                    aws.String(w.url),
		MaxNumberOfMessages:         1,
		WaitTimeSeconds:             int32(w.opts.WaitTime / time.Second),
		VisibilityTimeout:           int32(w.opts.VisibilityTimeout / time.Second),
		MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameApproximateReceiveCount},
	})
	if err != nil {
		return 0, fmt.Errorf("heal/dispatch: receive from %s: %w", w.url, err)
	}
	for _, m := range out.Messages {
		w.handleMessage(ctx, m)
	}
	return len(out.Messages), nil
}

func (w *Worker) handleMessage(ctx context.Context, m types.Message) {
	receives, _ := strconv.Atoi(m.Attributes[string(types.MessageSystemAttributeNameApproximateReceiveCount)])
	stop := w.keepHidden(ctx, m.ReceiptHandle)
	out := handle(ctx, w.run, &w.opts, aws.ToString(m.Body), receives)
	stop()
	bg, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	switch out {
	case outcomeDead:
		if w.opts.DeadLetterQueueURL != "" {
			if _, err := w.client.SendMessage(bg, &sqs.SendMessageInput{
				QueueUrl: aws.String(w.opts.DeadLetterQueueURL), MessageBody: m.Body, MessageAttributes: m.MessageAttributes,
			}); err != nil {
				w.opts.Logger.Error("could not move a dead job to the dead-letter queue; it stays on the queue", "err", err)
				return
			}
		}
		fallthrough
	case outcomeDone:
		if _, err := w.client.DeleteMessage(bg, &sqs.DeleteMessageInput{QueueUrl: aws.String(w.url), ReceiptHandle: m.ReceiptHandle}); err != nil {
			w.opts.Logger.Warn("could not delete a finished job; it runs again, harmlessly", "err", err)
		}
	case outcomeRetry:
		// Visible again now rather than after the timeout: another worker
		// (or this one) retries it. Once ctx ended, this hands the job on.
		if _, err := w.client.ChangeMessageVisibility(bg, &sqs.ChangeMessageVisibilityInput{
			QueueUrl: aws.String(w.url), ReceiptHandle: m.ReceiptHandle, VisibilityTimeout: 0,
		}); err != nil {
			w.opts.Logger.Warn("could not release a failed job; it is redelivered when its visibility timeout ends", "err", err)
		}
	}
}

// keepHidden extends the message's visibility every third of the timeout
// until stop is called.
func (w *Worker) keepHidden(ctx context.Context, receipt *string) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(w.opts.VisibilityTimeout / 3)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				if _, err := w.client.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{
					QueueUrl: aws.String(w.url), ReceiptHandle: receipt,
					VisibilityTimeout: int32(w.opts.VisibilityTimeout / time.Second),
				}); err != nil && ctx.Err() == nil {
					w.opts.Logger.Warn("could not extend a running job's visibility; another worker may run it too, harmlessly", "err", err)
				}
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

type outcome int

const (
	outcomeDone  outcome = iota // delete the message
	outcomeRetry                // leave it for another run
	outcomeDead                 // alarmed: dead-letter it and delete it
)

// handle decodes and runs one job: the part a Worker and a Lambda share.
func handle(ctx context.Context, r Runner, o *WorkerOptions, body string, receives int) outcome {
	j, err := heal.ParseJob([]byte(body))
	if err != nil {
		dead(ctx, o, heal.Job{}, receives, err)
		return outcomeDead
	}
	log := o.Logger.With("job", j.ID(), "kind", string(j.Kind), "keys", j.Keys, "window", j.Window.String(), "receive", receives)
	if receives > o.MaxReceives {
		dead(ctx, o, j, receives, fmt.Errorf("received %d times, more than MaxReceives %d", receives, o.MaxReceives))
		return outcomeDead
	}
	log.Info("job start")
	err = safeRun(ctx, r, j)
	switch {
	case err == nil:
		log.Info("job done")
		return outcomeDone
	case heal.IsPermanent(err):
		dead(ctx, o, j, receives, err)
		return outcomeDead
	default:
		log.Warn("job failed; it runs again", "err", err)
		return outcomeRetry
	}
}

// safeRun turns a panic in the runner into an error, so one bad job does
// not take the worker and its other jobs down.
func safeRun(ctx context.Context, r Runner, j heal.Job) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("heal/dispatch: job %s panicked: %v", j.ID(), p)
		}
	}()
	return r.RunJob(ctx, j)
}

// dead raises the alarm for a job given up on: one per key, with the
// job's window.
func dead(ctx context.Context, o *WorkerOptions, j heal.Job, receives int, why error) {
	o.Logger.Error("job dead", "job", j.ID(), "kind", string(j.Kind), "keys", j.Keys, "window", j.Window.String(), "receive", receives, "err", why)
	keys := j.Keys
	if len(keys) == 0 {
		keys = []string{""}
	}
	var errs []error
	for _, k := range keys {
		errs = append(errs, o.Alarmer.Alarm(context.WithoutCancel(ctx), heal.Alarm{
			Dataset: j.Dataset, Key: k, Window: j.Window, Stage: StageJob,
			Attempts: receives, LastError: why.Error(), At: time.Now().UTC(),
		}))
	}
	if err := errors.Join(errs...); err != nil {
		o.Logger.Error("alarmer failed", "err", err)
	}
}
