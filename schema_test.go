package heal_test

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/apache/arrow/go/v17/arrow"

	"github.com/selfheal/heal"
)

func TestCheckSchemaNamesEveryColumn(t *testing.T) {
	ts := &arrow.TimestampType{Unit: arrow.Millisecond, TimeZone: "UTC"}
	ds := &heal.Dataset{Name: "q", Key: "symbol", Time: "ts", Grain: 60e9, Schema: arrow.NewSchema([]arrow.Field{
		{Name: "symbol", Type: arrow.BinaryTypes.String},
		{Name: "ts", Type: ts},
		{Name: "price", Type: arrow.PrimitiveTypes.Float64},
		{Name: "volume", Type: arrow.PrimitiveTypes.Int64, Nullable: true},
	}, nil)}
	for _, tc := range []struct {
		name    string
		fields  []arrow.Field
		first   string
		columns []string
		msg     string
	}{
		{"renamed and retyped", []arrow.Field{
			{Name: "symbol", Type: arrow.BinaryTypes.String}, {Name: "ts", Type: ts},
			{Name: "last", Type: arrow.PrimitiveTypes.Float64}, {Name: "volume", Type: arrow.PrimitiveTypes.Float64},
		}, "price", []string{"price", "volume", "last"}, "missing price; retyped volume (float64, want int64); unexpected last"},
		{"swapped", []arrow.Field{
			{Name: "ts", Type: ts}, {Name: "symbol", Type: arrow.BinaryTypes.String},
			{Name: "price", Type: arrow.PrimitiveTypes.Float64}, {Name: "volume", Type: arrow.PrimitiveTypes.Int64},
		}, "symbol", []string{"symbol", "ts"}, "misplaced symbol (column 1, want 0), ts (column 0, want 1)"},
		{"extra and repeated", []arrow.Field{
			{Name: "symbol", Type: arrow.BinaryTypes.String}, {Name: "ts", Type: ts},
			{Name: "price", Type: arrow.PrimitiveTypes.Float64}, {Name: "volume", Type: arrow.PrimitiveTypes.Int64},
			{Name: "bid", Type: arrow.PrimitiveTypes.Float64}, {Name: "price", Type: arrow.PrimitiveTypes.Float64},
		}, "price", []string{"bid", "price"}, "unexpected bid, price (repeated)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := ds.CheckSchema(arrow.NewSchema(tc.fields, nil))
			var ie *heal.InputError
			var se *heal.SchemaError
			if !errors.As(err, &ie) || !errors.As(err, &se) || !errors.Is(err, heal.ErrSchemaMismatch) {
				t.Fatalf("CheckSchema = %v, want an InputError wrapping a SchemaError", err)
			}
			if ie.Field != tc.first || !reflect.DeepEqual(se.Columns(), tc.columns) || !strings.HasSuffix(err.Error(), tc.msg) {
				t.Errorf("field %q, columns %q, error %q; want %q, %q, ...%q", ie.Field, se.Columns(), err, tc.first, tc.columns, tc.msg)
			}
		})
	}
	if err := ds.CheckSchema(ds.Schema); err != nil {
		t.Errorf("own schema: %v", err)
	}
}
