package dispatch_test

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/selfheal/heal"
	"github.com/selfheal/heal/dispatch"
)

// An SQS-triggered Lambda function hands its event's JSON to
// HandleSQSEvent, with the worker's engine as the Runner (a RunnerFunc
// stands in for it here), and returns the response, which lists the jobs
// to receive again. With github.com/aws/aws-lambda-go:
//
//	lambda.Start(func(ctx context.Context, payload json.RawMessage) (dispatch.SQSEventResponse, error) {
//		return dispatch.HandleSQSEvent(ctx, eng, payload, nil)
//	})
func ExampleHandleSQSEvent() {
	slot := time.Date(2024, 1, 2, 14, 30, 0, 0, time.UTC)
	job := func(key string) string {
		b, _ := json.Marshal(heal.Job{
			Version: heal.JobVersion, Kind: heal.JobRepair, Dataset: "quotes", Keys: []string{key},
			Window: heal.Window{Start: slot, End: slot.Add(time.Minute)},
		})
		return string(b)
	}
	event, _ := json.Marshal(dispatch.SQSEvent{Records: []dispatch.SQSMessage{
		{MessageID: "m-1", Body: job("AAPL"), Attributes: map[string]string{"ApproximateReceiveCount": "1"}},
		{MessageID: "m-2", Body: job("MSFT"), Attributes: map[string]string{"ApproximateReceiveCount": "1"}},
	}})
	run := dispatch.RunnerFunc(func(_ context.Context, j heal.Job) error {
		if j.Keys[0] == "MSFT" {
			return fmt.Errorf("503 from the source")
		}
		return nil
	})
	resp, err := dispatch.HandleSQSEvent(context.Background(), run, event, nil)
	if err != nil {
		panic(err)
	}
	out, _ := json.Marshal(resp)
	fmt.Println(string(out))
	// Output: {"batchItemFailures":[{"itemIdentifier":"m-2"}]}
}
