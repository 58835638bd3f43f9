package sink

import (
	"encoding/base64"
	"fmt"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/selfheal/heal"
	"github.com/selfheal/heal/healtest"
)

func TestEscapeKey(t *testing.T) {
	for _, c := range []struct{ key, esc string }{
		{"AAPL", "AAPL"},
		{"BINANCE:BTCUSDT", "BINANCE%3ABTCUSDT"},
		{"a/b", "a%2Fb"},
		{"../../etc", "..%2F..%2Fetc"},
		{"x=y", "x%3Dy"},
		{"%2F", "%252F"},
		{"a b", "a%20b"},
		{"a.b_c-d", "a.b_c-d"},
		{"日", "%E6%97%A5"},
	} {
		if got := EscapeKey(c.key); got != c.esc {
			t.Errorf("EscapeKey(%q) = %q, want %q", c.key, got, c.esc)
		}
		if got, err := UnescapeKey(c.esc); err != nil || got != c.key {
			t.Errorf("UnescapeKey(%q) = %q, %v", c.esc, got, err)
		}
	}
	for _, bad := range []string{"a%2fb", "a%41", "a%2", "a%", "a/b", "a b", "a:b"} {
		if k, err := UnescapeKey(bad); err == nil {
			t.Errorf("UnescapeKey(%q) = %q, want an error (not canonical)", bad, k)
		}
	}
}

func TestSeq(t *testing.T) {
	re := regexp.MustCompile(`^[0-9]{20}-[0-9a-f]{8}$`)
	var mu sync.Mutex
	seen := map[string]bool{}
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			prev := ""
			for i := 0; i < 2000; i++ {
				s := nextSeq()
				if !re.MatchString(s) || seqOf(s+".parquet") != s {
					t.Errorf("bad seq %q", s)
					return
				}
				if s[:20] <= prev {
					t.Errorf("seq not increasing: %s after %s", s, prev)
					return
				}
				prev = s[:20]
				mu.Lock()
				if seen[s[:20]] {
					t.Errorf("seq %s repeated", s)
				}
				seen[s[:20]] = true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	for _, name := range []string{"part-0.parquet", "0000-x.parquet", "01717000000000000000-1a2b3c4d.txt", "01717000000000000000-1A2B3C4D.parquet", "01717000000000000000-1a2b3c4d.x.parquet"} {
		if seqOf(name) != "" {
			t.Errorf("seqOf(%q) = %q, want foreign", name, seqOf(name))
		}
	}
	if s := seqOf("01717000000000000000-1a2b3c4d.c0badf00.parquet"); s != "01717000000000000000-1a2b3c4d" {
		t.Errorf("compacted name: seq %q", s)
	}
}

func TestParseDataName(t *testing.T) {
	ds := healtest.QuotesDataset()
	good := "quotes/symbol=BINANCE%3ABTCUSDT/date=2024-01-02/01717000000000000000-1a2b3c4d.parquet"
	p, f, ok, _ := parseDataName(ds, good)
	if !ok || p.Key != "BINANCE:BTCUSDT" || !p.Start.Equal(time.Date(2024, 1, 2, 0, 0, 0, 0, time.UTC)) || f != "01717000000000000000-1a2b3c4d.parquet" {
		t.Fatalf("parseDataName(%s) = %+v %q %v", good, p, f, ok)
	}
	if PartitionPath(ds, p)+f != good {
		t.Fatalf("PartitionPath round trip: %s", PartitionPath(ds, p))
	}
	for _, name := range []string{
		"quotes/symbol=A/date=2024-01-02/.tmp-1",
		"quotes/symbol=A/date=2024-01-02/_SUCCESS",
		"quotes/symbol=A/date=2024-01-02/x.json",
		"quotes/symbol=A/date=2024-1-2/x.parquet",
		"quotes/symbol=A/month=2024-01/x.parquet",
		"quotes/ticker=A/date=2024-01-02/x.parquet",
		"quotes/symbol=a%2fb/date=2024-01-02/x.parquet",
		"quotes/symbol=../date=2024-01-02/x.parquet",
		"quotes/symbol=%2E%2E/date=2024-01-02/x.parquet",
		"quotes/symbol=A/date=2024-01-02/sub/x.parquet",
		"quotes/_heal/x/y.parquet",
		"quotesx/symbol=A/date=2024-01-02/x.parquet",
	} {
		if _, _, ok, _ := parseDataName(ds, name); ok {
			t.Errorf("parseDataName(%s) accepted it", name)
		}
	}
}

func TestIndex(t *testing.T) {
	ds := healtest.QuotesDataset()
	p := ds.PartitionOf("A", time.Date(2024, 1, 2, 0, 0, 0, 0, time.UTC))
	s := heal.NewSlots(p.Window(), ds.Grain)
	for _, m := range []int{0, 5, 1439} {
		s.Add(p.Start.Add(time.Duration(m) * time.Minute))
	}
	sv, rv, cv, err := encodeIndex(s, 3)
	if err != nil {
		t.Fatal(err)
	}
	md := map[string]string{mdSlots: sv, mdRows: rv, mdCRC: cv}
	get := func(m map[string]string) func(string) *string {
		return func(k string) *string {
			if v, ok := m[k]; ok {
				return &v
			}
			return nil
		}
	}
	got, _, ok := decodeIndex(ds, p, get(md), 3)
	if !ok || got.Count() != 3 || !got.Has(p.Start.Add(5*time.Minute)) {
		t.Fatalf("decodeIndex = %v, %v", got.Count(), ok)
	}
	if _, _, ok := decodeIndex(ds, p, get(md), 4); ok {
		t.Fatal("index accepted for a file with another row count")
	}
	other := ds.PartitionOf("A", time.Date(2024, 1, 3, 0, 0, 0, 0, time.UTC))
	if _, _, ok := decodeIndex(ds, other, get(md), 3); ok {
		t.Fatal("index accepted for another partition")
	}
	coarse := *ds
	coarse.Grain = time.Hour
	if _, _, ok := decodeIndex(&coarse, p, get(md), 3); ok {
		t.Fatal("index accepted for another grain")
	}
	for _, k := range []string{mdSlots, mdRows, mdCRC} {
		bad := map[string]string{mdSlots: sv, mdRows: rv, mdCRC: cv}
		switch k {
		case mdRows:
			bad[k] = "30"
		case mdCRC:
			bad[k] = fmt.Sprintf("%08x", ^crc32Of(cv))
		case mdSlots:
			s2 := s.Clone()
			s2.Add(p.Start.Add(time.Minute))
			b, _ := s2.MarshalBinary()
			bad[k] = base64.StdEncoding.EncodeToString(b)
		}
		if _, _, ok := decodeIndex(ds, p, get(bad), 3); ok {
			t.Fatalf("index accepted with %s tampered", k)
		}
		delete(bad, k)
		if _, _, ok := decodeIndex(ds, p, get(bad), 3); ok {
			t.Fatalf("index accepted without %s", k)
		}
	}
}

func crc32Of(hex string) uint32 {
	v, _ := strconv.ParseUint(hex, 16, 32)
	return uint32(v)
}
