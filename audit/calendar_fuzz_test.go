package audit

import (
	"testing"
	"time"

	"github.com/selfheal/heal"
)

// FuzzCalendar checks the rules' Expected on arbitrary windows and grains
// (and, for Session, arbitrary hours, zones and weekdays): the windows are
// sorted, disjoint and not adjacent, aligned to the grain, within the
// window widened to whole grains; every slot they hold starts in a session;
// and every slot that starts in a session within the window is held.
// Seed corpora are in testdata/fuzz; CI runs the target briefly
// (scripts/fuzz).
func FuzzCalendar(f *testing.F) {
	f.Add(uint8(0), int64(1741100400), uint32(86400), uint32(60), uint16(570), uint16(960), uint8(0x3e), uint8(0))     // a Tuesday, minutes
	f.Add(uint8(0), int64(1741478400), uint32(3*86400), uint32(60), uint16(0), uint16(0), uint8(0), uint8(0))          // over the March DST switch
	f.Add(uint8(0), int64(1735603200), uint32(5*86400), uint32(3600), uint16(0), uint16(0), uint8(0), uint8(0))        // New Year, hours
	f.Add(uint8(0), int64(1732752000), uint32(2*86400), uint32(7*60), uint16(0), uint16(0), uint8(0), uint8(0))        // Thanksgiving, an odd grain
	f.Add(uint8(1), int64(1741100400), uint32(7*86400), uint32(60), uint16(1380), uint16(1440), uint8(0x7f), uint8(1)) // late session, Tokyo
	f.Add(uint8(1), int64(1741100400), uint32(86400), uint32(1), uint16(0), uint16(1440), uint8(0x01), uint8(2))       // all of Sunday, seconds
	f.Add(uint8(2), int64(1741100437), uint32(3601), uint32(60), uint16(0), uint16(0), uint8(0), uint8(0))             // continuous, unaligned
	f.Fuzz(func(t *testing.T, kind uint8, startSec int64, durSec, grainSec uint32, openMin, closeMin uint16, weekdays, zone uint8) {
		const from, span = 631152000, 110 * 365 * 86400 // 1990 .. 2100
		start := time.Unix(from+((startSec%span)+span)%span, 0).UTC()
		w := heal.Window{Start: start, End: start.Add(time.Duration(durSec%(40*86400)) * time.Second)}
		grain := time.Duration(1+grainSec%86400) * time.Second
		if w.Duration()/grain > 200000 {
			grain = w.Duration()/200000 + time.Second // keep one execution cheap
		}
		var rule heal.CompletenessRule
		var sess *Session
		switch kind % 3 {
		case 0:
			sess = USEquities()
		case 1:
			locs := []string{"UTC", "America/New_York", "Asia/Tokyo", "Australia/Sydney", "Europe/London"}
			loc, err := time.LoadLocation(locs[int(zone)%len(locs)])
			if err != nil {
				t.Fatal(err)
			}
			sess = &Session{Name: "fuzz", Location: loc,
				Open: time.Duration(openMin%1441) * time.Minute, Close: time.Duration(closeMin%1441) * time.Minute}
			for d := 0; d < 7; d++ {
				if weekdays&(1<<d) != 0 {
					sess.Weekdays = append(sess.Weekdays, time.Weekday(d))
				}
			}
			if sess.Weekdays == nil {
				sess.Weekdays = []time.Weekday{} // none: the session never trades
			}
		default:
			rule = Continuous()
		}
		if sess != nil {
			rule = sess
		}
		inSession := func(s time.Time) bool {
			if sess == nil {
				return true
			}
			for _, d := range []time.Duration{0, -24 * time.Hour} { // a session may start the day before
				if o, c, ok := sess.Hours(s.Add(d)); ok && !s.Before(o) && s.Before(c) {
					return true
				}
			}
			return false
		}
		got := rule.Expected("X", w, grain)
		al := w.Align(grain)
		ceilStart := ceil(w.Start, grain)
		for i, e := range got {
			if !e.Start.Before(e.End) {
				t.Fatalf("window %d %v is empty", i, e)
			}
			if !e.Start.Equal(e.Start.Truncate(grain)) || !e.End.Equal(e.End.Truncate(grain)) {
				t.Fatalf("window %d %v not aligned to %s", i, e, grain)
			}
			if e.Start.Before(al.Start) || e.End.After(al.End) || e.Start.Before(ceilStart) {
				t.Fatalf("window %d %v outside %v (aligned %v)", i, e, w, al)
			}
			if i > 0 && !got[i-1].End.Before(e.Start) {
				t.Fatalf("windows %v and %v overlap, touch or are out of order", got[i-1], e)
			}
			for _, s := range []time.Time{e.Start, e.End.Add(-grain), e.Start.Add(e.Duration() / grain / 2 * grain)} {
				if !inSession(s) {
					t.Fatalf("slot %s of window %v does not start in a session", s, e)
				}
			}
		}
		// Every slot starting in a session within the window is expected:
		// probe a few slots spread over the window.
		for p := 0; p < 16; p++ {
			s := ceil(w.Start.Add(w.Duration()*time.Duration(p)/16), grain)
			if !s.Before(w.End) || !inSession(s) {
				continue
			}
			held := false
			for _, e := range got {
				held = held || e.Contains(s)
			}
			if !held {
				t.Fatalf("slot %s starts in a session within %v but is not expected (%v)", s, w, got)
			}
		}
	})
}
