package dispatch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/selfheal/heal"
)

// SQS limits a SendMessageBatch request.
const (
	maxBatch      = 10
	maxBatchBytes = 256 << 10
)

// AttrJobID is the message attribute holding the job's [heal.Job.ID], so a
// queue's messages can be told apart without decoding their bodies.
const AttrJobID = "heal-job-id"

// Queue is a [heal.Dispatcher] sending jobs to an SQS queue, one message
// per job whose body is the job's JSON. Make it with [NewQueue].
type Queue struct {
	client *sqs.Client
	url    string
}

// NewQueue returns a dispatcher sending to the queue at queueURL with
// client, the caller's (config.LoadDefaultConfig and sqs.NewFromConfig).
func NewQueue(client *sqs.Client, queueURL string) *Queue {
	return &Queue{client: client, url: queueURL}
}

// Dispatch sends jobs with SendMessageBatch, ten (and at most 256 KiB) a
// request, and sends again the entries SQS reports as failed, a few times
// with backoff. It returns nil once every job is queued. It may be called
// concurrently.
func (q *Queue) Dispatch(ctx context.Context, jobs []heal.Job) error {
	entries := make([]types.SendMessageBatchRequestEntry, len(jobs))
	for i, j := range jobs {
		b, err := json.Marshal(j)
		if err != nil {
			return fmt.Errorf("heal/dispatch: encode job %d: %w", i, err)
		}
		if len(b) > maxBatchBytes {
			return heal.Permanent(fmt.Errorf("heal/dispatch: job %s is %d bytes, over the SQS message limit", j.ID(), len(b)))
		}
		entries[i] = types.SendMessageBatchRequestEntry{
			Id:          aws.String(strconv.Itoa(i)),
			MessageBody: aws.String(string(b)),
			MessageAttributes: map[string]types.MessageAttributeValue{
				AttrJobID: {DataType: aws.String("String"), StringValue: aws.String(j.ID())},
			},
		}
	}
	for start := 0; start < len(entries); {
		end, size := start, 0
		for end < len(entries) && end-start < maxBatch {
			n := len(aws.ToString(entries[end].MessageBody)) + 64
			if size+n > maxBatchBytes && end > start {
				break
			}
			size += n
			end++
		}
		if err := q.send(ctx, entries[start:end]); err != nil {
			return fmt.Errorf("heal/dispatch: send jobs %d to %d of %d to %s: %w", start, end-1, len(entries), q.url, err)
		}
		start = end
	}
	return nil
}

// send sends one batch, then only its failed entries again.
func (q *Queue) send(ctx context.Context, pending []types.SendMessageBatchRequestEntry) error {
	wait := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		out, err := q.client.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: aws.String(q.url), Entries: pending})
		if err != nil {
			return err
		}
		if len(out.Failed) == 0 {
			return nil
		}
		byID := make(map[string]types.SendMessageBatchRequestEntry, len(pending))
		for _, e := range pending {
			byID[aws.ToString(e.Id)] = e
		}
		var again []types.SendMessageBatchRequestEntry
		var errs []error
		for _, f := range out.Failed {
			errs = append(errs, fmt.Errorf("entry %s: %s: %s", aws.ToString(f.Id), aws.ToString(f.Code), aws.ToString(f.Message)))
			if e, ok := byID[aws.ToString(f.Id)]; ok && !f.SenderFault {
				again = append(again, e)
			}
		}
		if len(again) < len(out.Failed) || attempt >= 5 {
			return fmt.Errorf("%d of %d messages refused: %w", len(out.Failed), len(pending), errors.Join(errs...))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		wait *= 2
		pending = again
	}
}
