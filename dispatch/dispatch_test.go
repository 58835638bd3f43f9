package dispatch_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/selfheal/heal"
	"github.com/selfheal/heal/dispatch"
	"github.com/selfheal/heal/healtest"
	"github.com/selfheal/heal/internal/awstest"
)

// newQueue creates a fresh queue on fauxqs and returns its URL.
func newQueue(t testing.TB, c *sqs.Client, prefix string) string {
	t.Helper()
	out, err := c.CreateQueue(context.Background(), &sqs.CreateQueueInput{QueueName: aws.String(awstest.Name(prefix))})
	if err != nil {
		t.Fatalf("create queue: %v", err)
	}
	t.Cleanup(func() {
		_, _ = c.DeleteQueue(context.Background(), &sqs.DeleteQueueInput{QueueUrl: out.QueueUrl})
	})
	return aws.ToString(out.QueueUrl)
}

// depth returns the visible and in-flight messages of a queue.
func depth(t testing.TB, c *sqs.Client, url string) (visible, inFlight int) {
	t.Helper()
	out, err := c.GetQueueAttributes(context.Background(), &sqs.GetQueueAttributesInput{
		QueueUrl: aws.String(url),
		AttributeNames: []types.QueueAttributeName{
			types.QueueAttributeNameApproximateNumberOfMessages, types.QueueAttributeNameApproximateNumberOfMessagesNotVisible,
		},
	})
	if err != nil {
		t.Fatalf("queue attributes: %v", err)
	}
	v, _ := strconv.Atoi(out.Attributes[string(types.QueueAttributeNameApproximateNumberOfMessages)])
	f, _ := strconv.Atoi(out.Attributes[string(types.QueueAttributeNameApproximateNumberOfMessagesNotVisible)])
	return v, f
}

var day = time.Date(2024, 1, 2, 14, 30, 0, 0, time.UTC)

func job(key string, i int) heal.Job {
	s := day.Add(time.Duration(i) * time.Minute)
	return heal.Job{
		Version: heal.JobVersion, Kind: heal.JobRepair, Dataset: "quotes", Keys: []string{key},
		Window: heal.Window{Start: s, End: s.Add(time.Minute)}, Budget: 3,
		Slots: map[string][]heal.Window{key: {{Start: s, End: s.Add(time.Minute)}}},
	}
}

// record is a Runner that remembers the jobs it ran and their runs.
type record struct {
	mu   sync.Mutex
	runs map[string]int
	fn   func(ctx context.Context, j heal.Job) error
}

func (r *record) RunJob(ctx context.Context, j heal.Job) error {
	r.mu.Lock()
	if r.runs == nil {
		r.runs = map[string]int{}
	}
	r.runs[j.ID()]++
	r.mu.Unlock()
	if r.fn != nil {
		return r.fn(ctx, j)
	}
	return nil
}

func (r *record) count() (jobs, runs int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, n := range r.runs {
		jobs++
		runs += n
	}
	return jobs, runs
}

// drain runs a worker until cond holds (checked after every message or
// empty receive) or the deadline passes.
func drain(t *testing.T, w *dispatch.Worker, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	for !cond() {
		if _, err := w.RunOnce(ctx); err != nil {
			t.Fatalf("worker: %v", err)
		}
	}
}

// TestDispatchAndRun sends 25 jobs (three SendMessageBatch requests) and
// has a worker run them, three at a time: each runs once, and the queue
// ends empty, every message deleted after its run (even the last, whose
// run ended the worker's context).
func TestDispatchAndRun(t *testing.T) {
	c := awstest.SQS(t)
	url := newQueue(t, c, "heal-jobs")
	var jobs []heal.Job
	for i := range 25 {
		jobs = append(jobs, job(fmt.Sprintf("K%02d", i), i))
	}
	if err := dispatch.NewQueue(c, url).Dispatch(context.Background(), jobs); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := &record{}
	r.fn = func(context.Context, heal.Job) error {
		if n, _ := r.count(); n == len(jobs) {
			cancel()
		}
		return nil
	}
	w := dispatch.NewWorker(c, url, r, &dispatch.WorkerOptions{WaitTime: time.Second, Concurrency: 3})
	if err := w.Run(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run = %v; want it to return when its context ends", err)
	}
	for _, j := range jobs {
		if r.runs[j.ID()] != 1 {
			t.Errorf("job %s ran %d times; want 1", j, r.runs[j.ID()])
		}
	}
	if v, f := depth(t, c, url); v != 0 || f != 0 {
		t.Errorf("queue holds %d visible and %d in-flight messages after the run; want none", v, f)
	}
}

// TestLongJobStaysHidden runs a job for three times the visibility timeout
// while a second worker polls: the worker extends the visibility, so the
// second never receives the job while the first runs it.
func TestLongJobStaysHidden(t *testing.T) {
	c := awstest.SQS(t)
	url := newQueue(t, c, "heal-jobs")
	if err := dispatch.NewQueue(c, url).Dispatch(context.Background(), []heal.Job{job("LONG", 0)}); err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	release := make(chan struct{})
	first := &record{fn: func(ctx context.Context, _ heal.Job) error {
		close(started)
		select {
		case <-release:
		case <-ctx.Done():
		}
		return ctx.Err()
	}}
	second := &record{}
	opts := &dispatch.WorkerOptions{VisibilityTimeout: 3 * time.Second, WaitTime: time.Second}
	w1 := dispatch.NewWorker(c, url, first, opts)
	w2 := dispatch.NewWorker(c, url, second, opts)
	done := make(chan error, 1)
	go func() { _, err := w1.RunOnce(context.Background()); done <- err }()
	<-started
	// Poll for three visibility timeouts while the first worker holds it.
	deadline := time.Now().Add(9 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := w2.RunOnce(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n, _ := second.count(); n != 0 {
		t.Errorf("a second worker received the job while the first ran it; the visibility was not extended")
	}
	if v, f := depth(t, c, url); v != 0 || f != 0 {
		t.Errorf("queue holds %d visible and %d in-flight messages; want the finished job deleted", v, f)
	}
}

// TestDeadJobs checks both ways a job dies: one failing every time is
// received MaxReceives times, then alarmed with its key and window and
// moved to the dead-letter queue; one failing permanently dies at once.
func TestDeadJobs(t *testing.T) {
	c := awstest.SQS(t)
	url := newQueue(t, c, "heal-jobs")
	dlq := newQueue(t, c, "heal-dead")
	flaky, bad := job("FLAKY", 1), job("BAD", 2)
	if err := dispatch.NewQueue(c, url).Dispatch(context.Background(), []heal.Job{flaky, bad}); err != nil {
		t.Fatal(err)
	}
	al := &healtest.Alarms{}
	r := &record{fn: func(_ context.Context, j heal.Job) error {
		if j.Keys[0] == "BAD" {
			return heal.Permanent(errors.New("403 plan lacks history"))
		}
		return errors.New("503 upstream")
	}}
	w := dispatch.NewWorker(c, url, r, &dispatch.WorkerOptions{
		WaitTime: time.Second, MaxReceives: 3, DeadLetterQueueURL: dlq, Alarmer: al,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})),
	})
	drain(t, w, func() bool { return len(al.List()) == 2 })
	if n := r.runs[flaky.ID()]; n != 3 {
		t.Errorf("the failing job ran %d times; want MaxReceives = 3", n)
	}
	if n := r.runs[bad.ID()]; n != 1 {
		t.Errorf("the permanently failing job ran %d times; want 1", n)
	}
	for _, a := range al.List() {
		want := map[string]heal.Job{"FLAKY": flaky, "BAD": bad}[a.Key]
		if a.Stage != dispatch.StageJob || a.Window != want.Window || a.Dataset != "quotes" || a.LastError == "" {
			t.Errorf("alarm %+v; want stage %s, key and window of the job", a, dispatch.StageJob)
		}
	}
	if v, f := depth(t, c, url); v != 0 || f != 0 {
		t.Errorf("queue holds %d visible and %d in-flight messages; want the dead jobs gone", v, f)
	}
	if v, _ := depth(t, c, dlq); v != 2 {
		t.Errorf("dead-letter queue holds %d messages; want 2", v)
	}
}

// TestHandleSQSEvent decodes a Lambda SQS event: the job that ran is not
// reported, the one that failed is (so it returns to the queue), the one
// received too often is alarmed and not reported, and garbage is refused.
func TestHandleSQSEvent(t *testing.T) {
	ok, fails, old := job("OK", 1), job("FAILS", 2), job("OLD", 3)
	body := func(j heal.Job) string { b, _ := jsonString(j); return b }
	payload := fmt.Sprintf(`{"Records":[
	 {"messageId":"m1","receiptHandle":"r1","body":%q,"attributes":{"ApproximateReceiveCount":"1","SentTimestamp":"1704205800000"},"eventSource":"aws:sqs","eventSourceARN":"arn:aws:sqs:us-east-1:000000000000:jobs","awsRegion":"us-east-1"},
	 {"messageId":"m2","receiptHandle":"r2","body":%q,"attributes":{"ApproximateReceiveCount":"2"},"eventSource":"aws:sqs"},
	 {"messageId":"m3","receiptHandle":"r3","body":%q,"attributes":{"ApproximateReceiveCount":"9"},"eventSource":"aws:sqs"}]}`,
		body(ok), body(fails), body(old))
	al := &healtest.Alarms{}
	r := &record{fn: func(_ context.Context, j heal.Job) error {
		if j.Keys[0] == "FAILS" {
			return errors.New("503")
		}
		return nil
	}}
	resp, err := dispatch.HandleSQSEvent(context.Background(), r, []byte(payload), &dispatch.WorkerOptions{Alarmer: al, Concurrency: 3})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.BatchItemFailures) != 1 || resp.BatchItemFailures[0].ItemIdentifier != "m2" {
		t.Errorf("batch item failures %+v; want only m2", resp.BatchItemFailures)
	}
	if r.runs[ok.ID()] != 1 || r.runs[old.ID()] != 0 {
		t.Errorf("runs %v; want the fresh job run and the old one not", r.runs)
	}
	if a := al.List(); len(a) != 1 || a[0].Key != "OLD" || a[0].Window != old.Window {
		t.Errorf("alarms %+v; want one for OLD with its window", a)
	}
	out, _ := jsonString(resp)
	if out != `{"batchItemFailures":[{"itemIdentifier":"m2"}]}` {
		t.Errorf("response encodes as %s", out)
	}
	if _, err := dispatch.HandleSQSEvent(context.Background(), r, []byte(`[1,2]`), nil); err == nil {
		t.Errorf("HandleSQSEvent accepted a payload that is not an SQS event")
	}
}
