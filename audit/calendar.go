package audit

import (
	"sync"
	"time"
	_ "time/tzdata" // the calendars must work on images without a zoneinfo database

	"github.com/selfheal/heal"
)

// Continuous returns the calendar of a market that never closes (crypto
// pairs such as BINANCE:BTCUSDT, sensor feeds): every slot of the grain,
// around the clock, is expected.
func Continuous() heal.CompletenessRule { return continuous{} }

// continuous is [Continuous]; its String is its name for [ParseRule].
type continuous struct{}

func (continuous) Expected(_ string, w heal.Window, grain time.Duration) []heal.Window {
	if grain <= 0 {
		return nil
	}
	e := heal.Window{Start: ceil(w.Start.UTC(), grain), End: ceil(w.End.UTC(), grain)}
	if e.Empty() {
		return nil
	}
	return []heal.Window{e}
}

// Session is a trading calendar: one session a day, from Open to Close
// (times of day in Location), on the given weekdays, except on holidays, and
// ending at an earlier time on early-close days. It implements
// [heal.CompletenessRule] and expects every grain slot whose start lies in a
// session, whatever the key. Dates are read in Location, so a session stays
// at the same wall-clock time across daylight-saving switches and its UTC
// window moves by an hour.
//
// Configure a Session before its first use and do not change it afterwards;
// its methods may then be called concurrently.
type Session struct {
	// Name is for logs and reports (e.g. "NYSE").
	Name string
	// Location is the session's time zone. nil: UTC.
	Location *time.Location
	// Open and Close are times of day, as offsets from local midnight
	// read on the wall clock (09:30 is 9*time.Hour+30*time.Minute).
	// Close must be after Open and at most 24h.
	Open, Close time.Duration
	// Weekdays are the days the session can trade. nil: Monday to Friday.
	Weekdays []time.Weekday
	// Holidays returns the full-day closures of a year, as dates (only
	// year, month and day are read). nil: none.
	Holidays func(year int) []time.Time
	// EarlyCloses returns the days of a year on which the session closes
	// early, and the close time of those days. nil: none.
	EarlyCloses func(year int) []EarlyClose

	years sync.Map // int → *yearInfo
}

// EarlyClose is a shortened trading day: the session closes at Close (a time
// of day, like [Session.Close]) on Date (only year, month and day are read).
type EarlyClose struct {
	Date  time.Time
	Close time.Duration
}

type yearInfo struct {
	closed map[date]bool
	early  map[date]time.Duration
}

// date is a calendar day, free of any time zone.
type date struct {
	y int
	m time.Month
	d int
}

func dateOf(t time.Time) date { return date{t.Year(), t.Month(), t.Day()} }

func (d date) next() date { return dateOf(time.Date(d.y, d.m, d.d+1, 0, 0, 0, 0, time.UTC)) }

func (d date) before(o date) bool {
	if d.y != o.y {
		return d.y < o.y
	}
	if d.m != o.m {
		return d.m < o.m
	}
	return d.d < o.d
}

func (s *Session) loc() *time.Location {
	if s.Location == nil {
		return time.UTC
	}
	return s.Location
}

func (s *Session) year(y int) *yearInfo {
	if v, ok := s.years.Load(y); ok {
		return v.(*yearInfo)
	}
	yi := &yearInfo{closed: map[date]bool{}, early: map[date]time.Duration{}}
	if s.Holidays != nil {
		for _, h := range s.Holidays(y) {
			yi.closed[dateOf(h)] = true
		}
	}
	if s.EarlyCloses != nil {
		for _, e := range s.EarlyCloses(y) {
			yi.early[dateOf(e.Date)] = e.Close
		}
	}
	v, _ := s.years.LoadOrStore(y, yi)
	return v.(*yearInfo)
}

func (s *Session) trades(wd time.Weekday) bool {
	if s.Weekdays == nil {
		return wd >= time.Monday && wd <= time.Friday
	}
	for _, d := range s.Weekdays {
		if d == wd {
			return true
		}
	}
	return false
}

// hours returns the session of day d as instants, and false when the
// session does not trade that day.
func (s *Session) hours(d date) (open, close time.Time, ok bool) {
	loc := s.loc()
	noon := time.Date(d.y, d.m, d.d, 12, 0, 0, 0, loc)
	if !s.trades(noon.Weekday()) || s.Close <= s.Open {
		return time.Time{}, time.Time{}, false
	}
	yi := s.year(d.y)
	if yi.closed[d] {
		return time.Time{}, time.Time{}, false
	}
	c := s.Close
	if e, ok := yi.early[d]; ok && e < c {
		c = e
	}
	if c <= s.Open {
		return time.Time{}, time.Time{}, false
	}
	return wallClock(d, s.Open, loc), wallClock(d, c, loc), true
}

// wallClock is the instant at time of day tod on day d in loc. A time that
// does not exist (skipped by a spring-forward) is normalized by time.Date.
func wallClock(d date, tod time.Duration, loc *time.Location) time.Time {
	h := int(tod / time.Hour)
	m := int(tod % time.Hour / time.Minute)
	sec := int(tod % time.Minute / time.Second)
	ns := int(tod % time.Second)
	return time.Date(d.y, d.m, d.d, h, m, sec, ns, loc)
}

// Hours returns the session of the calendar day holding t in the session's
// location, as UTC instants, and false when the session does not trade that
// day (weekend, holiday).
func (s *Session) Hours(t time.Time) (open, close time.Time, ok bool) {
	o, c, ok := s.hours(dateOf(t.In(s.loc())))
	return o.UTC(), c.UTC(), ok
}

// IsTradingDay reports whether the session trades on the calendar day
// holding t in the session's location.
func (s *Session) IsTradingDay(t time.Time) bool {
	_, _, ok := s.Hours(t)
	return ok
}

// Expected returns the sessions within w as grain-aligned UTC windows:
// the slots whose start lies in [open, close) of a trading day. The key is
// ignored.
func (s *Session) Expected(_ string, w heal.Window, grain time.Duration) []heal.Window {
	if grain <= 0 || w.Empty() {
		return nil
	}
	loc := s.loc()
	first := dateOf(w.Start.In(loc)).prev()
	last := dateOf(w.End.In(loc))
	var out []heal.Window
	for d := first; !last.before(d); d = d.next() {
		o, c, ok := s.hours(d)
		if !ok {
			continue
		}
		iw := heal.Window{Start: o.UTC(), End: c.UTC()}.Intersect(w)
		if iw.Empty() {
			continue
		}
		e := heal.Window{Start: ceil(iw.Start.UTC(), grain), End: ceil(iw.End.UTC(), grain)}
		if e.Empty() {
			continue
		}
		if n := len(out); n > 0 && !out[n-1].End.Before(e.Start) {
			if e.End.After(out[n-1].End) {
				out[n-1].End = e.End
			}
			continue
		}
		out = append(out, e)
	}
	return out
}

func (d date) prev() date { return dateOf(time.Date(d.y, d.m, d.d-1, 0, 0, 0, 0, time.UTC)) }

// ceil rounds t up to a multiple of grain (counted from the zero time, as
// time.Truncate does, so UTC-aligned for grains dividing a day).
func ceil(t time.Time, grain time.Duration) time.Time {
	f := t.Truncate(grain)
	if f.Before(t) {
		return f.Add(grain)
	}
	return f
}

// USEquities returns the calendar of the US regular stock session, NYSE and
// Nasdaq: 09:30 to 16:00 America/New_York, Monday to Friday, closed on NYSE
// holidays ([NYSEHolidays]), closing at 13:00 on NYSE early-close days
// ([NYSEEarlyCloses]). Pre-market (04:00–09:30) and after-hours
// (16:00–20:00) trading is not expected: bars there are sparse by nature.
func USEquities() *Session {
	ny, err := time.LoadLocation("America/New_York")
	if err != nil { // unreachable with time/tzdata embedded
		panic("audit: America/New_York: " + err.Error())
	}
	return &Session{
		Name:        "NYSE",
		Location:    ny,
		Open:        9*time.Hour + 30*time.Minute,
		Close:       16 * time.Hour,
		Holidays:    NYSEHolidays,
		EarlyCloses: NYSEEarlyCloses,
	}
}
