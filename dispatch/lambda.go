package dispatch

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
)

// SQSEvent is the event an SQS-triggered AWS Lambda function receives,
// with the fields heal reads. It decodes the JSON Lambda sends, so no
// Lambda library is needed.
type SQSEvent struct {
	Records []SQSMessage `json:"Records"`
}

// SQSMessage is one record of an [SQSEvent].
type SQSMessage struct {
	MessageID      string            `json:"messageId"`
	ReceiptHandle  string            `json:"receiptHandle"`
	Body           string            `json:"body"`
	Attributes     map[string]string `json:"attributes"` // ApproximateReceiveCount among them
	EventSource    string            `json:"eventSource"`
	EventSourceARN string            `json:"eventSourceARN"`
}

// SQSEventResponse is the partial batch response of an SQS-triggered
// Lambda (the event source mapping's ReportBatchItemFailures): the
// messages listed return to the queue, the others are deleted.
type SQSEventResponse struct {
	BatchItemFailures []BatchItemFailure `json:"batchItemFailures"`
}

// BatchItemFailure names a message that failed, by its message ID.
type BatchItemFailure struct {
	ItemIdentifier string `json:"itemIdentifier"`
}

// HandleSQSEvent runs the jobs of an SQS-triggered Lambda's event, payload
// being the event's JSON, and returns the response to give back to Lambda.
// Jobs run concurrently, up to opts.Concurrency. A job that failed and
// may succeed later is listed as a batch item failure, to be received
// again; a dead one (see [Worker]) is alarmed and not listed, so Lambda
// deletes it (opts.DeadLetterQueueURL is not used here: configure the
// queue's RedrivePolicy for a dead-letter queue). VisibilityTimeout and
// WaitTime are not used either: set the queue's visibility timeout above
// the function's timeout, as AWS requires.
//
// It returns an error only when payload is not an SQS event, in which case
// Lambda retries the whole batch.
func HandleSQSEvent(ctx context.Context, r Runner, payload []byte, opts *WorkerOptions) (SQSEventResponse, error) {
	var ev SQSEvent
	if err := json.Unmarshal(payload, &ev); err != nil {
		return SQSEventResponse{}, fmt.Errorf("heal/dispatch: decode the SQS event: %w", err)
	}
	o := opts.withDefaults()
	resp := SQSEventResponse{BatchItemFailures: []BatchItemFailure{}}
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, o.Concurrency)
	for _, m := range ev.Records {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			receives, _ := strconv.Atoi(m.Attributes["ApproximateReceiveCount"])
			if handle(ctx, r, &o, m.Body, receives) == outcomeRetry {
				mu.Lock()
				resp.BatchItemFailures = append(resp.BatchItemFailures, BatchItemFailure{ItemIdentifier: m.MessageID})
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return resp, nil
}
