package audit

import (
	"sort"
	"time"
)

// NYSEHolidays returns the days of year on which the New York Stock Exchange
// is closed all day, computed by the exchange's rules (valid from 1998, when
// Martin Luther King Jr. Day was added), plus the unscheduled closures
// listed in [NYSEClosures]. Dates are midnight UTC, sorted.
//
//   - New Year's Day, January 1; Monday when it falls on a Sunday, not
//     observed when it falls on a Saturday (the exchange does not close on
//     the last business day of a year).
//   - Martin Luther King Jr. Day, third Monday of January.
//   - Washington's Birthday, third Monday of February.
//   - Good Friday, two days before Western Easter.
//   - Memorial Day, last Monday of May.
//   - Juneteenth, June 19, from 2022.
//   - Independence Day, July 4.
//   - Labor Day, first Monday of September.
//   - Thanksgiving Day, fourth Thursday of November.
//   - Christmas Day, December 25.
//
// Except for New Year's Day, a holiday on a Saturday is observed the Friday
// before and one on a Sunday the Monday after.
func NYSEHolidays(year int) []time.Time {
	d := func(m time.Month, day int) time.Time { return time.Date(year, m, day, 0, 0, 0, 0, time.UTC) }
	var out []time.Time
	if ny := d(time.January, 1); ny.Weekday() == time.Sunday {
		out = append(out, d(time.January, 2))
	} else if ny.Weekday() != time.Saturday {
		out = append(out, ny)
	}
	if year >= 1998 {
		out = append(out, nthWeekday(year, time.January, time.Monday, 3))
	}
	out = append(out,
		nthWeekday(year, time.February, time.Monday, 3),
		easter(year).AddDate(0, 0, -2),
		lastWeekday(year, time.May, time.Monday),
	)
	if year >= 2022 {
		out = append(out, observed(d(time.June, 19)))
	}
	out = append(out,
		observed(d(time.July, 4)),
		nthWeekday(year, time.September, time.Monday, 1),
		nthWeekday(year, time.November, time.Thursday, 4),
		observed(d(time.December, 25)),
	)
	for _, c := range NYSEClosures {
		if c.Year() == year {
			out = append(out, time.Date(c.Year(), c.Month(), c.Day(), 0, 0, 0, 0, time.UTC))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Before(out[j]) })
	return out
}

// NYSEClosures are the unscheduled full-day closures of the New York Stock
// Exchange since 1994: national days of mourning, September 11, Hurricane
// Sandy. Append to it (before first use of a calendar) if another happens.
var NYSEClosures = []time.Time{
	time.Date(1994, time.April, 27, 0, 0, 0, 0, time.UTC),     // President Nixon
	time.Date(2001, time.September, 11, 0, 0, 0, 0, time.UTC), // September 11 attacks
	time.Date(2001, time.September, 12, 0, 0, 0, 0, time.UTC),
	time.Date(2001, time.September, 13, 0, 0, 0, 0, time.UTC),
	time.Date(2001, time.September, 14, 0, 0, 0, 0, time.UTC),
	time.Date(2004, time.June, 11, 0, 0, 0, 0, time.UTC),    // President Reagan
	time.Date(2007, time.January, 2, 0, 0, 0, 0, time.UTC),  // President Ford
	time.Date(2012, time.October, 29, 0, 0, 0, 0, time.UTC), // Hurricane Sandy
	time.Date(2012, time.October, 30, 0, 0, 0, 0, time.UTC),
	time.Date(2018, time.December, 5, 0, 0, 0, 0, time.UTC), // President George H. W. Bush
	time.Date(2025, time.January, 9, 0, 0, 0, 0, time.UTC),  // President Carter
}

// NYSEEarlyCloses returns the days of year on which the New York Stock
// Exchange closes at 13:00 New York time: July 3 when it falls on Monday to
// Thursday (the day before Independence Day), the day after Thanksgiving,
// and Christmas Eve when it falls on Monday to Thursday.
func NYSEEarlyCloses(year int) []EarlyClose {
	const one = 13 * time.Hour
	var out []EarlyClose
	if j3 := time.Date(year, time.July, 3, 0, 0, 0, 0, time.UTC); j3.Weekday() >= time.Monday && j3.Weekday() <= time.Thursday {
		out = append(out, EarlyClose{j3, one})
	}
	out = append(out, EarlyClose{nthWeekday(year, time.November, time.Thursday, 4).AddDate(0, 0, 1), one})
	if ce := time.Date(year, time.December, 24, 0, 0, 0, 0, time.UTC); ce.Weekday() >= time.Monday && ce.Weekday() <= time.Thursday {
		out = append(out, EarlyClose{ce, one})
	}
	return out
}

// observed moves a Saturday holiday to Friday and a Sunday one to Monday.
func observed(t time.Time) time.Time {
	switch t.Weekday() {
	case time.Saturday:
		return t.AddDate(0, 0, -1)
	case time.Sunday:
		return t.AddDate(0, 0, 1)
	}
	return t
}

// nthWeekday is the n-th (1-based) wd of month m.
func nthWeekday(year int, m time.Month, wd time.Weekday, n int) time.Time {
	t := time.Date(year, m, 1, 0, 0, 0, 0, time.UTC)
	off := (int(wd) - int(t.Weekday()) + 7) % 7
	return t.AddDate(0, 0, off+7*(n-1))
}

// lastWeekday is the last wd of month m.
func lastWeekday(year int, m time.Month, wd time.Weekday) time.Time {
	t := time.Date(year, m+1, 0, 0, 0, 0, 0, time.UTC) // last day of m
	off := (int(t.Weekday()) - int(wd) + 7) % 7
	return t.AddDate(0, 0, -off)
}

// easter is Western (Gregorian) Easter Sunday, by the anonymous Gregorian
// algorithm (Meeus/Jones/Butcher).
func easter(year int) time.Time {
	a := year % 19
	b, c := year/100, year%100
	d, e := b/4, b%4
	f := (b + 8) / 25
	g := (b - f + 1) / 3
	h := (19*a + b - d - g + 15) % 30
	i, k := c/4, c%4
	l := (32 + 2*e + 2*i - h - k) % 7
	m := (a + 11*h + 22*l) / 451
	month := (h + l - 7*m + 114) / 31
	day := (h+l-7*m+114)%31 + 1
	return time.Date(year, time.Month(month), day, 0, 0, 0, 0, time.UTC)
}
