package audit

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/selfheal/heal"
)

func day(s string) time.Time {
	t, err := time.Parse("2006-01-02", s)
	if err != nil {
		panic(err)
	}
	return t
}

func dates(ts []time.Time) string {
	var s []string
	for _, t := range ts {
		s = append(s, t.Format("2006-01-02"))
	}
	return strings.Join(s, " ")
}

func TestNYSEHolidays(t *testing.T) {
	// The exchange's published calendars.
	tests := []struct {
		year int
		want string
	}{
		{2021, "2021-01-01 2021-01-18 2021-02-15 2021-04-02 2021-05-31 2021-07-05 2021-09-06 2021-11-25 2021-12-24"},
		// 2022: New Year's Day on a Saturday is not observed; Juneteenth's first year, Sunday → Monday.
		{2022, "2022-01-17 2022-02-21 2022-04-15 2022-05-30 2022-06-20 2022-07-04 2022-09-05 2022-11-24 2022-12-26"},
		{2023, "2023-01-02 2023-01-16 2023-02-20 2023-04-07 2023-05-29 2023-06-19 2023-07-04 2023-09-04 2023-11-23 2023-12-25"},
		{2024, "2024-01-01 2024-01-15 2024-02-19 2024-03-29 2024-05-27 2024-06-19 2024-07-04 2024-09-02 2024-11-28 2024-12-25"},
		// 2025: the national day of mourning for President Carter.
		{2025, "2025-01-01 2025-01-09 2025-01-20 2025-02-17 2025-04-18 2025-05-26 2025-06-19 2025-07-04 2025-09-01 2025-11-27 2025-12-25"},
		// 2026: Independence Day on a Saturday is observed Friday July 3.
		{2026, "2026-01-01 2026-01-19 2026-02-16 2026-04-03 2026-05-25 2026-06-19 2026-07-03 2026-09-07 2026-11-26 2026-12-25"},
		// 2027: Juneteenth on a Saturday → Friday; Christmas on a Saturday → Friday Dec 24.
		{2027, "2027-01-01 2027-01-18 2027-02-15 2027-03-26 2027-05-31 2027-06-18 2027-07-05 2027-09-06 2027-11-25 2027-12-24"},
		// 2012: Hurricane Sandy.
		{2012, "2012-01-02 2012-01-16 2012-02-20 2012-04-06 2012-05-28 2012-07-04 2012-09-03 2012-10-29 2012-10-30 2012-11-22 2012-12-25"},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprint(tc.year), func(t *testing.T) {
			if got := dates(NYSEHolidays(tc.year)); got != tc.want {
				t.Errorf("NYSEHolidays(%d)\n got %s\nwant %s", tc.year, got, tc.want)
			}
		})
	}
}

func TestEaster(t *testing.T) {
	for _, want := range []string{"2000-04-23", "2019-04-21", "2021-04-04", "2022-04-17", "2023-04-09",
		"2024-03-31", "2025-04-20", "2026-04-05", "2027-03-28", "2038-04-25", "2285-03-22"} {
		w := day(want)
		if got := easter(w.Year()); !got.Equal(w) {
			t.Errorf("easter(%d) = %s, want %s", w.Year(), got.Format("2006-01-02"), want)
		}
	}
}

func TestNYSEEarlyCloses(t *testing.T) {
	tests := []struct {
		year int
		want string
	}{
		{2022, "2022-11-25"},                       // July 3 Sunday, Dec 24 Saturday
		{2023, "2023-07-03 2023-11-24"},            // Dec 24 Sunday
		{2024, "2024-07-03 2024-11-29 2024-12-24"}, // all three
		{2025, "2025-07-03 2025-11-28 2025-12-24"},
		{2026, "2026-11-27 2026-12-24"}, // July 3 is the observed holiday
		{2027, "2027-11-26"},            // July 3 Saturday, Dec 24 the observed Christmas
	}
	for _, tc := range tests {
		t.Run(fmt.Sprint(tc.year), func(t *testing.T) {
			var got []time.Time
			for _, e := range NYSEEarlyCloses(tc.year) {
				if e.Close != 13*time.Hour {
					t.Errorf("%s closes at %s, want 13h", e.Date.Format("2006-01-02"), e.Close)
				}
				got = append(got, e.Date)
			}
			if dates(got) != tc.want {
				t.Errorf("NYSEEarlyCloses(%d)\n got %s\nwant %s", tc.year, dates(got), tc.want)
			}
		})
	}
}

func utc(s string) time.Time {
	t, err := time.Parse("2006-01-02 15:04", s)
	if err != nil {
		panic(err)
	}
	return t
}

func wins(ws []heal.Window) string {
	var s []string
	for _, w := range ws {
		s = append(s, w.Start.UTC().Format("01-02 15:04")+"–"+w.End.UTC().Format("01-02 15:04"))
	}
	return strings.Join(s, ", ")
}

func count(ws []heal.Window, grain time.Duration) int {
	n := 0
	for _, w := range ws {
		n += w.Slots(grain)
	}
	return n
}

func TestUSEquitiesExpected(t *testing.T) {
	us := USEquities()
	tests := []struct {
		name     string
		from, to string // UTC
		want     string // windows, UTC
		slots    int
	}{
		{"summer day (EDT)", "2024-07-01 00:00", "2024-07-02 00:00", "07-01 13:30–07-01 20:00", 390},
		{"winter day (EST)", "2024-01-02 00:00", "2024-01-03 00:00", "01-02 14:30–01-02 21:00", 390},
		{"Saturday", "2024-07-06 00:00", "2024-07-07 00:00", "", 0},
		{"Sunday", "2024-07-07 00:00", "2024-07-08 00:00", "", 0},
		{"Independence Day", "2024-07-04 00:00", "2024-07-05 00:00", "", 0},
		{"Good Friday", "2024-03-29 00:00", "2024-03-30 00:00", "", 0},
		{"Carter mourning day", "2025-01-09 00:00", "2025-01-10 00:00", "", 0},
		{"July 3 early close", "2024-07-03 00:00", "2024-07-04 00:00", "07-03 13:30–07-03 17:00", 210},
		{"day after Thanksgiving (EST)", "2024-11-29 00:00", "2024-11-30 00:00", "11-29 14:30–11-29 18:00", 210},
		{"Christmas Eve", "2024-12-24 00:00", "2024-12-25 00:00", "12-24 14:30–12-24 18:00", 210},
		// DST starts Sunday 2024-03-10: Friday is EST, Monday EDT.
		{"across spring forward", "2024-03-08 00:00", "2024-03-12 00:00",
			"03-08 14:30–03-08 21:00, 03-11 13:30–03-11 20:00", 780},
		// DST ends Sunday 2024-11-03.
		{"across fall back", "2024-11-01 00:00", "2024-11-05 00:00",
			"11-01 13:30–11-01 20:00, 11-04 14:30–11-04 21:00", 780},
		// 2025-03-10: first Monday on EDT; the 09:30 ET hour is 13:00 UTC.
		{"09:30 hour after spring forward", "2025-03-10 13:00", "2025-03-10 14:00", "03-10 13:30–03-10 14:00", 30},
		{"10:00 hour after spring forward", "2025-03-10 14:00", "2025-03-10 15:00", "03-10 14:00–03-10 15:00", 60},
		{"09:30 hour on EST", "2025-03-07 14:00", "2025-03-07 15:00", "03-07 14:30–03-07 15:00", 30},
		{"window clips the session", "2024-07-01 15:10", "2024-07-01 15:17", "07-01 15:10–07-01 15:17", 7},
		{"unaligned window", "2024-07-01 19:58", "2024-07-01 23:00", "07-01 19:58–07-01 20:00", 2},
		{"a whole week", "2024-07-01 00:00", "2024-07-08 00:00",
			"07-01 13:30–07-01 20:00, 07-02 13:30–07-02 20:00, 07-03 13:30–07-03 17:00, 07-05 13:30–07-05 20:00", 3*390 + 210},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := heal.NewWindow(utc(tc.from), utc(tc.to))
			got := us.Expected("AAPL", w, time.Minute)
			if wins(got) != tc.want {
				t.Errorf("Expected(%s)\n got %s\nwant %s", w, wins(got), tc.want)
			}
			if n := count(got, time.Minute); n != tc.slots {
				t.Errorf("slots = %d, want %d", n, tc.slots)
			}
		})
	}
}

func TestUSEquitiesHourly(t *testing.T) {
	// Per ET hour of a regular day: 30 points in the 09:30 hour, 60 in the others.
	us := USEquities()
	ny, _ := time.LoadLocation("America/New_York")
	for _, d := range []string{"2024-01-02", "2024-07-01", "2025-03-10", "2025-11-03"} {
		t.Run(d, func(t *testing.T) {
			dd := day(d)
			var got []int
			for h := 9; h < 16; h++ {
				s := time.Date(dd.Year(), dd.Month(), dd.Day(), h, 0, 0, 0, ny)
				got = append(got, count(us.Expected("X", heal.NewWindow(s, s.Add(time.Hour)), time.Minute), time.Minute))
			}
			if want := "[30 60 60 60 60 60 60]"; fmt.Sprint(got) != want {
				t.Errorf("per hour %v, want %s", got, want)
			}
		})
	}
}

func TestSessionDSTWallClock(t *testing.T) {
	// A 7-day session 01:00–04:00 New York time: on the spring-forward day
	// the hour 02:00–03:00 does not exist (2h of slots), on the fall-back
	// day 01:00–02:00 happens twice (4h).
	ny, _ := time.LoadLocation("America/New_York")
	s := &Session{Location: ny, Open: time.Hour, Close: 4 * time.Hour,
		Weekdays: []time.Weekday{0, 1, 2, 3, 4, 5, 6}}
	tests := []struct {
		day   string
		want  string
		slots int
	}{
		{"2024-03-09", "03-09 06:00–03-09 09:00", 180},
		{"2024-03-10", "03-10 06:00–03-10 08:00", 120},
		{"2024-03-11", "03-11 05:00–03-11 08:00", 180},
		{"2024-11-03", "11-03 05:00–11-03 09:00", 240},
		{"2024-11-04", "11-04 06:00–11-04 09:00", 180},
	}
	for _, tc := range tests {
		t.Run(tc.day, func(t *testing.T) {
			d := day(tc.day)
			w := heal.NewWindow(d, d.Add(24*time.Hour))
			got := s.Expected("k", w, time.Minute)
			if wins(got) != tc.want || count(got, time.Minute) != tc.slots {
				t.Errorf("got %s (%d slots), want %s (%d)", wins(got), count(got, time.Minute), tc.want, tc.slots)
			}
		})
	}
}

func TestSessionOvernightAndGrain(t *testing.T) {
	// A session late in the local day whose UTC window crosses midnight,
	// with a 5-minute grain and an unaligned open.
	tokyo, _ := time.LoadLocation("Asia/Tokyo")
	s := &Session{Location: tokyo, Open: 9*time.Hour + 2*time.Minute, Close: 11*time.Hour + 30*time.Minute}
	w := heal.NewWindow(utc("2024-07-01 00:00"), utc("2024-07-02 00:00")) // Monday UTC
	got := s.Expected("k", w, 5*time.Minute)
	// 09:02 JST = 00:02 UTC → first slot 00:05; 11:30 JST = 02:30 UTC.
	if want := "07-01 00:05–07-01 02:30"; wins(got) != want {
		t.Errorf("got %s, want %s", wins(got), want)
	}
	// Window starting on the UTC day before still finds the Monday session
	// (the local date is a day ahead).
	got = s.Expected("k", heal.NewWindow(utc("2024-06-30 23:00"), utc("2024-07-01 01:00")), time.Minute)
	if want := "07-01 00:02–07-01 01:00"; wins(got) != want {
		t.Errorf("got %s, want %s", wins(got), want)
	}
}

func TestSessionHours(t *testing.T) {
	us := USEquities()
	o, c, ok := us.Hours(utc("2024-11-29 23:30")) // 18:30 ET, the day after Thanksgiving
	if !ok || !o.Equal(utc("2024-11-29 14:30")) || !c.Equal(utc("2024-11-29 18:00")) {
		t.Errorf("Hours = %s %s %v", o, c, ok)
	}
	if us.IsTradingDay(utc("2024-11-28 15:00")) {
		t.Error("Thanksgiving is a trading day")
	}
	// 02:00 UTC on Tuesday is still Monday in New York.
	if o, _, ok := us.Hours(utc("2024-07-02 02:00")); !ok || !o.Equal(utc("2024-07-01 13:30")) {
		t.Errorf("Hours(Tue 02:00Z) = %s %v, want Monday's session", o, ok)
	}
}

func TestContinuous(t *testing.T) {
	c := Continuous()
	// A DST switch day changes nothing: 1440 UTC minutes.
	w := heal.NewWindow(utc("2024-03-10 00:00"), utc("2024-03-11 00:00"))
	if got := count(c.Expected("BINANCE:BTCUSDT", w, time.Minute), time.Minute); got != 1440 {
		t.Errorf("slots = %d, want 1440", got)
	}
	got := c.Expected("k", heal.Window{Start: utc("2024-03-10 00:00").Add(30 * time.Second), End: utc("2024-03-10 00:05")}, time.Minute)
	if want := "03-10 00:01–03-10 00:05"; wins(got) != want {
		t.Errorf("got %s, want %s", wins(got), want)
	}
	if got := c.Expected("k", heal.Window{}, time.Minute); got != nil {
		t.Errorf("empty window: %v", got)
	}
}

func TestSessionConcurrent(t *testing.T) {
	us := USEquities()
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			s := utc("2020-01-01 00:00").AddDate(i, 0, 0)
			us.Expected("k", heal.NewWindow(s, s.AddDate(1, 0, 0)), time.Minute)
		}(i)
	}
	wg.Wait()
}
