package finnhub_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/memory"

	"github.com/selfheal/heal"
	"github.com/selfheal/heal/examples/finnhub/finnhub"
)

// The fuzz targets feed arbitrary bodies to the Source through the real
// Client (an in-process transport answers every request with the body),
// and check what the engine relies on: no panic; either an error the
// engine can classify, or a record of the Quotes schema whose rows all
// belong to the request and carry sane values; the token never in an
// error. Seed corpora are in testdata/fuzz; CI runs each target briefly
// (scripts/fuzz).

const fuzzToken = "fuzz-token-5ecret"

// canned answers every request with one status and body.
type canned struct {
	status int
	body   []byte
}

func (c canned) RoundTrip(r *http.Request) (*http.Response, error) {
	return &http.Response{StatusCode: c.status, Header: http.Header{"Content-Type": {"application/json"}},
		Body: io.NopCloser(bytes.NewReader(c.body)), Request: r}, nil
}

func fuzzSource(t *testing.T, status int, body []byte, mem memory.Allocator) *finnhub.Source {
	c, err := finnhub.NewClient(&finnhub.Options{Token: fuzzToken, BaseURL: "http://finnhub.invalid/api/v1",
		HTTPClient: &http.Client{Transport: canned{status, body}}, Clock: &clock{t: tuesday}, MaxBody: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	return finnhub.NewSource(c, &finnhub.SourceOptions{Allocator: mem})
}

// checkFetch checks the result of one Fetch.
func checkFetch(t *testing.T, req heal.Request, rec arrow.Record, err error) {
	t.Helper()
	if err != nil {
		if strings.Contains(err.Error(), fuzzToken) {
			t.Fatalf("the token leaked into an error: %v", err)
		}
		if !errors.Is(err, finnhub.ErrMalformed) && !errors.Is(err, finnhub.ErrSymbolNotFound) && !errors.Is(err, heal.ErrNoData) &&
			!heal.IsPermanent(err) && !errors.As(err, new(*finnhub.APIError)) {
			t.Fatalf("unclassified error: %v", err)
		}
		return
	}
	defer rec.Release()
	ds := finnhub.Quotes()
	if err := ds.Check(rec); err != nil {
		t.Fatalf("record refused by the dataset: %v", err)
	}
	col := func(name string) arrow.Array { return rec.Column(rec.Schema().FieldIndices(name)[0]) }
	minutes := col(finnhub.ColMinute).(*array.Timestamp)
	price := col(finnhub.ColPrice).(*array.Float64)
	qt := col(finnhub.ColQuoteTime).(*array.Timestamp)
	for i := 0; i < int(rec.NumRows()); i++ {
		m := minutes.Value(i).ToTime(arrow.Millisecond)
		if !req.Window.Contains(m) {
			t.Fatalf("row %d at %s outside the requested %s", i, m, req.Window)
		}
		if p := price.Value(i); math.IsInf(p, 0) {
			t.Fatalf("row %d: price %v", i, p)
		}
		if !(price.Value(i) > 0) {
			t.Fatalf("row %d: price %v", i, price.Value(i))
		}
		if vol := col(finnhub.ColVolume).(*array.Int64); vol.IsValid(i) && vol.Value(i) < 0 {
			t.Fatalf("row %d: volume %d (an overflowed conversion?)", i, vol.Value(i))
		}
		if q := qt.Value(i).ToTime(arrow.Millisecond); q.Year() < 1970 || q.Year() > 2200 {
			t.Fatalf("row %d: quote_time %s (an overflowed timestamp)", i, q)
		}
	}
}

func FuzzQuote(f *testing.F) {
	for _, s := range []string{
		`{"c":261.74,"d":-2.01,"dp":-0.7621,"h":263.31,"l":260.68,"o":261.07,"pc":263.75,"t":1741102800}`,
		`{"c":0,"d":null,"dp":null,"h":0,"l":0,"o":0,"pc":0,"t":0}`,
		`{"c":261.74,"pc":263.75}`,
		`{"c":261.74,"d":null,"dp":null,"h":1,"l":1,"o":1,"pc":1,"t":1741102800} {}`,
		`{"c":-1,"pc":1,"t":1}`,
		`{"c":1e308,"pc":1,"t":9223372036854775807}`,
		`{"c":1,"pc":1,"t":-62135596800}`,
		`<html>502</html>`,
		`{"c":261.7`,
		`{"error":"Invalid API key fuzz-token-5ecret"}`,
		`[]`, `null`, ``,
	} {
		f.Add(200, []byte(s))
	}
	f.Add(429, []byte(`{"error":"API limit reached"}`))
	f.Add(403, []byte(`{"error":"You don't have access to this resource. fuzz-token-5ecret"}`))
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		if status < 100 || status > 599 {
			status = 200
		}
		mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
		defer mem.AssertSize(t, 0)
		slot := tuesday.Truncate(time.Minute)
		req := heal.Request{Keys: []string{"AAPL"}, Window: heal.NewWindow(slot, slot.Add(time.Minute)), Live: true}
		rec, err := fuzzSource(t, status, body, mem).Fetch(context.Background(), req)
		if err == nil && status != 200 {
			t.Fatalf("HTTP %d answered with a record", status)
		}
		checkFetch(t, req, rec, err)
		if err == nil && rec.NumRows() != 1 {
			t.Fatalf("a live quote gave %d rows", rec.NumRows())
		}
	})
}

func FuzzCandles(f *testing.F) {
	// Bars of 2025-03-04 15:00-15:05 UTC.
	for _, s := range []string{
		`{"c":[1,2,3],"h":[1,2,3],"l":[1,2,3],"o":[1,2,3],"s":"ok","t":[1741100400,1741100460,1741100520],"v":[10,20,30]}`,
		`{"c":[1,2],"h":[1,2,3],"l":[1,2,3],"o":[1,2,3],"s":"ok","t":[1741100400,1741100460,1741100520],"v":[10,20,30]}`,
		`{"s":"no_data"}`,
		`{"c":[1],"h":[1],"l":[1],"o":[1],"s":"ok","t":[1741100430],"v":[1]}`,
		`{"c":[1],"h":[1],"l":[1],"o":[1],"s":"ok","t":[1741100400],"v":[1e300]}`,
		`{"c":[1],"h":[1],"l":[1],"o":[1],"s":"ok","t":[99999999999999],"v":[1]}`,
		`{"c":[1,1],"h":[1,1],"l":[1,1],"o":[1,1],"s":"ok","t":[1741100400,1741100400],"v":[1,1]}`,
		`{"c":[],"h":[],"l":[],"o":[],"s":"ok","t":[],"v":[]}`,
		`{"s":"weird"}`,
		`{"c":[1,2,3],"h":[1,2,3],"l":[1,2,3],"o":[1,2,3],"s":"ok","t":[1741100400,1741100460,17411`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
		defer mem.AssertSize(t, 0)
		from := time.Date(2025, 3, 4, 15, 0, 0, 0, time.UTC)
		req := heal.Request{Keys: []string{"AAPL"}, Window: heal.NewWindow(from, from.Add(5*time.Minute))}
		rec, err := fuzzSource(t, 200, body, mem).Fetch(context.Background(), req)
		checkFetch(t, req, rec, err)
	})
}
