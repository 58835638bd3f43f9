package heal

import (
	"fmt"
	"time"
)

// Window is the half-open time interval [Start, End). Times are compared as
// instants; heal keeps them in UTC.
type Window struct {
	Start time.Time
	End   time.Time
}

// NewWindow returns [start, end) in UTC.
func NewWindow(start, end time.Time) Window { return Window{start.UTC(), end.UTC()} }

// IsZero reports whether w is the zero Window, which Query reads as "all time".
func (w Window) IsZero() bool { return w.Start.IsZero() && w.End.IsZero() }

// Empty reports whether w holds no instant.
func (w Window) Empty() bool { return !w.End.After(w.Start) }

// Duration is End-Start.
func (w Window) Duration() time.Duration { return w.End.Sub(w.Start) }

// Contains reports whether t is in [Start, End).
func (w Window) Contains(t time.Time) bool { return !t.Before(w.Start) && t.Before(w.End) }

// Overlaps reports whether w and o share an instant.
func (w Window) Overlaps(o Window) bool { return w.Start.Before(o.End) && o.Start.Before(w.End) }

// Intersect returns the overlap of w and o; it is Empty when they do not overlap.
func (w Window) Intersect(o Window) Window {
	r := w
	if o.Start.After(r.Start) {
		r.Start = o.Start
	}
	if o.End.Before(r.End) {
		r.End = o.End
	}
	return r
}

// Slots returns the number of grain slots in w.
func (w Window) Slots(grain time.Duration) int {
	if w.Empty() || grain <= 0 {
		return 0
	}
	return int((w.Duration() + grain - 1) / grain)
}

// String formats w as RFC 3339 "start/end" (the ISO 8601 interval form).
func (w Window) String() string {
	return fmt.Sprintf("%s/%s", w.Start.UTC().Format(time.RFC3339), w.End.UTC().Format(time.RFC3339))
}

// Align returns w widened to whole grains: Start floored, End ceiled.
func (w Window) Align(grain time.Duration) Window {
	s := w.Start.UTC().Truncate(grain)
	e := w.End.UTC().Truncate(grain)
	if e.Before(w.End) {
		e = e.Add(grain)
	}
	return Window{s, e}
}

// Period is the time span of one partition of a dataset on disk.
type Period int

// Partition periods. The zero value is PeriodDay.
const (
	PeriodDay   Period = iota // date=YYYY-MM-DD
	PeriodMonth               // month=YYYY-MM
	PeriodYear                // year=YYYY
)

// Floor returns the start of the period holding t, in UTC.
func (p Period) Floor(t time.Time) time.Time {
	t = t.UTC()
	switch p {
	case PeriodMonth:
		return time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC)
	case PeriodYear:
		return time.Date(t.Year(), 1, 1, 0, 0, 0, 0, time.UTC)
	default:
		return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
	}
}

// Next returns the start of the period after the one holding t.
func (p Period) Next(t time.Time) time.Time {
	s := p.Floor(t)
	switch p {
	case PeriodMonth:
		return s.AddDate(0, 1, 0)
	case PeriodYear:
		return s.AddDate(1, 0, 0)
	default:
		return s.AddDate(0, 0, 1)
	}
}

// Name is the Hive partition column the period is stored under.
func (p Period) Name() string {
	switch p {
	case PeriodMonth:
		return "month"
	case PeriodYear:
		return "year"
	default:
		return "date"
	}
}

// Format renders the period holding t as its Hive partition value.
func (p Period) Format(t time.Time) string {
	switch p {
	case PeriodMonth:
		return t.UTC().Format("2006-01")
	case PeriodYear:
		return t.UTC().Format("2006")
	default:
		return t.UTC().Format("2006-01-02")
	}
}

// Parse reads a Hive partition value written by Format.
func (p Period) Parse(v string) (time.Time, error) {
	layout := "2006-01-02"
	switch p {
	case PeriodMonth:
		layout = "2006-01"
	case PeriodYear:
		layout = "2006"
	}
	t, err := time.ParseInLocation(layout, v, time.UTC)
	if err != nil {
		return time.Time{}, fmt.Errorf("heal: bad %s partition value %q: %w", p.Name(), v, err)
	}
	return t, nil
}

// Split cuts w at period boundaries.
func (p Period) Split(w Window) []Window {
	var out []Window
	for s := w.Start; s.Before(w.End); {
		e := p.Next(s)
		if e.After(w.End) {
			e = w.End
		}
		out = append(out, Window{s, e})
		s = e
	}
	return out
}

// Partition names one partition of a dataset: one key over one period.
type Partition struct {
	Dataset string
	Key     string
	Start   time.Time // start of the period, UTC
	Period  Period
}

// Window is the time span the partition covers.
func (p Partition) Window() Window { return Window{p.Start, p.Period.Next(p.Start)} }

// String is "dataset/key/period-value", for logs and errors.
func (p Partition) String() string {
	return p.Dataset + "/" + p.Key + "/" + p.Period.Format(p.Start)
}
