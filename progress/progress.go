// Package progress shows how a long backfill is getting on: a status line
// with counts, a rate and an ETA, redrawn in place on a terminal and
// silent everywhere else (a log file, a pipe, cron), so it can be left on.
//
// A [Bar] is a [heal.Observer]; combine it with others in one
// heal.ObserverFunc:
//
//	bar := progress.New(os.Stderr, nil) // quiet unless stderr is a terminal
//	defer bar.Done()
//	eng, _ := heal.New(ds, src, lake, &heal.Options{Observer: heal.ObserverFunc(func(e heal.Event) {
//		bar.Observe(e)
//		meter.Observe(e)
//	})})
//	eng.Heal(ctx, heal.NewWindow(from, to)) // one audit, then the repairs
//
// Each audit starts a new round: its missing slots are the round's total,
// and the slots repaired or confirmed empty since are its progress. The
// rate and the ETA are those of the round, on the wall clock. Slots the
// engine has given up on are part of the total and never done, so a round
// can end short of 100%.
package progress

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/selfheal/heal"
)

// IsTerminal reports whether f is a terminal (a character device), as
// os.Stderr is when a person watches it.
func IsTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// Options configures a [Bar]. A nil *Options, or any zero field, means the
// default written beside the field.
type Options struct {
	// Every is the least time between two redraws. 0: 500ms.
	Every time.Duration
	// Lines prints each update on a line of its own, even when the writer
	// is not a terminal (logs of a long job). false: draw only on a
	// terminal, in place.
	Lines bool
	// Now is the wall clock. nil: time.Now.
	Now func() time.Time
}

// Bar draws progress to a writer; see the package doc. Its methods may be
// called concurrently; Observe never blocks on anything but the write.
type Bar struct {
	w       io.Writer
	every   time.Duration
	now     func() time.Time
	inPlace bool // redraw with \r (a terminal)
	quiet   bool

	mu                      sync.Mutex
	total, done             int64 // this round
	roundStart              time.Time
	repaired, empty, audits int64
	calls, failed           int64
	last                    time.Time
	width                   int // of the last line drawn in place
}

// New returns a bar writing to w: in place when w is a terminal *os.File,
// line by line when opts.Lines is set, and not at all otherwise.
func New(w io.Writer, opts *Options) *Bar {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.Every <= 0 {
		o.Every = 500 * time.Millisecond
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	b := &Bar{w: w, every: o.Every, now: o.Now}
	if f, ok := w.(*os.File); ok && IsTerminal(f) {
		b.inPlace = true
	} else if !o.Lines {
		b.quiet = true
	}
	return b
}

// Quiet reports whether the bar draws nothing.
func (b *Bar) Quiet() bool { return b.quiet }

// Observe implements [heal.Observer].
func (b *Bar) Observe(ev heal.Event) {
	if b.quiet {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	switch ev.Kind {
	case heal.EventAudit:
		b.audits++
		b.total, b.done, b.roundStart = int64(ev.Rows), 0, b.now()
	case heal.EventRepaired:
		b.repaired += int64(ev.Rows)
		b.done += int64(ev.Rows)
	case heal.EventEmpty:
		b.empty += int64(ev.Rows)
		b.done += int64(ev.Rows)
	case heal.EventFetch:
		if ev.Live {
			return
		}
		b.calls++
		if ev.Err != nil {
			b.failed++
		}
	default:
		return
	}
	if now := b.now(); now.Sub(b.last) >= b.every || (b.total > 0 && b.done >= b.total) {
		b.last = now
		b.draw(now)
	}
}

// Done draws the last state and ends the line.
func (b *Bar) Done() {
	if b.quiet {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.audits == 0 {
		return
	}
	b.draw(b.now())
	if b.inPlace {
		fmt.Fprintln(b.w)
		b.width = 0
	}
}

// Line returns the status line as it would be drawn now.
func (b *Bar) Line() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.line(b.now())
}

func (b *Bar) line(now time.Time) string {
	var s strings.Builder
	fmt.Fprintf(&s, "heal: %d/%d slots", b.done, b.total)
	if b.total > 0 {
		fmt.Fprintf(&s, " (%.1f%%)", 100*float64(min(b.done, b.total))/float64(b.total))
	}
	fmt.Fprintf(&s, " · %d repaired, %d empty · %d source calls", b.repaired, b.empty, b.calls)
	if b.failed > 0 {
		fmt.Fprintf(&s, ", %d failed", b.failed)
	}
	elapsed := now.Sub(b.roundStart)
	if b.done > 0 && elapsed > 0 {
		rate := float64(b.done) / elapsed.Seconds()
		fmt.Fprintf(&s, " · %.1f slots/s", rate)
		if left := b.total - b.done; left > 0 {
			fmt.Fprintf(&s, " · ETA %s", eta(time.Duration(float64(left)/rate*float64(time.Second))))
		} else {
			fmt.Fprintf(&s, " · done in %s", eta(elapsed))
		}
	}
	return s.String()
}

func eta(d time.Duration) string {
	switch {
	case d < time.Second:
		return "<1s"
	case d < time.Minute:
		return d.Round(time.Second).String()
	case d < time.Hour:
		return d.Round(time.Second).String()
	}
	return d.Round(time.Minute).String()
}

func (b *Bar) draw(now time.Time) {
	l := b.line(now)
	if !b.inPlace {
		fmt.Fprintln(b.w, l)
		return
	}
	pad := ""
	if n := len([]rune(l)); n < b.width {
		pad = strings.Repeat(" ", b.width-n)
	}
	b.width = len([]rune(l))
	fmt.Fprint(b.w, "\r"+l+pad)
}
