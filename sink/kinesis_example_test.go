package sink_test

import (
	"context"
	"log"
	"time"

	"github.com/selfheal/heal"
	"github.com/selfheal/heal/sink"
)

// Live ticks through a Kinesis stream into an S3 lake, as the original
// pipeline ran with Firehose: the engine's live path puts each tick on the
// stream (Options.LiveSink), a consumer lands the stream in the lake in
// batches, and the engine audits only slots older than the consumer's
// flush interval (Settle). Clients come from the standard AWS
// configuration. Not run here: it needs a stream and a bucket.
func Example_kinesisToS3() {
	ctx := context.Background()
	var (
		ds   *heal.Dataset // the raw dataset, e.g. finnhub.Quotes()
		src  heal.Source   // its source
		keys []string      // its keys
	)
	store, err := sink.OpenS3(ctx, "s3://my-bucket/lake", nil)
	if err != nil {
		log.Fatal(err)
	}
	lake := sink.NewLake(store, nil)
	kc, stream, err := sink.OpenKinesis(ctx, "kinesis://quotes")
	if err != nil {
		log.Fatal(err)
	}
	consumer, err := sink.NewKinesisConsumer(kc, stream, ds, lake, &sink.KinesisConsumerOptions{FlushInterval: 30 * time.Second})
	if err != nil {
		log.Fatal(err)
	}
	go consumer.Run(ctx) // checkpoints in the lake: a restart resumes
	eng, err := heal.New(ds, src, lake, &heal.Options{
		Keys:     keys,
		LiveSink: sink.NewKinesisSink(kc, stream, nil),
		Settle:   2 * time.Minute, // above the consumer's flush interval
	})
	if err != nil {
		log.Fatal(err)
	}
	log.Fatal(eng.Run(ctx))
}
