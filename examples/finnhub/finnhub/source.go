package finnhub

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/memory"

	"github.com/selfheal/heal"
)

// DefaultLimits are Finnhub's free-plan limits: 60 calls a minute and 30 a
// second, live and repair traffic together, one symbol per call, and about
// a month of one-minute candles per call (30 days).
func DefaultLimits() heal.Limits {
	return heal.Limits{
		MaxWindow: 30 * 24 * time.Hour,
		MaxKeys:   1,
		Rates:     []heal.Rate{{Calls: 60, Per: time.Minute}, {Calls: 30, Per: time.Second}},
	}
}

// SourceOptions configures a [Source] beyond its [Client].
type SourceOptions struct {
	// Allocator builds the records Fetch returns. nil:
	// memory.DefaultAllocator.
	Allocator memory.Allocator
	// Limits are reported to the engine, which enforces them. Zero:
	// DefaultLimits (raise Rates for a paid plan).
	Limits heal.Limits
}

// Source is a [heal.Source] of the [Quotes] dataset: live requests poll
// /quote, historical ones read one-minute candles. It is safe for
// concurrent use.
type Source struct {
	c      *Client
	ds     *heal.Dataset
	mem    memory.Allocator
	limits heal.Limits
}

// NewSource returns a Source over client c. A nil *SourceOptions means the
// defaults.
func NewSource(c *Client, opts *SourceOptions) *Source {
	var o SourceOptions
	if opts != nil {
		o = *opts
	}
	if o.Allocator == nil {
		o.Allocator = memory.DefaultAllocator
	}
	if o.Limits.MaxWindow == 0 && o.Limits.MaxKeys == 0 && o.Limits.Rates == nil {
		o.Limits = DefaultLimits()
	}
	return &Source{c: c, ds: Quotes(), mem: o.Allocator, limits: o.Limits}
}

// Dataset is the dataset the source fills, [Quotes].
func (s *Source) Dataset() *heal.Dataset { return s.ds }

// Client is the underlying client.
func (s *Source) Client() *Client { return s.c }

// Limits implements [heal.Source].
func (s *Source) Limits() heal.Limits { return s.limits }

// Fetch implements [heal.Source] for one symbol (req.Keys[0]).
//
// A live request returns one row stamped with req.Window.Start, the minute
// the poll was scheduled for, holding the quote; the quote's own t, the
// last trade, goes to quote_time. A historical request returns one row per
// one-minute candle starting in req.Window, with origin "repaired", or an
// error for which errors.Is(err, heal.ErrNoData) when Finnhub has no bar in
// the window. Errors are classified as the engine expects: 401 and 403
// permanent, 429 with the wait Finnhub asks for, unknown symbols permanent,
// everything else retryable.
func (s *Source) Fetch(ctx context.Context, req heal.Request) (arrow.Record, error) {
	if len(req.Keys) != 1 {
		return nil, heal.Permanent(fmt.Errorf("finnhub: want one symbol per request, got %d", len(req.Keys)))
	}
	if req.Window.Empty() {
		return nil, heal.Permanent(errors.New("finnhub: empty request window"))
	}
	sym := req.Keys[0]
	if req.Live {
		q, err := s.c.Quote(ctx, sym)
		if err != nil {
			return nil, err
		}
		return s.liveRecord(sym, req.Window.Start, q)
	}
	cs, err := s.c.Candles(ctx, sym, "1", req.Window.Start, req.Window.End.Add(-time.Second))
	if err != nil {
		return nil, err
	}
	return s.candleRecord(sym, req.Window, cs)
}

type rowBuilder struct {
	b                                                      *array.RecordBuilder
	sym                                                    *array.StringBuilder
	minute, quoteTime, fetched                             *array.TimestampBuilder
	price, open, high, low                                 *array.Float64Builder
	dayOpen, dayHigh, dayLow, prevClose, change, changePct *array.Float64Builder
	volume                                                 *array.Int64Builder
	origin                                                 *array.StringBuilder
}

func (s *Source) newRows() *rowBuilder {
	b := array.NewRecordBuilder(s.mem, s.ds.Schema)
	f := func(i int) *array.Float64Builder { return b.Field(i).(*array.Float64Builder) }
	ts := func(i int) *array.TimestampBuilder { return b.Field(i).(*array.TimestampBuilder) }
	return &rowBuilder{b: b,
		sym: b.Field(0).(*array.StringBuilder), minute: ts(1), price: f(2), open: f(3), high: f(4), low: f(5),
		volume: b.Field(6).(*array.Int64Builder), dayOpen: f(7), dayHigh: f(8), dayLow: f(9), prevClose: f(10),
		change: f(11), changePct: f(12), quoteTime: ts(13), origin: b.Field(14).(*array.StringBuilder), fetched: ts(15)}
}

func ms(t time.Time) arrow.Timestamp { return arrow.Timestamp(t.UnixMilli()) }

func optional(b *array.Float64Builder, v *float64) {
	if v == nil {
		b.AppendNull()
		return
	}
	b.Append(*v)
}

func (s *Source) liveRecord(sym string, slot time.Time, q *Quote) (arrow.Record, error) {
	if !(q.C > 0) {
		return nil, fmt.Errorf("finnhub: /quote %s: %w: price c=%v", sym, ErrMalformed, q.C)
	}
	if q.T <= 0 || q.T > s.c.clock.Now().Add(24*time.Hour).Unix() {
		// Not a trade time: stored, it would overflow quote_time.
		return nil, fmt.Errorf("finnhub: /quote %s: %w: trade time t=%d", sym, ErrMalformed, q.T)
	}
	r := s.newRows()
	defer r.b.Release()
	r.sym.Append(sym)
	r.minute.Append(ms(s.ds.Slot(slot)))
	r.price.Append(q.C)
	r.open.AppendNull()
	r.high.AppendNull()
	r.low.AppendNull()
	r.volume.AppendNull()
	r.dayOpen.Append(q.O)
	r.dayHigh.Append(q.H)
	r.dayLow.Append(q.L)
	r.prevClose.Append(q.PC)
	optional(r.change, q.D)
	optional(r.changePct, q.DP)
	r.quoteTime.Append(ms(q.Time()))
	r.origin.Append(OriginLive)
	r.fetched.Append(ms(s.c.clock.Now()))
	return r.b.NewRecord(), nil
}

func (s *Source) candleRecord(sym string, w heal.Window, cs *Candles) (arrow.Record, error) {
	r := s.newRows()
	defer r.b.Release()
	now := ms(s.c.clock.Now())
	for i, t := range cs.T {
		bar := time.Unix(t, 0).UTC()
		if !w.Contains(bar) {
			continue // Finnhub's bounds are inclusive and not always honoured
		}
		if !(cs.O[i] > 0 && cs.H[i] > 0 && cs.L[i] > 0 && cs.C[i] > 0) || !(cs.V[i] >= 0 && cs.V[i] < 1<<62) {
			// Not a bar: stored, a volume out of range would overflow int64.
			return nil, fmt.Errorf("finnhub: /stock/candle %s: %w: bar at %s has o=%v h=%v l=%v c=%v v=%v",
				sym, ErrMalformed, bar.Format(time.RFC3339), cs.O[i], cs.H[i], cs.L[i], cs.C[i], cs.V[i])
		}
		r.sym.Append(sym)
		r.minute.Append(ms(s.ds.Slot(bar)))
		r.price.Append(cs.C[i])
		r.open.Append(cs.O[i])
		r.high.Append(cs.H[i])
		r.low.Append(cs.L[i])
		r.volume.Append(int64(cs.V[i]))
		for _, b := range []*array.Float64Builder{r.dayOpen, r.dayHigh, r.dayLow, r.prevClose, r.change, r.changePct} {
			b.AppendNull()
		}
		r.quoteTime.Append(ms(bar))
		r.origin.Append(OriginRepaired)
		r.fetched.Append(now)
	}
	return r.b.NewRecord(), nil
}
