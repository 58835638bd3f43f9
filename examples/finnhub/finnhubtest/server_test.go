package finnhubtest

import (
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"
)

type fixed struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fixed) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fixed) After(d time.Duration) <-chan time.Time {
	ch := make(chan time.Time, 1)
	ch <- c.Now().Add(d)
	return ch
}

// Tuesday 2025-03-04, 11:42:20 New York time.
var now = time.Date(2025, 3, 4, 16, 42, 20, 0, time.UTC)

func get(t *testing.T, url, token string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if token != "" {
		req.Header.Set("X-Finnhub-Token", token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func TestWireFormat(t *testing.T) {
	s := NewServer(&Options{Clock: &fixed{t: now}})
	defer s.Close()
	tests := []struct {
		name, path, token string
		status            int
		body              string // regexp
	}{
		{"quote", "/quote?symbol=AAPL", Token, 200, `^\{"c":[0-9.]+,"d":-?[0-9.]+,"dp":-?[0-9.]+,"h":[0-9.]+,"l":[0-9.]+,"o":[0-9.]+,"pc":[0-9.]+,"t":[0-9]+\}$`},
		{"unknown symbol", "/quote?symbol=ZZZZ", Token, 200, `^\{"c":0,"d":null,"dp":null,"h":0,"l":0,"o":0,"pc":0,"t":0\}$`},
		{"candles", "/stock/candle?symbol=AAPL&resolution=1&from=1741099800&to=1741100100", Token, 200,
			`^\{"c":\[[0-9.,]+\],"h":\[[0-9.,]+\],"l":\[[0-9.,]+\],"o":\[[0-9.,]+\],"s":"ok","t":\[[0-9,]+\],"v":\[[0-9,]+\]\}$`},
		{"night", "/stock/candle?symbol=AAPL&resolution=1&from=1741060800&to=1741064400", Token, 200, `^\{"s":"no_data"\}$`},
		{"future", "/stock/candle?symbol=AAPL&resolution=1&from=1741110000&to=1741120000", Token, 200, `^\{"s":"no_data"\}$`},
		{"no key", "/quote?symbol=AAPL", "", 401, `^\{"error":"Please use an API key\."\}$`},
		{"bad key", "/quote?symbol=AAPL", "nope", 401, `^\{"error":"Invalid API key\."\}$`},
		{"free key candles", "/stock/candle?symbol=AAPL&resolution=1&from=1741099800&to=1741100100", FreeToken, 403,
			`^\{"error":"You don't have access to this resource\."\}$`},
		{"query token", "/quote?symbol=AAPL&token=" + Token, "", 200, `^\{"c"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := get(t, s.URL+tc.path, tc.token)
			if resp.StatusCode != tc.status || !regexp.MustCompile(tc.body).MatchString(body) {
				t.Errorf("%d %s, want %d %s", resp.StatusCode, body, tc.status, tc.body)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json; charset=utf-8" {
				t.Errorf("content type %q", ct)
			}
			if resp.Header.Get("X-Ratelimit-Limit") != "60" || resp.Header.Get("X-Ratelimit-Reset") != strconv.FormatInt(now.Truncate(time.Minute).Add(time.Minute).Unix(), 10) {
				t.Errorf("headers %v", resp.Header)
			}
		})
	}
	if c := s.Counters(); c.TokenInQuery != 1 || c.Calls["/quote"] != 5 {
		t.Errorf("counters %+v", c)
	}
}

func TestMarketDeterministic(t *testing.T) {
	a, b := NewMarket(42), NewMarket(42)
	day := time.Date(2025, 3, 4, 0, 0, 0, 0, time.UTC)
	x, y := a.Bars("MSFT", day, day.Add(24*time.Hour)), b.Bars("MSFT", day, day.Add(24*time.Hour))
	if len(x) != len(y) || len(x) == 0 {
		t.Fatalf("%d vs %d bars", len(x), len(y))
	}
	for i := range x {
		if x[i] != y[i] {
			t.Fatalf("bar %d differs: %+v %+v", i, x[i], y[i])
		}
	}
	if c := NewMarket(43).Bars("MSFT", day, day.Add(24*time.Hour)); c[0] == x[0] {
		t.Error("another seed gives the same market")
	}
	// Regular session 14:30–21:00 UTC: mostly traded, some holes; extended hours sparse.
	reg, ext := 0, 0
	for _, bar := range x {
		if h := bar.T.Hour()*60 + bar.T.Minute(); h >= 14*60+30 && h < 21*60 {
			reg++
		} else {
			ext++
		}
		if bar.L > min(bar.O, bar.C) || bar.H < max(bar.O, bar.C) {
			t.Fatalf("bar %+v: high/low do not bound open/close", bar)
		}
	}
	if reg < 370 || reg >= 390 || ext < 100 || ext > 350 {
		t.Errorf("%d regular bars of 390, %d extended of 570", reg, ext)
	}
	// Saturday (from Friday's 20:00 ET close of after-hours): nothing.
	// Crypto: around the clock.
	sat := day.AddDate(0, 0, 4).Add(5 * time.Hour)
	if n := len(a.Bars("MSFT", sat, sat.Add(24*time.Hour))); n != 0 {
		t.Errorf("%d bars on a Saturday", n)
	}
	if n := len(a.Bars(CryptoSymbol, day.AddDate(0, 0, 4), day.AddDate(0, 0, 5))); n < 1300 {
		t.Errorf("%d crypto bars on a Saturday", n)
	}
	// A quote before the open carries the previous day's last trade.
	q, ok := a.QuoteAt("MSFT", day.Add(8*time.Hour))                    // 03:00 ET
	prev := a.Bars("MSFT", day.AddDate(0, 0, -1), day.Add(8*time.Hour)) // Monday's after-hours end 01:00 UTC
	if !ok || q.C != prev[len(prev)-1].C {
		t.Errorf("pre-dawn quote %+v, want the last close %+v", q, prev[len(prev)-1])
	}
}

func TestCountersAndLimits(t *testing.T) {
	clk := &fixed{t: now}
	s := NewServer(&Options{Clock: clk, PerSecond: 3, PerMinute: 5})
	defer s.Close()
	codes := map[int]int{}
	for i := 0; i < 4; i++ {
		resp, _ := get(t, s.URL+"/quote?symbol=AAPL", Token)
		codes[resp.StatusCode]++
	}
	clk.mu.Lock()
	clk.t = now.Add(2 * time.Second)
	clk.mu.Unlock()
	for i := 0; i < 3; i++ {
		resp, _ := get(t, s.URL+"/quote?symbol=AAPL", Token)
		codes[resp.StatusCode]++
	}
	// At :20, 3 pass and the 4th exceeds 3/s. At :22 the minute window
	// already counts 4 calls (refused ones count too), so one more passes
	// and two exceed 5/min.
	if codes[200] != 4 || codes[429] != 3 {
		t.Errorf("codes %v", codes)
	}
	c := s.Counters()
	if c.MaxPerSecond != 4 || c.MaxPerMinute != 7 || c.RateLimited != 3 || c.Status[429] != 3 {
		t.Errorf("counters %+v", c)
	}
	s.FailNext(2, 503, 0)
	for i := 0; i < 2; i++ {
		clk.mu.Lock()
		clk.t = clk.t.Add(time.Minute)
		clk.mu.Unlock()
		resp, body := get(t, s.URL+"/quote?symbol=AAPL", Token)
		var e struct{ Error string }
		if resp.StatusCode != 503 || json.Unmarshal([]byte(body), &e) != nil || e.Error == "" {
			t.Errorf("forced 503: %d %s", resp.StatusCode, body)
		}
	}
	if c := s.Counters(); c.Injected != 2 {
		t.Errorf("injected %d", c.Injected)
	}
}
