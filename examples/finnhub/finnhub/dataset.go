package finnhub

import (
	"time"

	"github.com/apache/arrow/go/v17/arrow"

	"github.com/selfheal/heal"
)

// Origins of a row of the quotes dataset.
const (
	OriginLive     = "live"     // polled from /quote at the minute it describes
	OriginRepaired = "repaired" // filled later from a /stock/candle bar
)

// Timestamp is the Arrow type of every time column: milliseconds, UTC
// (Parquet has no second unit, so this round-trips exactly).
var Timestamp = &arrow.TimestampType{Unit: arrow.Millisecond, TimeZone: "UTC"}

// The columns of [Quotes], in order.
const (
	ColSymbol    = "symbol"
	ColMinute    = "minute"
	ColPrice     = "price"
	ColOpen      = "open"
	ColHigh      = "high"
	ColLow       = "low"
	ColVolume    = "volume"
	ColDayOpen   = "day_open"
	ColDayHigh   = "day_high"
	ColDayLow    = "day_low"
	ColPrevClose = "prev_close"
	ColChange    = "change"
	ColChangePct = "change_pct"
	ColQuoteTime = "quote_time"
	ColOrigin    = "origin"
	ColFetchedAt = "fetched_at"
)

var quotesSchema = arrow.NewSchema([]arrow.Field{
	{Name: ColSymbol, Type: arrow.BinaryTypes.String},
	{Name: ColMinute, Type: Timestamp},
	{Name: ColPrice, Type: arrow.PrimitiveTypes.Float64},
	{Name: ColOpen, Type: arrow.PrimitiveTypes.Float64, Nullable: true},
	{Name: ColHigh, Type: arrow.PrimitiveTypes.Float64, Nullable: true},
	{Name: ColLow, Type: arrow.PrimitiveTypes.Float64, Nullable: true},
	{Name: ColVolume, Type: arrow.PrimitiveTypes.Int64, Nullable: true},
	{Name: ColDayOpen, Type: arrow.PrimitiveTypes.Float64, Nullable: true},
	{Name: ColDayHigh, Type: arrow.PrimitiveTypes.Float64, Nullable: true},
	{Name: ColDayLow, Type: arrow.PrimitiveTypes.Float64, Nullable: true},
	{Name: ColPrevClose, Type: arrow.PrimitiveTypes.Float64, Nullable: true},
	{Name: ColChange, Type: arrow.PrimitiveTypes.Float64, Nullable: true},
	{Name: ColChangePct, Type: arrow.PrimitiveTypes.Float64, Nullable: true},
	{Name: ColQuoteTime, Type: Timestamp},
	{Name: ColOrigin, Type: arrow.BinaryTypes.String},
	{Name: ColFetchedAt, Type: Timestamp},
}, nil)

// Quotes describes the raw dataset "quotes": one row per symbol and minute,
// partitioned by symbol and (UTC) day, laid out as
// quotes/symbol=AAPL/date=2025-03-10/*.parquet. Its columns:
//
//	symbol      utf8        the ticker, the dataset's key
//	minute      timestamp   the slot: the minute the poll was scheduled for (live), the bar start (repaired)
//	price       float64     quote c (live) or candle close (repaired)
//	open        float64?    candle open, high, low of the minute; null for live rows
//	high        float64?      (a quote has only the day's values)
//	low         float64?
//	volume      int64?      candle volume; null for live rows
//	day_open    float64?    quote o, h, l, pc, d, dp; null for repaired rows,
//	day_high    float64?      and d, dp null when Finnhub sends null
//	day_low     float64?
//	prev_close  float64?
//	change      float64?
//	change_pct  float64?    percent: 0.58 means +0.58 %
//	quote_time  timestamp   quote t, the last trade (it lags minute by tens of seconds); the bar start for repaired rows
//	origin      utf8        "live" or "repaired"
//	fetched_at  timestamp   when the row was fetched (the source's clock)
//
// Every time is UTC with millisecond unit.
func Quotes() *heal.Dataset {
	return &heal.Dataset{
		Name:      "quotes",
		Schema:    quotesSchema,
		Key:       ColSymbol,
		Time:      ColMinute,
		Grain:     time.Minute,
		Partition: heal.PeriodDay,
	}
}
