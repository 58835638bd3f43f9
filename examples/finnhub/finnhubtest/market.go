package finnhubtest

import (
	"hash/fnv"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/selfheal/heal/audit"
)

// Bar is one minute of simulated trading: T is the minute's start (UTC).
type Bar struct {
	T          time.Time
	O, H, L, C float64
	V          int64
}

// Quote is a simulated /quote answer. T is the time of the last trade,
// which lags the request by 10 to 30 seconds.
type Quote struct {
	C, D, DP, H, L, O, PC float64
	T                     time.Time
}

// Market is a deterministic simulated market: for each symbol and day, a
// seeded random walk over minutes. US stocks trade 04:00–20:00 New York
// time on NYSE trading days (pre- and post-market included, 17:00 on
// early-close days); a symbol with a colon (BINANCE:BTCUSDT) trades around
// the clock. Some minutes have no trade and so no bar: about 1.5% of the
// regular session and 65% of the extended hours. Everything is a pure
// function of (seed, symbol, minute), so two Markets with the same seed
// agree. Methods may be called concurrently.
type Market struct {
	seed int64
	cal  *audit.Session
	ny   *time.Location

	mu   sync.Mutex
	days map[dayKey]*daySeries
}

type dayKey struct {
	sym string
	day time.Time // midnight of the day (New York for stocks, UTC for crypto), as UTC
}

type daySeries struct {
	pc   float64     // previous close: the walk's starting price
	bars []Bar       // sorted by T
	idx  map[int]int // minute offset from the first minute → index in bars
	from time.Time   // first minute the series may hold
}

// NewMarket returns the market of seed.
func NewMarket(seed int64) *Market {
	cal := audit.USEquities()
	return &Market{seed: seed, cal: cal, ny: cal.Location, days: map[dayKey]*daySeries{}}
}

// Calendar is the regular-session calendar the simulated stocks follow.
func (m *Market) Calendar() *audit.Session { return m.cal }

func isCrypto(sym string) bool { return strings.Contains(sym, ":") }

func (m *Market) hash(parts ...any) uint64 {
	h := fnv.New64a()
	var b [8]byte
	for i := range b {
		b[i] = byte(m.seed >> (8 * i))
	}
	h.Write(b[:])
	for _, p := range parts {
		switch v := p.(type) {
		case string:
			h.Write([]byte(v))
		case int64:
			for i := range b {
				b[i] = byte(v >> (8 * i))
			}
			h.Write(b[:])
		}
		h.Write([]byte{0})
	}
	return h.Sum64()
}

// series returns the bars of sym on the day holding t (New York days for
// stocks, UTC days for crypto), or nil on a day without trading.
func (m *Market) series(sym string, t time.Time) *daySeries {
	var midnight time.Time
	if isCrypto(sym) {
		u := t.UTC()
		midnight = time.Date(u.Year(), u.Month(), u.Day(), 0, 0, 0, 0, time.UTC)
	} else {
		l := t.In(m.ny)
		midnight = time.Date(l.Year(), l.Month(), l.Day(), 0, 0, 0, 0, m.ny)
	}
	k := dayKey{sym, midnight.UTC()}
	m.mu.Lock()
	defer m.mu.Unlock()
	if s, ok := m.days[k]; ok {
		return s
	}
	s := m.generate(sym, midnight)
	m.days[k] = s
	return s
}

func (m *Market) generate(sym string, midnight time.Time) *daySeries {
	rng := rand.New(rand.NewPCG(m.hash(sym, "day", midnight.Unix()), m.hash(sym, "walk")))
	// A base price per symbol, drifting a few percent from day to day.
	base := 20 + float64(m.hash(sym, "base")%48000)/100
	days := midnight.Unix() / 86400
	pc := round2(base * math.Exp(0.02*math.Sin(float64(days)/7+float64(m.hash(sym, "phase")%100))+0.01*rng.NormFloat64()))
	s := &daySeries{pc: pc, idx: map[int]int{}}

	var from, to, open, close time.Time
	if isCrypto(sym) {
		from, to = midnight, midnight.Add(24*time.Hour)
		open, close = from, to
	} else {
		o, c, ok := m.cal.Hours(midnight.Add(12 * time.Hour))
		if !ok {
			return s
		}
		open, close = o, c
		from = wall(midnight, 4, m.ny)
		to = close.Add(4 * time.Hour) // 20:00, or 17:00 after an early close
	}
	s.from = from.UTC()
	price := pc
	const sigma = 0.0009
	for t := from; t.Before(to); t = t.Add(time.Minute) {
		regular := !t.Before(open) && t.Before(close)
		pTrade := 0.985
		if !regular {
			pTrade = 0.35
		}
		if rng.Float64() >= pTrade {
			continue
		}
		o := price
		c := round2(o * math.Exp(sigma*rng.NormFloat64()))
		if c <= 0.01 {
			c = 0.01
		}
		h := round2(math.Max(o, c) * (1 + math.Abs(rng.NormFloat64())*sigma/2))
		l := round2(math.Min(o, c) * (1 - math.Abs(rng.NormFloat64())*sigma/2))
		v := int64(100 + rng.IntN(5000))
		if regular {
			v *= 20
		}
		s.idx[int(t.Sub(from)/time.Minute)] = len(s.bars)
		s.bars = append(s.bars, Bar{T: t.UTC(), O: o, H: h, L: l, C: c, V: v})
		price = c
	}
	return s
}

func wall(midnight time.Time, hour int, loc *time.Location) time.Time {
	return time.Date(midnight.Year(), midnight.Month(), midnight.Day(), hour, 0, 0, 0, loc)
}

func round2(x float64) float64 { return math.Round(x*100) / 100 }

// Bar returns the bar of sym starting at minute (floored), and false when
// nothing traded in that minute.
func (m *Market) Bar(sym string, minute time.Time) (Bar, bool) {
	minute = minute.UTC().Truncate(time.Minute)
	s := m.series(sym, minute)
	if len(s.bars) == 0 || minute.Before(s.from) {
		return Bar{}, false
	}
	i, ok := s.idx[int(minute.Sub(s.from)/time.Minute)]
	if !ok {
		return Bar{}, false
	}
	return s.bars[i], true
}

// Bars returns the bars of sym starting in [from, to), in order.
func (m *Market) Bars(sym string, from, to time.Time) []Bar {
	var out []Bar
	for d := from; d.Before(to); {
		s := m.series(sym, d)
		for _, b := range s.bars {
			if !b.T.Before(from) && b.T.Before(to) {
				out = append(out, b)
			}
		}
		// Step to the next day of the series' calendar.
		next := d.Add(24 * time.Hour)
		if isCrypto(sym) {
			u := d.UTC()
			next = time.Date(u.Year(), u.Month(), u.Day()+1, 0, 0, 0, 0, time.UTC)
		} else {
			l := d.In(m.ny)
			next = time.Date(l.Year(), l.Month(), l.Day()+1, 0, 0, 0, 0, m.ny)
		}
		d = next
	}
	return out
}

// QuoteAt returns the quote a client polling sym at now receives: the last
// trade at or before now minus a lag of 10 to 30 seconds, with the day's
// open, high and low so far and the previous close. ok is false when the
// symbol has no trade in the last ten days.
func (m *Market) QuoteAt(sym string, now time.Time) (q Quote, ok bool) {
	lag := time.Duration(10+m.hash(sym, "lag", now.Unix())%21) * time.Second
	at := now.Add(-lag).UTC()
	minute := at.Truncate(time.Minute)
	for back := 0; back < 11; back++ {
		d := at.AddDate(0, 0, -back)
		s := m.series(sym, d)
		var last *Bar
		o, h, l := 0.0, 0.0, math.Inf(1)
		for i := range s.bars {
			b := &s.bars[i]
			if back == 0 && b.T.After(minute) {
				break
			}
			if last == nil {
				o = b.O
			}
			h, l = math.Max(h, b.H), math.Min(l, b.L)
			last = b
		}
		if last == nil {
			continue
		}
		q = Quote{C: last.C, H: h, L: l, O: o, PC: s.pc, T: last.T.Add(45 * time.Second)}
		if back == 0 && last.T.Equal(minute) {
			q.T = at.Truncate(time.Second)
		}
		q.D = round2(q.C - q.PC)
		q.DP = math.Round((q.C-q.PC)/q.PC*100*10000) / 10000
		return q, true
	}
	return Quote{}, false
}
