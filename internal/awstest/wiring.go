package awstest

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// UseStandardConfig points the standard AWS configuration
// (config.LoadDefaultConfig) at the external servers, for the rest of t:
// credentials of the S3 server, region us-east-1, AWS_ENDPOINT_URL_<SERVICE>
// for S3, Kinesis and SNS, and no shared files or instance metadata, so code
// that opens clients from URLs, as a production user's would, reaches them.
func UseStandardConfig(t testing.TB) {
	t.Helper()
	for k, v := range map[string]string{
		"AWS_ACCESS_KEY_ID":           os.Getenv(EnvS3AccessKey),
		"AWS_SECRET_ACCESS_KEY":       os.Getenv(EnvS3SecretKey),
		"AWS_REGION":                  Region,
		"AWS_ENDPOINT_URL_S3":         os.Getenv(EnvS3Endpoint),
		"AWS_ENDPOINT_URL_KINESIS":    os.Getenv(EnvKinesisEndpoint),
		"AWS_ENDPOINT_URL_SNS":        os.Getenv(EnvSNSEndpoint),
		"AWS_CONFIG_FILE":             "/dev/null",
		"AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
		"AWS_EC2_METADATA_DISABLED":   "true",
	} {
		t.Setenv(k, v)
	}
}

// Subscribed is an SNS topic with an SQS queue subscribed to it (raw
// delivery): what a test reads to see what was published.
type Subscribed struct {
	TopicARN string
	QueueURL string
	sqs      *sqs.Client
}

// SubscribedTopic creates a topic and a queue named after prefix on the
// fauxqs server and subscribes the queue to the topic.
func SubscribedTopic(t testing.TB, ctx context.Context, prefix string) *Subscribed {
	t.Helper()
	snsc, sqsc := SNS(t), SQS(t)
	topic, err := snsc.CreateTopic(ctx, &sns.CreateTopicInput{Name: aws.String(Name(prefix))})
	if err != nil {
		t.Fatal(err)
	}
	q, err := sqsc.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(Name(prefix))})
	if err != nil {
		t.Fatal(err)
	}
	qa, err := sqsc.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: q.QueueUrl,
		AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameQueueArn}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := snsc.Subscribe(ctx, &sns.SubscribeInput{TopicArn: topic.TopicArn, Protocol: aws.String("sqs"),
		Endpoint: aws.String(qa.Attributes["QueueArn"]), Attributes: map[string]string{"RawMessageDelivery": "true"}}); err != nil {
		t.Fatal(err)
	}
	return &Subscribed{TopicARN: aws.ToString(topic.TopicArn), QueueURL: aws.ToString(q.QueueUrl), sqs: sqsc}
}

// Receive returns the bodies of the messages delivered to the queue, waiting
// up to d for at least want of them.
func (s *Subscribed) Receive(t testing.TB, ctx context.Context, want int, d time.Duration) []string {
	t.Helper()
	var got []string
	for deadline := time.Now().Add(d); len(got) < want && time.Now().Before(deadline); {
		out, err := s.sqs.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(s.QueueURL), MaxNumberOfMessages: 10, WaitTimeSeconds: 1})
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range out.Messages {
			got = append(got, aws.ToString(m.Body))
		}
	}
	return got
}
