package sink

import (
	"fmt"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/selfheal/heal"
)

// Additive schema changes. A dataset may gain nullable columns without a
// new major version (heal.Dataset.Version): files written before hold
// fewer columns, and are read with the new ones null. Columns are matched
// by name, so a file may also hold them in another order. Anything else
// (a column retyped, removed or renamed, the key or time missing) is a
// breaking change: such a file is unusable and is quarantined, as before.

// fileColumns maps each column of ds to its position in a file of schema
// sc, -1 for a nullable column the file predates.
func fileColumns(ds *heal.Dataset, sc *arrow.Schema) ([]int, error) {
	want, got := ds.Schema.Fields(), sc.Fields()
	at := make(map[string]int, len(got))
	for i, g := range got {
		if _, dup := at[g.Name]; dup {
			return nil, fmt.Errorf("%w: file has column %s twice", heal.ErrSchemaMismatch, g.Name)
		}
		at[g.Name] = i
	}
	cols := make([]int, len(want))
	for i, w := range want {
		j, ok := at[w.Name]
		if !ok {
			if !w.Nullable || w.Name == ds.Key || w.Name == ds.Time {
				return nil, fmt.Errorf("%w: file lacks column %s, which is not a nullable column added later", heal.ErrSchemaMismatch, w.Name)
			}
			cols[i] = -1
			continue
		}
		if g := got[j]; !arrow.TypeEqual(g.Type, w.Type) && !secondsStoredAsMillis(w.Type, g.Type) {
			return nil, fmt.Errorf("%w: column %s is %s, want %s", heal.ErrSchemaMismatch, w.Name, g.Type, w.Type)
		}
		cols[i] = j
		delete(at, w.Name)
	}
	for _, g := range got {
		if _, extra := at[g.Name]; extra {
			return nil, fmt.Errorf("%w: file has column %s, which the dataset lacks", heal.ErrSchemaMismatch, g.Name)
		}
	}
	return cols, nil
}
