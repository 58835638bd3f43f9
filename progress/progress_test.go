package progress_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/selfheal/heal"
	"github.com/selfheal/heal/progress"
	"github.com/selfheal/heal/report/reporttest"
	"github.com/selfheal/heal/sink"
)

// fakeClock is at second sec.
type fakeClock struct {
	mu  sync.Mutex
	sec int64
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Unix(c.sec, 0)
}

func (c *fakeClock) at(sec int64) {
	c.mu.Lock()
	c.sec = sec
	c.mu.Unlock()
}

func TestQuietUnlessTerminal(t *testing.T) {
	var buf bytes.Buffer
	b := progress.New(&buf, nil)
	b.Observe(heal.Event{Kind: heal.EventAudit, Rows: 10})
	b.Observe(heal.Event{Kind: heal.EventRepaired, Rows: 10})
	b.Done()
	if !b.Quiet() || buf.Len() != 0 {
		t.Errorf("a buffer is not a terminal: quiet %v, wrote %q", b.Quiet(), buf.String())
	}
	f, err := os.CreateTemp(t.TempDir(), "log")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if progress.IsTerminal(f) || !progress.New(f, nil).Quiet() {
		t.Error("a file is not a terminal")
	}
}

func TestLines(t *testing.T) {
	var buf bytes.Buffer
	clk := &fakeClock{}
	b := progress.New(&buf, &progress.Options{Lines: true, Every: time.Nanosecond, Now: clk.now})
	for _, step := range []struct {
		sec int64
		ev  heal.Event
	}{
		{1, heal.Event{Kind: heal.EventAudit, Rows: 100}},
		{2, heal.Event{Kind: heal.EventFetch}},
		{2, heal.Event{Kind: heal.EventFetch, Live: true}},  // the live path is not the backfill's
		{3, heal.Event{Kind: heal.EventRepaired, Rows: 20}}, // 20 in 2s
		{4, heal.Event{Kind: heal.EventFetch, Err: errors.New("503")}},
		{5, heal.Event{Kind: heal.EventEmpty, Rows: 5}}, // 25 in 4s
	} {
		clk.at(step.sec)
		b.Observe(step.ev)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 5 {
		t.Fatalf("%d lines:\n%s", len(lines), buf.String())
	}
	if want := "heal: 20/100 slots (20.0%) · 20 repaired, 0 empty · 1 source calls · 10.0 slots/s · ETA 8s"; lines[2] != want {
		t.Errorf("line 3:\n%s\nwant\n%s", lines[2], want)
	}
	if want := "heal: 25/100 slots (25.0%) · 20 repaired, 5 empty · 2 source calls, 1 failed · 6.2 slots/s · ETA 12s"; lines[4] != want {
		t.Errorf("line 5:\n%s\nwant\n%s", lines[4], want)
	}
	// A new audit starts a new round.
	b.Observe(heal.Event{Kind: heal.EventAudit, Rows: 3})
	clk.at(7)
	b.Observe(heal.Event{Kind: heal.EventRepaired, Rows: 3})
	if l := b.Line(); !strings.HasPrefix(l, "heal: 3/3 slots (100.0%) · 23 repaired") || !strings.Contains(l, "done in") {
		t.Errorf("second round: %s", l)
	}
}

// TestBackfill follows a real engine's heal: one audit finds 26 slots
// missing, 18 are repaired, 3 confirmed empty, 5 given up on.
func TestBackfill(t *testing.T) {
	var buf bytes.Buffer
	b := progress.New(&buf, &progress.Options{Lines: true, Every: time.Nanosecond})
	if _, err := reporttest.BuildWith(context.Background(), sink.NewMemStore(), b); err != nil {
		t.Fatal(err)
	}
	b.Done()
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	want := "heal: 21/26 slots (80.8%) · 18 repaired, 3 empty · 5 source calls, 1 failed"
	if last := lines[len(lines)-1]; !strings.HasPrefix(last, want) {
		t.Errorf("last line %q, want it to start %q", last, want)
	}
}
