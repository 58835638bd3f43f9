package cost

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// Prices is the price table that turns counts into US dollars. The zero
// value prices everything at nothing; start from [DefaultPrices].
type Prices struct {
	// Lake requests, per 1,000, as S3 Standard bills them. PUT, COPY, POST
	// and LIST share a tier; GET and HEAD share the other; DELETE is free.
	PutPer1000    float64
	GetPer1000    float64
	ListPer1000   float64
	DeletePer1000 float64
	// StorageGBMonth is the price of storing one GB (2^30 bytes) for a
	// month (730 hours).
	StorageGBMonth float64
	// CPUHour is the price of one vCPU busy for an hour.
	CPUHour float64
	// SourceMonthly is the source's subscription per month (30 days),
	// charged for the time metered and split between the stages by their
	// share of the calls.
	SourceMonthly float64
	// SourcePerCall is the price of one source call, for metered APIs.
	SourcePerCall float64
}

// DefaultPrices returns public list prices, as of 2026:
//
//   - S3 Standard, US East (N. Virginia), https://aws.amazon.com/s3/pricing/:
//     PUT, COPY, POST, LIST $0.005 per 1,000 requests; GET, SELECT and all
//     other requests $0.0004 per 1,000; DELETE free; storage $0.023 per
//     GB-month (first 50 TB).
//   - Compute: AWS Fargate, Linux/x86, US East (N. Virginia),
//     https://aws.amazon.com/fargate/pricing/: $0.04048 per vCPU-hour
//     (memory, $0.004445 per GB-hour, is not counted). For Lambda, set
//     CPUHour to its GB-second price times 3,600 times the GB that come
//     with one vCPU (1,769 MB ≈ 1.73 GB: $0.0000166667 × 3,600 × 1.73 ≈
//     $0.104; https://aws.amazon.com/lambda/pricing/).
//   - Source: Finnhub's free plan, https://finnhub.io/pricing: $0 a month
//     and per call, 60 calls a minute. Its stock candles (the repair path of
//     examples/finnhub) need a paid market-data plan, whose price changes
//     often and is not built in: set SourceMonthly (flag source-month=) to
//     the plan you pay for.
func DefaultPrices() Prices {
	return Prices{
		PutPer1000:     0.005,
		GetPer1000:     0.0004,
		ListPer1000:    0.005,
		DeletePer1000:  0,
		StorageGBMonth: 0.023,
		CPUHour:        0.04048,
		SourceMonthly:  0,
		SourcePerCall:  0,
	}
}

// priceNames maps the names [Prices.Set] reads to fields.
func (p *Prices) fields() map[string]*float64 {
	return map[string]*float64{
		"put":          &p.PutPer1000,
		"get":          &p.GetPer1000,
		"list":         &p.ListPer1000,
		"delete":       &p.DeletePer1000,
		"gb-month":     &p.StorageGBMonth,
		"cpu-hour":     &p.CPUHour,
		"source-month": &p.SourceMonthly,
		"source-call":  &p.SourcePerCall,
	}
}

// PriceNames returns the names [Prices.Set] reads, sorted: put, get, list
// and delete (per 1,000 requests), gb-month, cpu-hour, source-month and
// source-call.
func PriceNames() []string {
	var p Prices
	var out []string
	for k := range p.fields() {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Set overrides prices from a comma-separated list of name=value pairs in
// US dollars, e.g. "source-month=49.99,cpu-hour=0.05" (see [PriceNames]).
// It implements flag.Value with [Prices.String], so a *Prices can be a
// flag. On error nothing is changed.
func (p *Prices) Set(spec string) error {
	next := *p
	f := next.fields()
	for _, kv := range strings.Split(spec, ",") {
		kv = strings.TrimSpace(kv)
		if kv == "" {
			continue
		}
		name, val, ok := strings.Cut(kv, "=")
		if !ok {
			return fmt.Errorf("heal/cost: price %q: want name=value", kv)
		}
		dst := f[strings.TrimSpace(name)]
		if dst == nil {
			return fmt.Errorf("heal/cost: unknown price %q: want one of %s", name, strings.Join(PriceNames(), ", "))
		}
		v, err := strconv.ParseFloat(strings.TrimPrefix(strings.TrimSpace(val), "$"), 64)
		if err != nil || v < 0 {
			return fmt.Errorf("heal/cost: price %s=%q: want a non-negative number of dollars", name, val)
		}
		*dst = v
	}
	*p = next
	return nil
}

// String lists every price as Set reads them.
func (p *Prices) String() string {
	if p == nil {
		return ""
	}
	f := p.fields()
	var parts []string
	for _, k := range PriceNames() {
		parts = append(parts, k+"="+strconv.FormatFloat(*f[k], 'g', -1, 64))
	}
	return strings.Join(parts, ",")
}

// requests prices lake requests by kind.
func (p Prices) requests(r map[Request]int64) float64 {
	return float64(r[Put])*p.PutPer1000/1000 + float64(r[Get])*p.GetPer1000/1000 +
		float64(r[List])*p.ListPer1000/1000 + float64(r[Delete])*p.DeletePer1000/1000
}
