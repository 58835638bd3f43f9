package alarm

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/selfheal/heal"
)

// WebhookOptions configures a [Webhook]. A nil *WebhookOptions, or any zero
// field, means the default written beside the field.
type WebhookOptions struct {
	// Client sends the requests. nil: a new http.Client on the default
	// transport.
	Client *http.Client
	// Timeout bounds each attempt. 0: 10s.
	Timeout time.Duration
	// Attempts is how many times one Alarm call tries. 0: 3.
	Attempts int
	// Backoff is the wait after the first failed attempt, doubled after
	// each further one; a Retry-After header from the server wins (up to
	// one minute). 0: 500ms.
	Backoff time.Duration
	// Header holds extra request headers, e.g. Authorization. Their values
	// are never logged or put in errors.
	Header http.Header
}

// WebhookAlarmer POSTs alarms as JSON. Make it with [Webhook].
type WebhookAlarmer struct {
	url      string
	client   *http.Client
	timeout  time.Duration
	attempts int
	backoff  time.Duration
	header   http.Header
}

var _ heal.Alarmer = (*WebhookAlarmer)(nil)

// Webhook returns an alarmer that POSTs the alarm's [Message] as JSON to
// url. The body's "text" field is what Slack's incoming webhooks (and
// Mattermost, Teams' and Discord's Slack-compatible endpoints) display; the
// other fields are there for machines.
//
// An attempt that fails with a network error, a timeout, 429 or 5xx is
// retried, up to Attempts; any other non-2xx answer fails at once. The url
// is treated as a secret (a Slack webhook url is one): errors never hold
// it.
func Webhook(url string, opts *WebhookOptions) *WebhookAlarmer {
	var o WebhookOptions
	if opts != nil {
		o = *opts
	}
	w := &WebhookAlarmer{url: url, client: o.Client, timeout: o.Timeout, attempts: o.Attempts, backoff: o.Backoff, header: o.Header.Clone()}
	if w.client == nil {
		w.client = &http.Client{}
	}
	if w.timeout <= 0 {
		w.timeout = 10 * time.Second
	}
	if w.attempts <= 0 {
		w.attempts = 3
	}
	if w.backoff <= 0 {
		w.backoff = 500 * time.Millisecond
	}
	return w
}

// Alarm POSTs a, retrying as [Webhook] says. It may be called
// concurrently.
func (w *WebhookAlarmer) Alarm(ctx context.Context, a heal.Alarm) error {
	body, err := json.Marshal(NewMessage(a))
	if err != nil {
		return fmt.Errorf("heal/alarm: webhook: %w", err)
	}
	wait := w.backoff
	var last error
	for attempt := 1; ; attempt++ {
		retry, after, err := w.post(ctx, body)
		if err == nil {
			return nil
		}
		last = fmt.Errorf("heal/alarm: webhook: attempt %d of %d: %w", attempt, w.attempts, err)
		if !retry {
			return heal.Permanent(last)
		}
		if attempt >= w.attempts {
			return last
		}
		if after > 0 {
			wait = min(after, time.Minute)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return errors.Join(last, ctx.Err())
		case <-t.C:
		}
		wait *= 2
	}
}

// post makes one attempt. retry says whether another could succeed; after
// is the wait the server asked for.
func (w *WebhookAlarmer) post(ctx context.Context, body []byte) (retry bool, after time.Duration, err error) {
	ctx, cancel := context.WithTimeout(ctx, w.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.url, bytes.NewReader(body))
	if err != nil {
		return false, 0, errors.New("invalid webhook url") // the url is a secret: not repeated
	}
	for k, vs := range w.header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "heal-alarm/1")
	resp, err := w.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // *url.Error repeats the url
		}
		if ctx.Err() != nil && !errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("%w: %w", err, ctx.Err())
		}
		return true, 0, fmt.Errorf("POST: %w", err)
	}
	defer resp.Body.Close()
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20)) // reuse the connection
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return false, 0, nil
	}
	err = fmt.Errorf("POST: %s: %s", resp.Status, oneLine(string(snippet), 200))
	switch {
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500 || resp.StatusCode == http.StatusRequestTimeout:
		if s, perr := strconv.Atoi(resp.Header.Get("Retry-After")); perr == nil && s > 0 {
			after = time.Duration(s) * time.Second
		}
		return true, after, err
	default:
		return false, 0, err
	}
}
