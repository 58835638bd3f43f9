package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"

	"github.com/selfheal/heal"
	"github.com/selfheal/heal/alarm"
	"github.com/selfheal/heal/examples/finnhub/finnhub"
	"github.com/selfheal/heal/internal/awstest"
	"github.com/selfheal/heal/sink"
)

// TestAWSPipeline runs the example the way the original pipeline ran, on
// the local AWS servers the test command starts: the lake on S3
// (versitygw), live quotes through a Kinesis stream (kinesalite) that the
// example's consumer lands in the lake, alarms to an SNS topic (fauxqs)
// subscribed by an SQS queue. One symbol's history is refused (403), so its
// gaps alarm. The lake is then read back from S3 by a fresh store, as
// Athena or another process would, and checked against the fake market's
// truth.
func TestAWSPipeline(t *testing.T) {
	if testing.Short() {
		t.Skip("simulates a morning on the local AWS servers")
	}
	_, bucket := awstest.ExternalS3(t)
	kc := awstest.Kinesis(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	streamName := awstest.Name("finnhub-quotes")
	if _, err := kc.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: aws.String(streamName), ShardCount: aws.Int32(1)}); err != nil {
		t.Fatal(err)
	}
	if err := kinesis.NewStreamExistsWaiter(kc, func(o *kinesis.StreamExistsWaiterOptions) { o.MinDelay = 50 * time.Millisecond }).
		Wait(ctx, &kinesis.DescribeStreamInput{StreamName: aws.String(streamName)}, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = kc.DeleteStream(context.Background(), &kinesis.DeleteStreamInput{StreamName: aws.String(streamName)})
	})
	alarms := awstest.SubscribedTopic(t, ctx, "finnhub-alarms")
	awstest.UseStandardConfig(t)
	lakeURL := "s3://" + bucket + "/finnhub?use_path_style=true"

	// A missing bucket or stream stops the run before it polls, named.
	if _, _, err := openLake(ctx, "s3://"+bucket+"-missing/x?use_path_style=true"); err == nil || !strings.Contains(err.Error(), bucket+"-missing") {
		t.Fatalf("openLake on a missing bucket: %v", err)
	}
	if _, err := openStream(ctx, "kinesis://"+streamName+"-missing", finnhub.Quotes(), nil, true, 1, nil); err == nil || !strings.Contains(err.Error(), "-stream "+streamName+"-missing") {
		t.Fatalf("openStream on a missing stream: %v", err)
	}
	r := simulateForTest(t, nil, "-day", "2025-03-04", "-until", "11:00", "-speed", "3000", "-seed", "3",
		"-lake", lakeURL, "-stream", "kinesis://"+streamName, "-alarm", "sns://"+alarms.TopicARN, "-no-history", "TSLA")
	d := r.Days[0]
	keys := r.cfg.Symbols
	session := heal.NewWindow(d.Open, d.Close)

	// Every live row travelled the stream, and the consumer landed them all.
	calls, polled := d.Rec.polled()
	if sent := r.stream.sink.rows.Load(); sent != int64(polled) || calls == 0 {
		t.Fatalf("the stream carried %d rows; the live path polled %d rows in %d calls", sent, polled, calls)
	}
	if st := r.stream.consumer.Stats(); st.Rows < int64(polled) || st.Flushes == 0 || st.Flushes > st.Rows/2 {
		t.Fatalf("consumer: %+v; want all %d rows landed in batches, not a file per row", st, polled)
	}

	// Read back from S3 by a fresh store: each symbol holds exactly the
	// minutes polled live plus, except TSLA (no history), the minutes the
	// market traded in; no copies.
	store, err := sink.OpenS3(ctx, lakeURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	fresh := sink.NewLake(store, nil)
	held := map[string]map[time.Time]bool{}
	if err := fresh.Inventory(ctx, r.Quotes, heal.Query{Keys: keys, Window: session}, func(p heal.PartitionInfo) error {
		if p.Duplicates() != 0 {
			t.Errorf("%s: %d duplicate rows in S3", p.Partition.Key, p.Duplicates())
		}
		if held[p.Partition.Key] == nil {
			held[p.Partition.Key] = map[time.Time]bool{}
		}
		for s := range p.Present.All() {
			held[p.Partition.Key][s] = true
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	holes := 0
	for _, k := range keys {
		for m := d.Open; m.Before(d.Close); m = m.Add(time.Minute) {
			_, traded := d.Server.Market.Bar(k, m)
			live := d.Rec.Live(k, m)
			want := live || (traded && k != "TSLA")
			if held[k][m] != want {
				t.Errorf("%s %s: in S3 %v, want %v (live %v, traded %v)", k, m.In(r.Rule.Location).Format("15:04"), held[k][m], want, live, traded)
			}
			if k == "TSLA" && !live && traded {
				holes++
			}
		}
	}
	if holes == 0 {
		t.Fatal("the glitch left TSLA no hole to alarm on; pick another seed")
	}
	// The hourly bars were derived from the landed rows (09:30 and 10:00).
	bars := 0
	if err := fresh.Inventory(ctx, r.Bars.Output(), heal.Query{Keys: keys}, func(p heal.PartitionInfo) error {
		bars += p.Present.Count()
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if bars != 2*len(keys) {
		t.Fatalf("%d hourly bars in S3, want %d", bars, 2*len(keys))
	}

	// TSLA's alarms arrived through SNS, one message per alarm raised.
	var raised []heal.Alarm
	for _, a := range r.alarms.list() {
		if !a.Resolved {
			raised = append(raised, a)
		}
	}
	if len(raised) == 0 {
		t.Fatal("no alarm raised")
	}
	var got []alarm.Message
	for _, body := range alarms.Receive(t, ctx, len(raised), 20*time.Second) {
		var msg alarm.Message
		if err := json.Unmarshal([]byte(body), &msg); err != nil {
			t.Fatalf("alarm body: %v: %s", err, body)
		}
		got = append(got, msg)
	}
	if len(got) != len(raised) {
		t.Fatalf("%d alarms through SNS, %d raised", len(got), len(raised))
	}
	for _, m := range got {
		if m.Key != "TSLA" || m.Dataset != "quotes" || m.Stage != string(heal.StageRepair) || m.LastError == "" {
			t.Errorf("alarm: %+v; want TSLA's repair", m)
		}
	}
	t.Logf("%d live rows through the stream, %d TSLA minutes unrepairable, %d alarms through SNS: %s", polled, holes, len(got), got[0].Text)
}
