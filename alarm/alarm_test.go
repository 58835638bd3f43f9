package alarm_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/selfheal/heal"
	"github.com/selfheal/heal/alarm"
	"github.com/selfheal/heal/internal/awstest"
)

var day = heal.NewWindow(time.Date(2024, 1, 2, 14, 0, 0, 0, time.UTC), time.Date(2024, 1, 2, 15, 0, 0, 0, time.UTC))

func sample() heal.Alarm {
	return heal.Alarm{
		Dataset: "quotes", Key: "AAPL", Window: day, Stage: heal.StageRepair,
		Attempts: 5, LastError: "finnhub: 502 Bad Gateway\n(upstream)", At: time.Date(2024, 1, 2, 16, 0, 0, 0, time.UTC),
	}
}

func TestText(t *testing.T) {
	a := sample()
	want := "heal ALARM: quotes AAPL repair failed for 2024-01-02T14:00:00Z/2024-01-02T15:00:00Z after 5 attempts: finnhub: 502 Bad Gateway (upstream)"
	if got := alarm.Text(a); got != want {
		t.Errorf("Text = %q\nwant   %q", got, want)
	}
	a.Resolved = true
	if got := alarm.Text(a); got != "heal RESOLVED: quotes AAPL repair healed for 2024-01-02T14:00:00Z/2024-01-02T15:00:00Z" {
		t.Errorf("Text resolved = %q", got)
	}
	long := sample()
	long.LastError = strings.Repeat("é", 400)
	if got := alarm.Text(long); !strings.HasSuffix(got, "...") || len(got) > 450 || !json.Valid([]byte(`"`+got+`"`)) {
		t.Errorf("long error not cut cleanly: %d bytes", len(got))
	}
}

func TestSubject(t *testing.T) {
	a := sample()
	if got := alarm.Subject(a); got != "heal ALARM quotes AAPL repair" {
		t.Errorf("Subject = %q", got)
	}
	a.Key = "日本\n" + strings.Repeat("X", 200)
	got := alarm.Subject(a)
	if len(got) > 100 {
		t.Errorf("Subject is %d bytes", len(got))
	}
	for _, r := range got {
		if r < 0x20 || r > 0x7e {
			t.Errorf("Subject holds %q", r)
		}
	}
}

func TestNewMessageJSON(t *testing.T) {
	b, err := json.Marshal(alarm.NewMessage(sample()))
	if err != nil {
		t.Fatal(err)
	}
	want := `{"text":"heal ALARM: quotes AAPL repair failed for 2024-01-02T14:00:00Z/2024-01-02T15:00:00Z after 5 attempts: finnhub: 502 Bad Gateway (upstream)","dataset":"quotes","key":"AAPL","window":{"start":"2024-01-02T14:00:00Z","end":"2024-01-02T15:00:00Z"},"stage":"repair","attempts":5,"last_error":"finnhub: 502 Bad Gateway\n(upstream)","resolved":false,"at":"2024-01-02T16:00:00Z"}`
	if string(b) != want {
		t.Errorf("JSON =\n%s\nwant\n%s", b, want)
	}
}

type hook struct {
	mu     sync.Mutex
	bodies []alarm.Message
	header []http.Header
	calls  atomic.Int32
	// answer returns the status for call n (1-based) and sets headers.
	answer func(n int, w http.ResponseWriter) int
}

func (h *hook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n := int(h.calls.Add(1))
	b, _ := io.ReadAll(r.Body)
	var m alarm.Message
	if err := json.Unmarshal(b, &m); err != nil || r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
		http.Error(w, "bad request", 400)
		return
	}
	h.mu.Lock()
	h.bodies = append(h.bodies, m)
	h.header = append(h.header, r.Header.Clone())
	h.mu.Unlock()
	st := 200
	if h.answer != nil {
		st = h.answer(n, w)
	}
	w.WriteHeader(st)
	_, _ = w.Write([]byte("ok"))
}

func TestWebhook(t *testing.T) {
	ctx := context.Background()
	t.Run("delivers", func(t *testing.T) {
		h := &hook{}
		ts := httptest.NewServer(h)
		defer ts.Close()
		w := alarm.Webhook(ts.URL+"/services/T000/B000/XXXX", &alarm.WebhookOptions{Header: http.Header{"Authorization": {"Bearer tok"}}})
		if err := w.Alarm(ctx, sample()); err != nil {
			t.Fatal(err)
		}
		if h.calls.Load() != 1 || h.bodies[0].Text != alarm.Text(sample()) || h.bodies[0].Attempts != 5 || h.bodies[0].Key != "AAPL" {
			t.Fatalf("received %+v", h.bodies)
		}
		if h.header[0].Get("Authorization") != "Bearer tok" {
			t.Fatal("extra header not sent")
		}
	})
	t.Run("retries 5xx and honours Retry-After", func(t *testing.T) {
		h := &hook{answer: func(n int, w http.ResponseWriter) int {
			switch n {
			case 1:
				return 503
			case 2:
				w.Header().Set("Retry-After", "1")
				return 429
			}
			return 200
		}}
		ts := httptest.NewServer(h)
		defer ts.Close()
		start := time.Now()
		if err := alarm.Webhook(ts.URL, &alarm.WebhookOptions{Backoff: time.Millisecond}).Alarm(ctx, sample()); err != nil {
			t.Fatal(err)
		}
		if h.calls.Load() != 3 {
			t.Fatalf("%d calls, want 3", h.calls.Load())
		}
		if el := time.Since(start); el < time.Second {
			t.Fatalf("Retry-After: 1 not honoured (%s)", el)
		}
	})
	t.Run("gives up after Attempts", func(t *testing.T) {
		h := &hook{answer: func(int, http.ResponseWriter) int { return 500 }}
		ts := httptest.NewServer(h)
		defer ts.Close()
		err := alarm.Webhook(ts.URL, &alarm.WebhookOptions{Attempts: 2, Backoff: time.Millisecond}).Alarm(ctx, sample())
		if err == nil || heal.IsPermanent(err) || h.calls.Load() != 2 || !strings.Contains(err.Error(), "500") {
			t.Fatalf("err = %v after %d calls", err, h.calls.Load())
		}
	})
	t.Run("4xx is permanent", func(t *testing.T) {
		h := &hook{answer: func(int, http.ResponseWriter) int { return 404 }}
		ts := httptest.NewServer(h)
		defer ts.Close()
		err := alarm.Webhook(ts.URL+"/secret-path", &alarm.WebhookOptions{Backoff: time.Millisecond}).Alarm(ctx, sample())
		if !heal.IsPermanent(err) || h.calls.Load() != 1 {
			t.Fatalf("err = %v after %d calls", err, h.calls.Load())
		}
		if strings.Contains(err.Error(), "secret-path") || strings.Contains(err.Error(), "127.0.0.1") {
			t.Fatalf("the error repeats the url: %v", err)
		}
	})
	t.Run("timeout is retried and the url stays out of errors", func(t *testing.T) {
		release := make(chan struct{})
		var calls atomic.Int32
		ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			calls.Add(1)
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}))
		defer ts.Close()
		defer close(release)
		err := alarm.Webhook(ts.URL+"/hooks/secret-token", &alarm.WebhookOptions{Timeout: 50 * time.Millisecond, Attempts: 2, Backoff: time.Millisecond}).Alarm(ctx, sample())
		if err == nil || calls.Load() != 2 || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v after %d calls", err, calls.Load())
		}
		if strings.Contains(err.Error(), "secret-token") {
			t.Fatalf("the error repeats the url: %v", err)
		}
	})
	t.Run("ctx ends the waits", func(t *testing.T) {
		h := &hook{answer: func(int, http.ResponseWriter) int { return 500 }}
		ts := httptest.NewServer(h)
		defer ts.Close()
		cctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		defer cancel()
		start := time.Now()
		err := alarm.Webhook(ts.URL, &alarm.WebhookOptions{Attempts: 10, Backoff: time.Hour}).Alarm(cctx, sample())
		if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 5*time.Second {
			t.Fatalf("err = %v after %s", err, time.Since(start))
		}
	})
}

func TestMulti(t *testing.T) {
	var got []string
	var mu sync.Mutex
	rec := func(name string, err error) heal.Alarmer {
		return heal.AlarmerFunc(func(ctx context.Context, a heal.Alarm) error {
			mu.Lock()
			got = append(got, name)
			mu.Unlock()
			return err
		})
	}
	boom := errors.New("boom")
	m := alarm.Multi(rec("a", nil), nil, rec("b", boom), rec("c", nil))
	err := m.Alarm(context.Background(), sample())
	if !errors.Is(err, boom) || len(got) != 3 {
		t.Fatalf("err = %v, called %v", err, got)
	}
	if err := alarm.Multi().Alarm(context.Background(), sample()); err != nil {
		t.Fatal(err)
	}
}

// TestSNS publishes alarms to a topic on fauxqs and reads them back from an
// SQS queue subscribed to it.
func TestSNS(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	snsc := awstest.SNS(t)
	sqsc := awstest.SQS(t)
	topic, err := snsc.CreateTopic(ctx, &sns.CreateTopicInput{Name: aws.String(awstest.Name("heal-alarms"))})
	if err != nil {
		t.Fatal(err)
	}
	q, err := sqsc.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(awstest.Name("heal-alarms"))})
	if err != nil {
		t.Fatal(err)
	}
	attrs, err := sqsc.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: q.QueueUrl, AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameQueueArn}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := snsc.Subscribe(ctx, &sns.SubscribeInput{TopicArn: topic.TopicArn, Protocol: aws.String("sqs"), Endpoint: aws.String(attrs.Attributes["QueueArn"])}); err != nil {
		t.Fatal(err)
	}

	al := alarm.SNS(snsc, aws.ToString(topic.TopicArn))
	resolved := sample()
	resolved.Resolved = true
	for _, a := range []heal.Alarm{sample(), resolved} {
		if err := al.Alarm(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	var envs []snsEnvelope
	for len(envs) < 2 && ctx.Err() == nil {
		out, err := sqsc.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: q.QueueUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: 1})
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range out.Messages {
			var env snsEnvelope
			if err := json.Unmarshal([]byte(aws.ToString(m.Body)), &env); err != nil {
				t.Fatalf("not an SNS envelope: %v: %s", err, aws.ToString(m.Body))
			}
			envs = append(envs, env)
		}
	}
	if len(envs) != 2 {
		t.Fatalf("received %d alarms, want 2", len(envs))
	}
	subjects := map[string]alarm.Message{}
	for _, env := range envs {
		var m alarm.Message
		if err := json.Unmarshal([]byte(env.Message), &m); err != nil {
			t.Fatalf("body is not a Message: %v: %s", err, env.Message)
		}
		if env.TopicArn != aws.ToString(topic.TopicArn) {
			t.Errorf("TopicArn = %q", env.TopicArn)
		}
		if env.MessageAttributes["dataset"].Value != "quotes" || env.MessageAttributes["resolved"].Value != boolString(m.Resolved) {
			t.Errorf("message attributes = %+v", env.MessageAttributes)
		}
		subjects[env.Subject] = m
	}
	m, ok := subjects["heal ALARM quotes AAPL repair"]
	if !ok || m.Dataset != "quotes" || m.Key != "AAPL" || m.Stage != "repair" || m.Attempts != 5 ||
		m.LastError != sample().LastError || m.Resolved || !m.Window.Start.Equal(day.Start) || !m.Window.End.Equal(day.End) {
		t.Errorf("alarm received = %+v (subjects %v)", m, keys(subjects))
	}
	if m, ok := subjects["heal RESOLVED quotes AAPL repair"]; !ok || !m.Resolved {
		t.Errorf("resolved notice received = %+v (subjects %v)", m, keys(subjects))
	}
}

type snsEnvelope struct {
	Type              string
	TopicArn          string
	Subject           string
	Message           string
	MessageAttributes map[string]struct{ Type, Value string }
}

func boolString(b bool) string {
	if b {
		return "true"
	}
	return "false"
}

func keys[V any](m map[string]V) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}

func TestOpen(t *testing.T) {
	ctx := context.Background()
	t.Setenv("AWS_REGION", "us-east-1")
	t.Setenv("AWS_CONFIG_FILE", "/dev/null")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
	for _, tc := range []struct {
		url  string
		want string // type name; "" for an error
	}{
		{"sns://arn:aws:sns:eu-west-1:123456789012:alarms", "*alarm.SNSAlarmer"},
		{"https://hooks.slack.com/services/T0/B0/secret", "*alarm.WebhookAlarmer"},
		{"sns://arn:aws:sns:eu-west-1:123456789012:alarms, https://example.com/hook", "alarm.multi"},
		{"sns://alarms", ""},
		{"smtp://ops@example.com", ""},
		{"https://example.com/a,ftp://secret-host/x", ""},
	} {
		a, err := alarm.Open(ctx, tc.url)
		if tc.want == "" {
			if err == nil {
				t.Errorf("Open(%q) succeeded", tc.url)
			} else if strings.Contains(err.Error(), "secret") {
				t.Errorf("Open(%q): the error repeats the url: %v", tc.url, err)
			}
			continue
		}
		if err != nil || fmt.Sprintf("%T", a) != tc.want {
			t.Errorf("Open(%q) = %T, %v; want %s", tc.url, a, err, tc.want)
		}
	}
}
