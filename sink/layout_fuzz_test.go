package sink

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/memory"

	"github.com/selfheal/heal"
)

// Fuzz targets of the Hive layout: key escaping, period values and the
// parsing of listed names. Seed corpora are in testdata/fuzz; CI runs each
// target briefly (scripts/fuzz).

func fuzzDataset(period uint8) *heal.Dataset {
	return &heal.Dataset{Name: "quotes", Key: "symbol", Grain: time.Minute, Partition: heal.Period(period % 3)}
}

// FuzzPartitionPath: for any key and time, the escaped key is one path
// element of plain bytes and canonical %XX, unescapes to the key, and the
// partition's directory parses back to the same partition; a key that
// heal.ValidKey refuses, or a time the layout cannot name, is never given
// a directory that reads back as something else.
func FuzzPartitionPath(f *testing.F) {
	for _, k := range []string{"AAPL", "BINANCE:BTCUSDT", "../../etc", "a/b", "", "\x00", "..", ".", "%41", "a%2Fb",
		"é", "\xff", "=", "symbol=X", strings.Repeat("x", 256), strings.Repeat("é", 128)} {
		f.Add(k, int64(1709510400), uint8(0))
	}
	f.Add("AAPL", int64(-62135596800), uint8(0)) // 0001-01-01
	f.Add("AAPL", int64(253402300800), uint8(2)) // 10000-01-01
	f.Add("AAPL", int64(-62167219200), uint8(1)) // year 0
	f.Fuzz(func(t *testing.T, key string, sec int64, period uint8) {
		esc := EscapeKey(key)
		for i := 0; i < len(esc); i++ {
			switch c := esc[i]; {
			case plainByte(c):
			case c == '%' && i+2 < len(esc) && upperHex(esc[i+1]) && upperHex(esc[i+2]):
				i += 2
			default:
				t.Fatalf("EscapeKey(%q) = %q: byte %d is neither plain nor %%XX", key, esc, i)
			}
		}
		back, err := UnescapeKey(esc)
		if err != nil || back != key {
			t.Fatalf("UnescapeKey(EscapeKey(%q)) = %q, %v", key, back, err)
		}
		if k, err := UnescapeKey(key); err == nil && EscapeKey(k) != key {
			t.Fatalf("%q unescapes to %q, which escapes to %q: two directories for one key", key, k, EscapeKey(k))
		}
		if heal.ValidKey(key) != nil {
			return
		}
		ds := fuzzDataset(period)
		p := ds.PartitionOf(key, time.Unix(sec, 0))
		name := partitionDir(ds, p) + "01709510400000000000-0a1b2c3d.parquet"
		if err := validName(name); err != nil {
			t.Fatalf("key %q gives the name %q, which the store refuses: %v", key, name, err)
		}
		got, file, ok, why := parseDataName(ds, name)
		if !ok {
			if p.Start.Year() < 1 || p.Start.Year() > 9999 {
				return // a year Hive values cannot spell: Lake.Write refuses it (TestWriteRefusesUnnameableRows)
			}
			t.Fatalf("%q does not parse back (%s)", name, why)
		}
		if got != p || file != "01709510400000000000-0a1b2c3d.parquet" {
			t.Fatalf("%q parses as %+v %q, want %+v", name, got, file, p)
		}
	})
}

// FuzzParseDataName: whatever a listing yields, a name taken for a data
// file names exactly one partition: it is a valid store name, its key is
// valid, its period start is the period's floor in UTC, and formatting the
// partition gives the name back.
func FuzzParseDataName(f *testing.F) {
	for _, n := range []string{
		"quotes/symbol=AAPL/date=2024-01-02/01717000000000000000-1a2b3c4d.parquet",
		"quotes/symbol=BINANCE%3ABTCUSDT/date=2024-01-02/x.parquet",
		"quotes/symbol=..%2F..%2Fetc/date=2024-01-02/x.parquet",
		"quotes/symbol=%2e%2e/date=2024-01-02/x.parquet",
		"quotes/symbol=A/date=2024-1-2/x.parquet",
		"quotes/symbol=A/date=2024-02-30/x.parquet",
		"quotes/symbol=A/month=2024-02/x.parquet",
		"quotes/symbol=A/year=2024/x.parquet",
		"quotes/symbol=/date=2024-01-02/x.parquet",
		"quotes/symbol=A/date=2024-01-02/_x.parquet",
		"quotes/symbol=A/date=2024-01-02/.tmp-1.parquet",
		"quotes/symbol=A/../date=2024-01-02/x.parquet",
		"quotes/symbol=A%00/date=2024-01-02/x.parquet",
		"_heal/ledger/quotes/1.json",
	} {
		f.Add(n, uint8(0))
	}
	f.Fuzz(func(t *testing.T, name string, period uint8) {
		ds := fuzzDataset(period)
		p, file, ok, _ := parseDataName(ds, name)
		if !ok {
			return
		}
		if err := validName(name); err != nil {
			t.Fatalf("%q parsed as data but is not a store name: %v", name, err)
		}
		if err := heal.ValidKey(p.Key); err != nil {
			t.Fatalf("%q parsed with key %q: %v", name, p.Key, err)
		}
		if !p.Start.Equal(p.Period.Floor(p.Start)) || p.Start.Location() != time.UTC || p.Dataset != ds.Name || p.Period != ds.Partition {
			t.Fatalf("%q parsed as %+v", name, p)
		}
		if strings.ContainsAny(file, "/\x00") || !strings.HasSuffix(file, fileExt) || file[0] == '.' || file[0] == '_' {
			t.Fatalf("%q parsed with file %q", name, file)
		}
		if got := partitionDir(ds, p) + file; got != name {
			t.Fatalf("%q parsed as %+v, which is laid out as %q", name, p, got)
		}
	})
}

// TestWriteRefusesUnnameableRows: rows whose partition the layout cannot
// store so that it reads back (a key too long for a path element once
// escaped, a period outside 1677-09-21..2262-04-11, the instants int64
// nanoseconds count) are refused as input errors and store nothing; they
// used to be written and then never seen again.
func TestWriteRefusesUnnameableRows(t *testing.T) {
	ds := heal.Dataset{Name: "ticks", Key: "symbol", Time: "ts", Grain: time.Minute}
	ds.Schema = arrow.NewSchema([]arrow.Field{
		{Name: "symbol", Type: arrow.BinaryTypes.String},
		{Name: "ts", Type: &arrow.TimestampType{Unit: arrow.Millisecond, TimeZone: "UTC"}},
		{Name: "value", Type: arrow.PrimitiveTypes.Float64},
	}, nil)
	ok := time.Date(2024, 3, 4, 0, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		key   string
		at    time.Time
		field string
	}{
		{strings.Repeat("k", 256), ok, "symbol"},
		{strings.Repeat("é", 128), ok, "symbol"},
		{"A", time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), "ts"},
		{"A", time.Date(2263, 1, 1, 0, 0, 0, 0, time.UTC), "ts"},
		{"A", time.Date(2262, 4, 11, 0, 0, 0, 0, time.UTC), "ts"}, // the day ends after the last instant
		{"A", time.Date(1677, 9, 21, 0, 0, 0, 0, time.UTC), "ts"},
		{"A", time.Date(0, 12, 31, 0, 0, 0, 0, time.UTC), "ts"},
	} {
		dir := t.TempDir()
		lake, err := OpenDir(dir, nil)
		if err != nil {
			t.Fatal(err)
		}
		b := array.NewRecordBuilder(memory.DefaultAllocator, ds.Schema)
		b.Field(0).(*array.StringBuilder).AppendValues([]string{"B", c.key}, nil)
		b.Field(1).(*array.TimestampBuilder).AppendValues([]arrow.Timestamp{arrow.Timestamp(ok.UnixMilli()), arrow.Timestamp(c.at.UnixMilli())}, nil)
		b.Field(2).(*array.Float64Builder).AppendValues([]float64{1, 2}, nil)
		rec := b.NewRecord()
		b.Release()
		err = lake.Write(context.Background(), &ds, rec)
		rec.Release()
		var ie *heal.InputError
		if !errors.As(err, &ie) || ie.Field != c.field || ie.Row != 1 {
			t.Errorf("key of %d bytes at %s: Write = %v; want an InputError on %s row 1", len(c.key), c.at, err, c.field)
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 0 {
			t.Errorf("key of %d bytes at %s: the refused write stored %d entries", len(c.key), c.at, len(entries))
		}
	}
	// The longest key that fits is stored and read back.
	key := strings.Repeat("k", maxElement-len("symbol="))
	lake, err := OpenDir(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	b := array.NewRecordBuilder(memory.DefaultAllocator, ds.Schema)
	defer b.Release()
	b.Field(0).(*array.StringBuilder).Append(key)
	b.Field(1).(*array.TimestampBuilder).Append(arrow.Timestamp(time.Date(2262, 4, 10, 23, 59, 0, 0, time.UTC).UnixMilli()))
	b.Field(2).(*array.Float64Builder).Append(1)
	rec := b.NewRecord()
	defer rec.Release()
	if err := lake.Write(context.Background(), &ds, rec); err != nil {
		t.Fatal(err)
	}
	n := 0
	if err := lake.Inventory(context.Background(), &ds, heal.Query{}, func(p heal.PartitionInfo) error { n += p.Present.Count(); return nil }); err != nil || n != 1 {
		t.Errorf("the longest key on the last whole day: %d rows visible, %v", n, err)
	}
}
