package alarm

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/aws/aws-sdk-go-v2/service/sns/types"

	"github.com/selfheal/heal"
)

// SNSAlarmer publishes alarms to an SNS topic. Make it with [SNS].
type SNSAlarmer struct {
	client *sns.Client
	topic  string
}

var _ heal.Alarmer = (*SNSAlarmer)(nil)

// SNS returns an alarmer publishing to the topic topicARN with client (the
// caller's: build it with config.LoadDefaultConfig and sns.NewFromConfig).
//
// Each alarm is one Publish: the [Subject] as subject, the [Message] as a
// JSON body, and the message attributes "dataset", "stage" and "resolved"
// (strings), so subscriptions can filter, e.g. {"resolved": ["false"]}.
// For a FIFO topic (an ARN ending in ".fifo") the message group is the
// dataset and key, and the deduplication id is derived from the alarm, so a
// retried publish of the same alarm is delivered once.
func SNS(client *sns.Client, topicARN string) *SNSAlarmer {
	return &SNSAlarmer{client: client, topic: topicARN}
}

// Alarm publishes a. It may be called concurrently.
func (s *SNSAlarmer) Alarm(ctx context.Context, a heal.Alarm) error {
	msg := NewMessage(a)
	body, err := json.Marshal(msg)
	if err != nil {
		return fmt.Errorf("heal/alarm: sns: %w", err)
	}
	in := &sns.PublishInput{
		TopicArn: aws.String(s.topic),
		Subject:  aws.String(Subject(a)),
		Message:  aws.String(string(body)),
		MessageAttributes: map[string]types.MessageAttributeValue{
			"dataset":  {DataType: aws.String("String"), StringValue: aws.String(orDash(a.Dataset))},
			"stage":    {DataType: aws.String("String"), StringValue: aws.String(orDash(string(a.Stage)))},
			"resolved": {DataType: aws.String("String"), StringValue: aws.String(strconv.FormatBool(a.Resolved))},
		},
	}
	if strings.HasSuffix(s.topic, ".fifo") {
		in.MessageGroupId = aws.String(asciiLine(a.Dataset+"/"+a.Key, 128))
		h := sha256.Sum256([]byte(strings.Join([]string{a.Dataset, a.Key, a.Window.String(), string(a.Stage), strconv.FormatBool(a.Resolved), msg.At.String()}, "\x00")))
		in.MessageDeduplicationId = aws.String(hex.EncodeToString(h[:]))
	}
	if _, err := s.client.Publish(ctx, in); err != nil {
		return fmt.Errorf("heal/alarm: sns publish to %s: %w", s.topic, err)
	}
	return nil
}

// SNS attribute values may not be empty.
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
