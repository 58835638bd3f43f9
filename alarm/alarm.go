// Package alarm holds [heal.Alarmer] implementations that tell people: an
// SNS topic ([SNS]), any webhook that takes a JSON POST, Slack's included
// ([Webhook]), and several at once ([Multi]).
//
// Every alarmer sends the same [Message]: a one-line, human-readable Text
// (what Slack shows) and the alarm's fields for machines.
//
// The engine calls Alarm once per episode and, when Alarm fails, logs the
// error and tries again on its next cycle. So an alarmer does not need to
// try forever; the webhook retries a few times within one call to ride out a
// blip, the SNS client retries as the AWS SDK does.
package alarm

import (
	"fmt"
	"strings"
	"time"

	"github.com/selfheal/heal"
)

// Message is the JSON body every alarmer sends.
type Message struct {
	// Text is one line for people, e.g. "heal ALARM: quotes AAPL repair
	// failed for 2024-01-02T14:00:00Z/2024-01-02T15:00:00Z after 5
	// attempts: 502 Bad Gateway". Slack and most chat webhooks show it.
	Text      string     `json:"text"`
	Dataset   string     `json:"dataset"`
	Key       string     `json:"key,omitempty"`
	Window    WindowJSON `json:"window"`
	Stage     string     `json:"stage"`
	Attempts  int        `json:"attempts"`
	LastError string     `json:"last_error,omitempty"`
	Resolved  bool       `json:"resolved"`
	At        time.Time  `json:"at"`
}

// WindowJSON is a [heal.Window] as JSON: RFC 3339 start and end.
type WindowJSON struct {
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
}

// NewMessage builds the Message for a.
func NewMessage(a heal.Alarm) Message {
	at := a.At
	if at.IsZero() {
		at = time.Now()
	}
	return Message{
		Text:      Text(a),
		Dataset:   a.Dataset,
		Key:       a.Key,
		Window:    WindowJSON{Start: a.Window.Start.UTC(), End: a.Window.End.UTC()},
		Stage:     string(a.Stage),
		Attempts:  a.Attempts,
		LastError: a.LastError,
		Resolved:  a.Resolved,
		At:        at.UTC(),
	}
}

// Text is the one-line description of a, as in [Message.Text].
func Text(a heal.Alarm) string {
	var b strings.Builder
	if a.Resolved {
		b.WriteString("heal RESOLVED: ")
	} else {
		b.WriteString("heal ALARM: ")
	}
	b.WriteString(a.Dataset)
	if a.Key != "" {
		b.WriteString(" " + a.Key)
	}
	stage := string(a.Stage)
	if stage == "" {
		stage = "cycle"
	}
	if a.Resolved {
		fmt.Fprintf(&b, " %s healed for %s", stage, a.Window)
		return b.String()
	}
	fmt.Fprintf(&b, " %s failed for %s", stage, a.Window)
	if a.Attempts > 0 {
		fmt.Fprintf(&b, " after %d attempt", a.Attempts)
		if a.Attempts > 1 {
			b.WriteString("s")
		}
	}
	if a.LastError != "" {
		b.WriteString(": " + oneLine(a.LastError, 300))
	}
	return b.String()
}

// Subject is a short subject for a, as SNS wants it: at most 100
// characters of printable ASCII, e.g. "heal ALARM quotes AAPL repair".
func Subject(a heal.Alarm) string {
	state := "ALARM"
	if a.Resolved {
		state = "RESOLVED"
	}
	s := "heal " + state + " " + a.Dataset
	if a.Key != "" {
		s += " " + a.Key
	}
	if a.Stage != "" {
		s += " " + string(a.Stage)
	}
	return asciiLine(s, 100)
}

// oneLine folds s onto one line of at most n bytes.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		cut := n - 3
		for cut > 0 && !utf8Start(s[cut]) {
			cut--
		}
		s = s[:cut] + "..."
	}
	return s
}

func utf8Start(c byte) bool { return c&0xC0 != 0x80 }

// asciiLine keeps printable ASCII, replacing anything else with '?', and
// cuts at n bytes.
func asciiLine(s string, n int) string {
	var b strings.Builder
	for _, r := range s {
		if b.Len() >= n {
			break
		}
		if r < 0x20 || r > 0x7e {
			r = '?'
		}
		b.WriteRune(r)
	}
	return strings.TrimSpace(b.String())
}
