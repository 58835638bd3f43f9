package catalog_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/memory"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/glue"
	"github.com/aws/aws-sdk-go-v2/service/glue/types"

	"github.com/selfheal/heal"
	"github.com/selfheal/heal/catalog"
	"github.com/selfheal/heal/healtest"
	"github.com/selfheal/heal/internal/awstest"
	"github.com/selfheal/heal/sink"
)

func col(name, typ string) types.Column {
	return types.Column{Name: aws.String(name), Type: aws.String(typ)}
}

func TestTableInput(t *testing.T) {
	ds := healtest.QuotesDataset()
	got, err := catalog.TableInput(ds, "s3://bucket/lake/")
	if err != nil {
		t.Fatal(err)
	}
	want := &types.TableInput{
		Name:        aws.String("quotes"),
		Description: aws.String("heal dataset quotes: one row per symbol and ts slot of 1m0s"),
		TableType:   aws.String("EXTERNAL_TABLE"),
		Parameters: map[string]string{
			"classification": "parquet", "EXTERNAL": "TRUE",
			"heal.key": "symbol", "heal.time": "ts", "heal.grain": "1m0s",
		},
		PartitionKeys: []types.Column{col("symbol", "string"), col("date", "string")},
		StorageDescriptor: &types.StorageDescriptor{
			Columns:      []types.Column{col("ts", "timestamp"), col("price", "double")},
			Location:     aws.String("s3://bucket/lake/quotes/"),
			InputFormat:  aws.String("org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"),
			OutputFormat: aws.String("org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat"),
			SerdeInfo: &types.SerDeInfo{
				SerializationLibrary: aws.String("org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"),
				Parameters:           map[string]string{"serialization.format": "1"},
			},
		},
	}
	if !reflect.DeepEqual(got, want) {
		gj, _ := json.MarshalIndent(got, "", " ")
		wj, _ := json.MarshalIndent(want, "", " ")
		t.Fatalf("TableInput =\n%s\nwant\n%s", gj, wj)
	}

	// Month partitions, a dashed name, a column named like the period.
	ds.Name, ds.Partition = "minute-bars", heal.PeriodMonth
	got, err = catalog.TableInput(ds, "s3://bucket")
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToString(got.Name) != "minute_bars" || aws.ToString(got.PartitionKeys[1].Name) != "month" ||
		aws.ToString(got.StorageDescriptor.Location) != "s3://bucket/minute-bars/" {
		t.Fatalf("name %q, partition %q, location %q", aws.ToString(got.Name), aws.ToString(got.PartitionKeys[1].Name), aws.ToString(got.StorageDescriptor.Location))
	}
	clash := healtest.QuotesDataset()
	clash.Schema = arrow.NewSchema(append(clash.Schema.Fields(), arrow.Field{Name: "Date", Type: arrow.BinaryTypes.String}), nil)
	if _, err := catalog.TableInput(clash, "s3://b"); err == nil {
		t.Fatal("a column named like the partition column was accepted")
	}
	bad := healtest.QuotesDataset()
	bad.Schema = arrow.NewSchema(append(bad.Schema.Fields(), arrow.Field{Name: "d", Type: arrow.FixedWidthTypes.Duration_s}), nil)
	if _, err := catalog.TableInput(bad, "s3://b"); err == nil || !strings.Contains(err.Error(), `"d"`) {
		t.Fatalf("a duration column: %v", err)
	}
}

func TestHiveType(t *testing.T) {
	for _, tc := range []struct {
		in   arrow.DataType
		want string
	}{
		{arrow.FixedWidthTypes.Boolean, "boolean"},
		{arrow.PrimitiveTypes.Int8, "tinyint"},
		{arrow.PrimitiveTypes.Int16, "smallint"},
		{arrow.PrimitiveTypes.Uint8, "smallint"},
		{arrow.PrimitiveTypes.Int32, "int"},
		{arrow.PrimitiveTypes.Uint16, "int"},
		{arrow.PrimitiveTypes.Int64, "bigint"},
		{arrow.PrimitiveTypes.Uint32, "bigint"},
		{arrow.PrimitiveTypes.Float32, "float"},
		{arrow.PrimitiveTypes.Float64, "double"},
		{arrow.BinaryTypes.String, "string"},
		{arrow.BinaryTypes.LargeString, "string"},
		{arrow.BinaryTypes.Binary, "binary"},
		{&arrow.FixedSizeBinaryType{ByteWidth: 16}, "binary"},
		{arrow.FixedWidthTypes.Date32, "date"},
		{&arrow.TimestampType{Unit: arrow.Nanosecond, TimeZone: "UTC"}, "timestamp"},
		{&arrow.Decimal128Type{Precision: 18, Scale: 4}, "decimal(18,4)"},
		{&arrow.DictionaryType{IndexType: arrow.PrimitiveTypes.Int32, ValueType: arrow.BinaryTypes.String}, "string"},
		{arrow.ListOf(arrow.PrimitiveTypes.Float64), "array<double>"},
		{arrow.MapOf(arrow.BinaryTypes.String, arrow.PrimitiveTypes.Int64), "map<string,bigint>"},
		{arrow.StructOf(arrow.Field{Name: "Bid", Type: arrow.PrimitiveTypes.Float64}, arrow.Field{Name: "sizes", Type: arrow.ListOf(arrow.PrimitiveTypes.Int32)}), "struct<bid:double,sizes:array<int>>"},
		{arrow.PrimitiveTypes.Uint64, ""},
		{arrow.FixedWidthTypes.Float16, ""},
		{arrow.FixedWidthTypes.Time32s, ""},
		{&arrow.Decimal256Type{Precision: 60, Scale: 0}, ""},
		{arrow.ListOf(arrow.FixedWidthTypes.Duration_ms), ""},
	} {
		got, err := catalog.HiveType(tc.in)
		if tc.want == "" {
			if err == nil {
				t.Errorf("HiveType(%s) = %q, want an error", tc.in, got)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("HiveType(%s) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestPartitionInput(t *testing.T) {
	ds := healtest.QuotesDataset()
	p := ds.PartitionOf("BINANCE:BTCUSDT", time.Date(2024, 1, 2, 14, 3, 0, 0, time.UTC))
	got := catalog.PartitionInput(ds, "s3://bucket/lake", p, nil)
	if !reflect.DeepEqual(got.Values, []string{"BINANCE:BTCUSDT", "2024-01-02"}) {
		t.Fatalf("Values = %q", got.Values)
	}
	// The location is the lake's own directory for the partition, escaped key and all.
	if loc := aws.ToString(got.StorageDescriptor.Location); loc != "s3://bucket/lake/quotes/symbol=BINANCE%3ABTCUSDT/date=2024-01-02/" {
		t.Fatalf("Location = %q", loc)
	}
	if aws.ToString(got.StorageDescriptor.SerdeInfo.SerializationLibrary) != catalog.ParquetSerDe {
		t.Fatal("partition without the Parquet SerDe")
	}
}

// fakeGlue is NOT an emulator: no Glue server can be installed here. This
// in-process httptest server speaks just enough of the awsJson1_1 protocol
// (X-Amz-Target: AWSGlue.<Op>) for the real glue client to create tables
// and partitions over real HTTP, so the calls heal makes and its handling
// of Glue's answers are exercised; it cannot vouch for Glue's behaviour.
type fakeGlue struct {
	mu         sync.Mutex
	tables     map[string]json.RawMessage
	partitions map[string]bool
	batches    []int
	updates    int
}

func (f *fakeGlue) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	var in struct {
		DatabaseName, TableName string
		TableInput              json.RawMessage
		PartitionInputList      []struct{ Values []string }
	}
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		w.WriteHeader(400)
		return
	}
	fail := func(typ string) {
		w.WriteHeader(400)
		_ = json.NewEncoder(w).Encode(map[string]string{"__type": typ, "message": typ})
	}
	var name struct{ Name string }
	_ = json.Unmarshal(in.TableInput, &name)
	switch r.Header.Get("X-Amz-Target") {
	case "AWSGlue.CreateTable":
		if _, ok := f.tables[name.Name]; ok {
			fail("AlreadyExistsException")
			return
		}
		f.tables[name.Name] = in.TableInput
		_, _ = w.Write([]byte("{}"))
	case "AWSGlue.UpdateTable":
		f.tables[name.Name] = in.TableInput
		f.updates++
		_, _ = w.Write([]byte("{}"))
	case "AWSGlue.BatchCreatePartition":
		if _, ok := f.tables[in.TableName]; !ok {
			fail("EntityNotFoundException")
			return
		}
		f.batches = append(f.batches, len(in.PartitionInputList))
		type perr struct {
			PartitionValues []string
			ErrorDetail     struct{ ErrorCode, ErrorMessage string }
		}
		var errs []perr
		for _, p := range in.PartitionInputList {
			k := in.TableName + "/" + strings.Join(p.Values, "/")
			if f.partitions[k] {
				e := perr{PartitionValues: p.Values}
				e.ErrorDetail.ErrorCode, e.ErrorDetail.ErrorMessage = "AlreadyExistsException", "Partition already exists."
				errs = append(errs, e)
				continue
			}
			f.partitions[k] = true
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"Errors": errs})
	default:
		fail("UnknownOperationException")
	}
}

func TestCatalogSync(t *testing.T) {
	f := &fakeGlue{tables: map[string]json.RawMessage{}, partitions: map[string]bool{}}
	ts := httptest.NewServer(f)
	defer ts.Close()
	client := glue.NewFromConfig(awstest.Config("heal-test", "heal-test-not-a-secret"), func(o *glue.Options) {
		o.BaseEndpoint = aws.String(ts.URL)
		o.RetryMaxAttempts = 1
	})
	ctx := context.Background()
	ds := healtest.QuotesDataset()
	cat := catalog.New(client, "markets", "s3://bucket/lake")
	for range 2 { // the second call updates
		if err := cat.EnsureTable(ctx, ds); err != nil {
			t.Fatal(err)
		}
	}
	if len(f.tables) != 1 || f.updates != 1 {
		t.Fatalf("%d tables, %d updates", len(f.tables), f.updates)
	}

	// 250 partitions: 3 calls of at most 100.
	var parts []heal.Partition
	for i := range 250 {
		parts = append(parts, ds.PartitionOf([]string{"AAPL", "MSFT"}[i%2], time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, i/2)))
	}
	n, err := cat.AddPartitions(ctx, ds, parts)
	if err != nil || n != 250 {
		t.Fatalf("AddPartitions = %d, %v", n, err)
	}
	if !reflect.DeepEqual(f.batches, []int{100, 100, 50}) {
		t.Fatalf("batches %v", f.batches)
	}
	// Idempotent: existing partitions are not an error, and not counted.
	if n, err := cat.AddPartitions(ctx, ds, parts[:120]); err != nil || n != 0 {
		t.Fatalf("again: %d, %v", n, err)
	}

	// Sync from a lake: only the partitions not yet known are new.
	lake := sink.NewLake(sink.NewMemStore(), nil)
	rec := healtest.Records(memory.DefaultAllocator, ds,
		healtest.Row{Key: "AAPL", Time: time.Date(2024, 1, 1, 14, 30, 0, 0, time.UTC), Price: 1},  // known
		healtest.Row{Key: "TSLA", Time: time.Date(2024, 1, 1, 14, 30, 0, 0, time.UTC), Price: 2},  // new
		healtest.Row{Key: "BRK/B", Time: time.Date(2024, 3, 9, 14, 30, 0, 0, time.UTC), Price: 3}, // new, escaped in the path
	)
	defer rec.Release()
	if err := lake.Write(ctx, ds, rec); err != nil {
		t.Fatal(err)
	}
	if n, err := cat.Sync(ctx, ds, lake, heal.Query{}); err != nil || n != 2 {
		t.Fatalf("Sync = %d, %v; want 2 new", n, err)
	}
	if !f.partitions["quotes/BRK/B/2024-03-09"] {
		t.Fatal("partition values are not the unescaped key")
	}

	// Another error than AlreadyExists is reported.
	other := healtest.QuotesDataset()
	other.Name = "no-table"
	if _, err := cat.AddPartitions(ctx, other, parts[:1]); err == nil {
		t.Fatal("adding to a missing table succeeded")
	}
}
