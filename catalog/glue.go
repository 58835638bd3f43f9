// Package catalog registers a lake's datasets in the AWS Glue Data
// Catalog, so Athena (and Spark, Trino, Redshift Spectrum) query them in
// place with no crawler: one external Parquet table per dataset,
// partitioned Hive-style like the lake itself (the dataset's key column,
// then its period column: date, month or year), and one Glue partition per
// lake partition.
//
//	cat := catalog.New(glue.NewFromConfig(cfg), "markets", "s3://bucket/lake")
//	err := cat.EnsureTable(ctx, ds)
//	n, err := cat.Sync(ctx, ds, lake, heal.Query{}) // after writes: adds the new partitions
//
// Partition columns hold strings: the key as it is (the lake escapes it in
// the path, the catalog stores it unescaped), and the period as its Hive
// value ("2024-01-02"). As Hive forbids a column that is also a partition
// key, the key column is left out of the table's columns: queries read it
// from the partition.
package catalog

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/glue"
	"github.com/aws/aws-sdk-go-v2/service/glue/types"

	"github.com/selfheal/heal"
	"github.com/selfheal/heal/sink"
)

// The Parquet SerDe and formats Glue and Athena expect.
const (
	ParquetSerDe        = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
	ParquetInputFormat  = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
	ParquetOutputFormat = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat"
)

// maxBatchPartitions is BatchCreatePartition's limit per call.
const maxBatchPartitions = 100

// TableName is the Glue table name of ds: its name with '-' made '_'
// (Glue and Athena names are lower-case letters, digits and '_').
func TableName(ds *heal.Dataset) string { return strings.ReplaceAll(ds.Name, "-", "_") }

// TableInput builds the Glue table for ds in a lake at lakeURL
// ("s3://bucket/prefix"): an EXTERNAL_TABLE of Parquet files at
// lakeURL/<dataset>/, with the columns of ds's schema in Hive types (the
// key column excepted) and the partition keys (key column, period column).
func TableInput(ds *heal.Dataset, lakeURL string) (*types.TableInput, error) {
	if err := ds.Validate(); err != nil {
		return nil, err
	}
	period := ds.Partition.Name()
	var cols []types.Column
	for _, f := range ds.Schema.Fields() {
		if f.Name == ds.Key {
			continue
		}
		if strings.EqualFold(f.Name, period) {
			return nil, fmt.Errorf("heal/catalog: dataset %q: column %q has the name of the partition column", ds.Name, f.Name)
		}
		t, err := HiveType(f.Type)
		if err != nil {
			return nil, fmt.Errorf("heal/catalog: dataset %q: column %q: %w", ds.Name, f.Name, err)
		}
		cols = append(cols, types.Column{Name: aws.String(strings.ToLower(f.Name)), Type: aws.String(t)})
	}
	return &types.TableInput{
		Name:        aws.String(TableName(ds)),
		Description: aws.String(fmt.Sprintf("heal dataset %s: one row per %s and %s slot of %s", ds.Name, ds.Key, ds.Time, ds.Grain)),
		TableType:   aws.String("EXTERNAL_TABLE"),
		Parameters: map[string]string{
			"classification": "parquet",
			"EXTERNAL":       "TRUE",
			"heal.key":       ds.Key,
			"heal.time":      ds.Time,
			"heal.grain":     ds.Grain.String(),
		},
		PartitionKeys: []types.Column{
			{Name: aws.String(strings.ToLower(ds.Key)), Type: aws.String("string")},
			{Name: aws.String(period), Type: aws.String("string")},
		},
		StorageDescriptor: storage(cols, datasetLocation(lakeURL, ds)),
	}, nil
}

func storage(cols []types.Column, location string) *types.StorageDescriptor {
	return &types.StorageDescriptor{
		Columns:      cols,
		Location:     aws.String(location),
		InputFormat:  aws.String(ParquetInputFormat),
		OutputFormat: aws.String(ParquetOutputFormat),
		SerdeInfo: &types.SerDeInfo{
			SerializationLibrary: aws.String(ParquetSerDe),
			Parameters:           map[string]string{"serialization.format": "1"},
		},
	}
}

func datasetLocation(lakeURL string, ds *heal.Dataset) string {
	return strings.TrimRight(lakeURL, "/") + "/" + ds.Name + "/"
}

// PartitionInput builds the Glue partition for p of ds in the lake at
// lakeURL: values (key, period value) and the location of its directory,
// with the table's storage format. cols are the table's columns (from
// [TableInput]); nil leaves them to the table's.
func PartitionInput(ds *heal.Dataset, lakeURL string, p heal.Partition, cols []types.Column) types.PartitionInput {
	loc := strings.TrimRight(lakeURL, "/") + "/" + sink.PartitionPath(ds, p)
	return types.PartitionInput{
		Values:            []string{p.Key, p.Period.Format(p.Start)},
		StorageDescriptor: storage(cols, loc),
	}
}

// HiveType returns the Hive (Glue, Athena) type of an Arrow type, as the
// Parquet files the lake writes store it.
func HiveType(t arrow.DataType) (string, error) {
	switch t := t.(type) {
	case *arrow.BooleanType:
		return "boolean", nil
	case *arrow.Int8Type:
		return "tinyint", nil
	case *arrow.Int16Type, *arrow.Uint8Type:
		return "smallint", nil
	case *arrow.Int32Type, *arrow.Uint16Type:
		return "int", nil
	case *arrow.Int64Type, *arrow.Uint32Type:
		return "bigint", nil
	case *arrow.Float32Type:
		return "float", nil
	case *arrow.Float64Type:
		return "double", nil
	case *arrow.StringType, *arrow.LargeStringType:
		return "string", nil
	case *arrow.BinaryType, *arrow.LargeBinaryType, *arrow.FixedSizeBinaryType:
		return "binary", nil
	case *arrow.Date32Type, *arrow.Date64Type:
		return "date", nil
	case *arrow.TimestampType:
		return "timestamp", nil
	case *arrow.Decimal128Type:
		return fmt.Sprintf("decimal(%d,%d)", t.Precision, t.Scale), nil
	case *arrow.Decimal256Type:
		if t.Precision > 38 {
			return "", fmt.Errorf("decimal precision %d is over Hive's 38", t.Precision)
		}
		return fmt.Sprintf("decimal(%d,%d)", t.Precision, t.Scale), nil
	case *arrow.DictionaryType:
		return HiveType(t.ValueType)
	case *arrow.ListType:
		return listOf(t.Elem())
	case *arrow.LargeListType:
		return listOf(t.Elem())
	case *arrow.FixedSizeListType:
		return listOf(t.Elem())
	case *arrow.MapType:
		k, err := HiveType(t.KeyType())
		if err != nil {
			return "", err
		}
		v, err := HiveType(t.ItemType())
		if err != nil {
			return "", err
		}
		return "map<" + k + "," + v + ">", nil
	case *arrow.StructType:
		var parts []string
		for _, f := range t.Fields() {
			ft, err := HiveType(f.Type)
			if err != nil {
				return "", fmt.Errorf("field %q: %w", f.Name, err)
			}
			parts = append(parts, strings.ToLower(f.Name)+":"+ft)
		}
		return "struct<" + strings.Join(parts, ",") + ">", nil
	}
	return "", fmt.Errorf("arrow type %s has no Hive equivalent", t)
}

func listOf(elem arrow.DataType) (string, error) {
	e, err := HiveType(elem)
	if err != nil {
		return "", err
	}
	return "array<" + e + ">", nil
}

// Catalog registers datasets of one lake in one Glue database. Make it with
// [New]. Its methods may be called concurrently.
type Catalog struct {
	client   *glue.Client
	database string
	lakeURL  string
}

// New returns a Catalog for the lake at lakeURL ("s3://bucket/prefix", as
// the lake's [sink.S3Store.URL]) in the Glue database database, with client
// the caller's (config.LoadDefaultConfig and glue.NewFromConfig). The
// database must exist.
func New(client *glue.Client, database, lakeURL string) *Catalog {
	return &Catalog{client: client, database: database, lakeURL: lakeURL}
}

// EnsureTable creates ds's table, or updates it to [TableInput] when it
// exists (so a schema change reaches the catalog).
func (c *Catalog) EnsureTable(ctx context.Context, ds *heal.Dataset) error {
	in, err := TableInput(ds, c.lakeURL)
	if err != nil {
		return heal.Permanent(err)
	}
	_, err = c.client.CreateTable(ctx, &glue.CreateTableInput{DatabaseName: aws.String(c.database), TableInput: in})
	var exists *types.AlreadyExistsException
	if errors.As(err, &exists) {
		_, err = c.client.UpdateTable(ctx, &glue.UpdateTableInput{DatabaseName: aws.String(c.database), TableInput: in})
	}
	if err != nil {
		return fmt.Errorf("heal/catalog: table %s.%s: %w", c.database, TableName(ds), err)
	}
	return nil
}

// AddPartitions registers parts of ds with BatchCreatePartition, 100 per
// call. Partitions that already exist are not an error (it is idempotent:
// call it after every write); it returns how many were new.
func (c *Catalog) AddPartitions(ctx context.Context, ds *heal.Dataset, parts []heal.Partition) (int, error) {
	table, err := TableInput(ds, c.lakeURL)
	if err != nil {
		return 0, heal.Permanent(err)
	}
	added := 0
	for start := 0; start < len(parts); start += maxBatchPartitions {
		chunk := parts[start:min(start+maxBatchPartitions, len(parts))]
		inputs := make([]types.PartitionInput, len(chunk))
		for i, p := range chunk {
			inputs[i] = PartitionInput(ds, c.lakeURL, p, table.StorageDescriptor.Columns)
		}
		out, err := c.client.BatchCreatePartition(ctx, &glue.BatchCreatePartitionInput{
			DatabaseName:       aws.String(c.database),
			TableName:          table.Name,
			PartitionInputList: inputs,
		})
		if err != nil {
			return added, fmt.Errorf("heal/catalog: add partitions to %s.%s: %w", c.database, aws.ToString(table.Name), err)
		}
		var errs []error
		failed := 0
		for _, pe := range out.Errors {
			code := ""
			if pe.ErrorDetail != nil {
				code = aws.ToString(pe.ErrorDetail.ErrorCode)
			}
			failed++
			if code == "AlreadyExistsException" {
				continue
			}
			msg := ""
			if pe.ErrorDetail != nil {
				msg = aws.ToString(pe.ErrorDetail.ErrorMessage)
			}
			errs = append(errs, fmt.Errorf("partition %v: %s: %s", pe.PartitionValues, code, msg))
		}
		added += len(chunk) - failed
		if len(errs) > 0 {
			return added, fmt.Errorf("heal/catalog: add partitions to %s.%s: %w", c.database, aws.ToString(table.Name), errors.Join(errs...))
		}
	}
	return added, nil
}

// Sync registers every partition of ds that lake holds within q (found
// with lake.Inventory, which reads only file footers) and returns how many
// were new to the catalog.
func (c *Catalog) Sync(ctx context.Context, ds *heal.Dataset, lake heal.Lake, q heal.Query) (int, error) {
	var parts []heal.Partition
	if err := lake.Inventory(ctx, ds, q, func(pi heal.PartitionInfo) error {
		parts = append(parts, pi.Partition)
		return nil
	}); err != nil {
		return 0, fmt.Errorf("heal/catalog: inventory of %s: %w", ds.Name, err)
	}
	return c.AddPartitions(ctx, ds, parts)
}
