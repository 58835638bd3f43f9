package sink

import (
	"context"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/memory"

	"github.com/selfheal/heal"
)

func wideDataset() *heal.Dataset {
	return &heal.Dataset{
		Name: "wide",
		Schema: arrow.NewSchema([]arrow.Field{
			{Name: "sym", Type: arrow.BinaryTypes.String},
			{Name: "t", Type: &arrow.TimestampType{Unit: arrow.Nanosecond, TimeZone: "UTC"}},
			{Name: "f", Type: arrow.PrimitiveTypes.Float64, Nullable: true},
			{Name: "f32", Type: arrow.PrimitiveTypes.Float32, Nullable: true},
			{Name: "i", Type: arrow.PrimitiveTypes.Int64, Nullable: true},
			{Name: "u", Type: arrow.PrimitiveTypes.Uint64, Nullable: true},
			{Name: "b", Type: arrow.FixedWidthTypes.Boolean, Nullable: true},
			{Name: "d", Type: arrow.FixedWidthTypes.Date32, Nullable: true},
			{Name: "s", Type: arrow.BinaryTypes.String, Nullable: true},
		}, nil),
		Key: "sym", Time: "t", Grain: time.Second,
	}
}

func TestJSONRowsRoundTrip(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	ds := wideDataset()
	b := array.NewRecordBuilder(mem, ds.Schema)
	defer b.Release()
	t0 := time.Date(2024, 1, 2, 14, 0, 0, 0, time.UTC)
	type row struct {
		sym  string
		f    float64
		i    int64
		u    uint64
		s    string
		null bool
	}
	rows := []row{
		{sym: "AAPL", f: 185.25, i: 1 << 60, u: math.MaxUint64, s: "line\nbreak \"quoted\" é 日本"},
		{sym: "BINANCE:BTCUSDT", f: math.NaN(), i: -(1 << 60), u: 7, s: ""},
		{sym: "x/y", f: math.Inf(1), i: 42, u: 1 << 53},
		{sym: "z", f: math.Inf(-1), i: -42},
		{sym: "n", null: true},
	}
	for k, r := range rows {
		b.Field(0).(*array.StringBuilder).Append(r.sym)
		b.Field(1).(*array.TimestampBuilder).Append(arrow.Timestamp(t0.Add(time.Duration(k) * time.Second).UnixNano()))
		if r.null {
			for j := 2; j < 9; j++ {
				b.Field(j).AppendNull()
			}
			continue
		}
		b.Field(2).(*array.Float64Builder).Append(r.f)
		b.Field(3).(*array.Float32Builder).Append(float32(r.f))
		b.Field(4).(*array.Int64Builder).Append(r.i)
		b.Field(5).(*array.Uint64Builder).Append(r.u)
		b.Field(6).(*array.BooleanBuilder).Append(k%2 == 0)
		b.Field(7).(*array.Date32Builder).Append(arrow.Date32FromTime(t0))
		b.Field(8).(*array.StringBuilder).Append(r.s)
	}
	rec := b.NewRecord()
	defer rec.Release()

	enc, err := EncodeJSONRows(rec)
	if err != nil {
		t.Fatal(err)
	}
	if len(enc) != len(rows) {
		t.Fatalf("%d encoded rows", len(enc))
	}
	for _, e := range enc {
		if !strings.HasSuffix(string(e), "}\n") || strings.Count(string(e), "\n") != 1 {
			t.Fatalf("row not one newline-terminated line: %q", e)
		}
	}
	if want := `{"sym":"AAPL","t":"2024-01-02T14:00:00Z","f":185.25,"f32":185.25,"i":"1152921504606846976","u":"18446744073709551615","b":true,"d":"2024-01-02","s":"line\nbreak \"quoted\" é 日本"}` + "\n"; string(enc[0]) != want {
		t.Errorf("row 0 =\n%s\nwant\n%s", enc[0], want)
	}
	got, rejected := decodeJSONRows(mem, ds, enc)
	if len(rejected) != 0 {
		t.Fatalf("rejected %v", rejected)
	}
	defer got.Release()
	// NaN != NaN, so compare with ApproxEqual, which treats NaNs as equal.
	if !array.RecordApproxEqual(rec, got, array.WithNaNsEqual(true)) {
		t.Fatalf("round trip differs:\nwant %v\ngot  %v", rec, got)
	}
}

func TestDecodeJSONRowsRejects(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	ds := wideDataset()
	rows := [][]byte{
		[]byte(`{"sym":"A","t":"2024-01-02T14:00:00.7Z","f":1}` + "\n"), // floored to 14:00:00
		[]byte("not json\n"),
		[]byte(`{"sym":null,"t":"2024-01-02T14:00:00Z"}`),
		[]byte(`{"sym":"B","t":null}`),
		[]byte(`{"sym":"..","t":"2024-01-02T14:00:00Z"}`),
		[]byte(`{"sym":"C","t":"2024-01-02T14:00:01Z","extra":[1,2],"f":"oops"}`),
		[]byte(`{"sym":"D","t":"2024-01-02T14:00:02Z","extra":{"a":1}}`), // unknown fields are ignored
	}
	rec, rejected := decodeJSONRows(mem, ds, rows)
	if rec == nil {
		t.Fatal("nothing decoded")
	}
	defer rec.Release()
	var bad []int
	for i := range rejected {
		bad = append(bad, i)
	}
	slices.Sort(bad)
	if !slices.Equal(bad, []int{1, 2, 3, 4, 5}) {
		t.Fatalf("rejected rows %v, want [1 2 3 4 5]: %v", bad, rejected)
	}
	if rec.NumRows() != 2 {
		t.Fatalf("%d rows decoded, want 2", rec.NumRows())
	}
	ts := rec.Column(1).(*array.Timestamp)
	if got := ts.Value(0).ToTime(arrow.Nanosecond).UTC(); !got.Equal(time.Date(2024, 1, 2, 14, 0, 0, 0, time.UTC)) {
		t.Fatalf("time not floored to the grain: %s", got)
	}
	if rec, rej := decodeJSONRows(mem, ds, [][]byte{[]byte("x")}); rec != nil || len(rej) != 1 {
		t.Fatalf("all bad: rec %v, rejected %v", rec, rej)
	}
}

func TestMetaCheckpointer(t *testing.T) {
	ctx := context.Background()
	store := NewMemStore()
	lake := NewLake(store, nil)
	cp := NewMetaCheckpointer(lake, "quotes-stream")
	if seq, err := cp.Checkpoint(ctx, "shardId-000000000001"); err != nil || seq != "" {
		t.Fatalf("fresh checkpoint = %q, %v", seq, err)
	}
	// Numeric, not lexical, order: 10 after 9. A repeated checkpoint is fine.
	for _, seq := range []string{"9", "10", "10", "49590338271490256608559692538361571095921575989136588898"} {
		if err := cp.SetCheckpoint(ctx, "shardId-000000000001", seq); err != nil {
			t.Fatal(err)
		}
		if got, err := cp.Checkpoint(ctx, "shardId-000000000001"); err != nil || got != seq {
			t.Fatalf("after setting %s: %q, %v", seq, got, err)
		}
	}
	if err := cp.SetCheckpoint(ctx, "shardId-000000000002", "5"); err != nil {
		t.Fatal(err)
	}
	// A restarted process sees the same checkpoints through a new lake.
	cp2 := NewMetaCheckpointer(NewLake(store, nil), "quotes-stream")
	if got, _ := cp2.Checkpoint(ctx, "shardId-000000000002"); got != "5" {
		t.Fatalf("shard 2 after restart = %q", got)
	}
	// Old entries are removed: one per shard remains.
	names, err := lake.ListMeta(ctx, "streams/")
	if err != nil || len(names) != 2 {
		t.Fatalf("meta entries %v, %v; want one per shard", names, err)
	}
	for _, bad := range []string{"", "12a", strings.Repeat("1", 129)} {
		if err := cp.SetCheckpoint(ctx, "s", bad); err == nil {
			t.Errorf("SetCheckpoint(%q) succeeded", bad)
		}
	}
}
