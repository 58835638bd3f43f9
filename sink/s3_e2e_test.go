package sink_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/memory"

	"github.com/selfheal/heal"
	"github.com/selfheal/heal/alarm"
	"github.com/selfheal/heal/healtest"
	"github.com/selfheal/heal/internal/awstest"
	"github.com/selfheal/heal/sink"
)

// e2eMeters is a Source with one reading per meter per minute. Meter m3's
// history cannot be fetched (a plan without history): its gaps are alarmed.
type e2eMeters struct{ ds *heal.Dataset }

func (m e2eMeters) Limits() heal.Limits { return heal.Limits{MaxWindow: 24 * time.Hour} }

func (m e2eMeters) Fetch(ctx context.Context, req heal.Request) (arrow.Record, error) {
	if !req.Live && req.Keys[0] == "m3" {
		return nil, heal.Permanent(errors.New("history is not in this plan"))
	}
	b := array.NewRecordBuilder(memory.DefaultAllocator, m.ds.Schema)
	defer b.Release()
	for _, k := range req.Keys {
		for t := req.Window.Start; t.Before(req.Window.End); t = t.Add(time.Minute) {
			b.Field(0).(*array.StringBuilder).Append(k)
			b.Field(1).(*array.TimestampBuilder).Append(arrow.Timestamp(t.UnixMilli()))
			b.Field(2).(*array.Float64Builder).Append(float64(t.Minute()))
		}
	}
	return b.NewRecord(), nil
}

type e2eClock struct{ t time.Time }

func (c *e2eClock) Now() time.Time                         { return c.t }
func (c *e2eClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// TestAWSEndToEnd runs heal the way a production user configures it, the
// AWS way (standard config chain, endpoints from AWS_ENDPOINT_URL_*, opened
// from URLs as command-line flags give them): an engine over an S3 lake on
// versitygw that alarms through SNS (fauxqs), and raw rows travelling a
// Kinesis stream (kinesalite) into the same lake. The lake is then read
// back from S3 by a fresh store, as another process would.
func TestAWSEndToEnd(t *testing.T) {
	_, bucket := awstest.ExternalS3(t)
	kc := awstest.Kinesis(t)
	stream := kinStream(t, kc, 2)
	ctx := s3Ctx(t)
	alarms := awstest.SubscribedTopic(t, ctx, "heal-e2e")
	awstest.UseStandardConfig(t)
	lakeURL := "s3://" + bucket + "/lake?use_path_style=true"
	store, err := sink.OpenS3(ctx, lakeURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	alarmer, err := alarm.Open(ctx, "sns://"+alarms.TopicARN)
	if err != nil {
		t.Fatal(err)
	}
	kin, streamName, err := sink.OpenKinesis(ctx, "kinesis://"+stream)
	if err != nil {
		t.Fatal(err)
	}

	ds := healtest.QuotesDataset()
	ds.Name = "readings"
	lake := sink.NewLake(store, nil)
	hour := heal.NewWindow(time.Date(2024, 5, 6, 14, 0, 0, 0, time.UTC), time.Date(2024, 5, 6, 15, 0, 0, 0, time.UTC))
	eng, err := heal.New(ds, e2eMeters{ds}, lake, &heal.Options{
		Keys: []string{"m1", "m2", "m3"}, Alarmer: alarmer, Clock: &e2eClock{hour.End.Add(5 * time.Minute)},
	})
	if err != nil {
		t.Fatal(err)
	}
	// Live polls land every third minute only.
	for ts := hour.Start; ts.Before(hour.End); ts = ts.Add(3 * time.Minute) {
		if _, err := eng.Acquire(ctx, ts); err != nil {
			t.Fatal(err)
		}
	}
	rep, err := eng.Heal(ctx, hour)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("heal report: %+v", *rep)
	if rep.Repaired != 80 || rep.Alarms != 1 {
		t.Fatalf("repaired %d slots with %d alarms, want 80 (m1, m2) and 1 (m3)", rep.Repaired, rep.Alarms)
	}

	// Meter m4's rows travel the stream into the same lake.
	m4 := kinRows([]string{"m4"}, 60, 0)
	for i := range m4 {
		m4[i].Time = hour.Start.Add(time.Duration(i) * time.Minute)
	}
	rec := healtest.Records(memory.DefaultAllocator, ds, m4...)
	defer rec.Release()
	if err := sink.NewKinesisSink(kin, streamName, nil).Write(ctx, ds, rec); err != nil {
		t.Fatal(err)
	}
	c, err := sink.NewKinesisConsumer(kin, streamName, ds, lake, fastConsumer(sink.KinesisConsumerOptions{}))
	if err != nil {
		t.Fatal(err)
	}
	stop := runConsumer(c)
	waitFor(t, 30*time.Second, "m4's rows", func() bool { return c.Stats().Rows >= 60 })
	_ = stop()

	// Read back from S3 by a fresh store, as another process would.
	fresh, err := sink.OpenS3(ctx, lakeURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	rows, _, err := healtest.ScanRows(ctx, sink.NewLake(fresh, nil), ds, heal.Query{Window: hour})
	if err != nil {
		t.Fatal(err)
	}
	per := map[string]int{}
	for _, r := range rows {
		per[r.Key]++
	}
	if per["m1"] != 60 || per["m2"] != 60 || per["m3"] != 20 || per["m4"] != 60 {
		t.Fatalf("rows per meter read back from S3: %v; want m1 60, m2 60, m3 20 (alarmed), m4 60 (stream)", per)
	}

	// The alarm arrived through SNS.
	var got []alarm.Message
	for _, body := range alarms.Receive(t, ctx, 1, 20*time.Second) {
		var msg alarm.Message
		if err := json.Unmarshal([]byte(body), &msg); err != nil {
			t.Fatalf("alarm body: %v: %s", err, body)
		}
		got = append(got, msg)
	}
	if len(got) != 1 || got[0].Dataset != "readings" || got[0].Key != "m3" || got[0].Stage != string(heal.StageRepair) || got[0].Resolved || got[0].LastError == "" {
		t.Fatalf("alarms received: %+v", got)
	}
	t.Logf("alarm: %s", got[0].Text)
}
