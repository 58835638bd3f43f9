// Package evolve ties the major versions of a dataset's schema together,
// so that a dataset can change schema mid-history and still be audited and
// healed as one.
//
// Additive changes need nothing from this package: add a nullable column
// to the Dataset's schema, keep its Version, and the lake reads the files
// written before with the column null ([Versions.Write] also takes records
// from producers still without the column, storing it null).
//
// A breaking change (a column renamed, retyped or removed) is a new major
// version: a [heal.Dataset] of its own, with Version set and its own Name,
// hence its own raw zone in the lake (quotes/ for v1, quotes_v2/ for v2),
// its own ledger and index; nothing already stored moves. [New] declares
// the majors of one logical dataset, oldest first, and then:
//
//   - [Versions.Write] writes a record into the major whose schema it has,
//     and refuses a record matching none with an *heal.InputError naming,
//     for every major, the columns that differ;
//   - [Versions.Lake] wraps the lake so that an engine's audit of any major
//     counts the slots held in every major: a slot present in v1 is present
//     for the v2 engine, which repairs (into v2) only what is missing in all;
//   - [Versions.Conform] is a [heal.Transformer] that maps the rows of every
//     major into one conformed dataset, the one readers use; registered on
//     the engine of the live major, it derives the conformed rows of new
//     and repaired slots, and of the history the earlier majors hold.
//
// For example, with v2 renaming price to last and retyping volume:
//
//	v1, v2 := quotesV1(), quotesV2() // v2: price renamed last, volume int64 → float64
//	vs, _ := evolve.New(v1, v2)
//	conform, _ := vs.Conform(lake, conformed, &evolve.ConformOptions{
//		Mappings: []evolve.Mapping{{Rename: map[string]string{"last": "price"}}, {}},
//	})
//	eng, _ := heal.New(v2, src, vs.Lake(lake), &heal.Options{Keys: keys, Transformers: []heal.Transformer{conform}})
//
// Why a distinct Name rather than quotes/v2/ under v1's directory: every
// per-dataset record of a lake (the ledger, the lake index, the descriptors,
// the heal lease) lives under a prefix named after the dataset, so v2's
// records would sit inside v1's prefixes, and v1's listings would read
// them as its own.
package evolve

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/memory"

	"github.com/selfheal/heal"
)

// Versions is the schema history of one logical dataset: its majors,
// oldest first. It is immutable and safe for concurrent use.
type Versions struct {
	majors []*heal.Dataset
}

// New declares the majors of one dataset, oldest first: majors[i] must
// have Major() i+1 (a Version of 0 counts as 1), a Name of its own, and
// the same Grain and Partition as the others, so that their slots and
// partitions line up.
func New(majors ...*heal.Dataset) (*Versions, error) {
	if len(majors) == 0 {
		return nil, errors.New("heal/evolve: New: no major version")
	}
	names := map[string]bool{}
	for i, ds := range majors {
		if err := ds.Validate(); err != nil {
			return nil, fmt.Errorf("heal/evolve: New: majors[%d]: %w", i, err)
		}
		if ds.Major() != i+1 {
			return nil, fmt.Errorf("heal/evolve: New: majors[%d] (%s) has version %d, want %d: list the majors oldest first", i, ds.Name, ds.Major(), i+1)
		}
		if names[ds.Name] {
			return nil, fmt.Errorf("heal/evolve: New: majors[%d]: name %q is taken by an earlier major; each major needs a raw zone of its own", i, ds.Name)
		}
		names[ds.Name] = true
		if ds.Grain != majors[0].Grain || ds.Partition != majors[0].Partition {
			return nil, fmt.Errorf("heal/evolve: New: majors[%d] (%s): grain %s and partition %s differ from %s's (%s, %s)",
				i, ds.Name, ds.Grain, ds.Partition.Name(), majors[0].Name, majors[0].Grain, majors[0].Partition.Name())
		}
	}
	return &Versions{majors: append([]*heal.Dataset(nil), majors...)}, nil
}

// Majors returns the majors, oldest first.
func (v *Versions) Majors() []*heal.Dataset { return append([]*heal.Dataset(nil), v.majors...) }

// Latest is the newest major.
func (v *Versions) Latest() *heal.Dataset { return v.majors[len(v.majors)-1] }

// major returns the major named name, or nil.
func (v *Versions) major(name string) *heal.Dataset {
	for _, ds := range v.majors {
		if ds.Name == name {
			return ds
		}
	}
	return nil
}

// Match returns the major whose schema s is (names, types and order; see
// [heal.Dataset.CheckSchema]), the newest if several. When none matches,
// it returns an *heal.InputError for the latest major, whose Field is the
// first column at fault there and whose Err, a *[MismatchError], names
// the columns that differ from every major.
//
// A record of an earlier minor of a major, one that lacks columns added
// since as nullable (an old producer after an additive change), matches
// that major: [Versions.Write] stores it with those columns null.
func (v *Versions) Match(s *arrow.Schema) (*heal.Dataset, error) {
	me := &MismatchError{}
	for i := len(v.majors) - 1; i >= 0; i-- {
		ds := v.majors[i]
		d := heal.DiffSchema(ds.Schema, s)
		if d == nil {
			return ds, nil
		}
		me.Diffs = append(me.Diffs, MajorDiff{Dataset: ds.Name, Major: ds.Major(), Diff: d})
	}
	for i := len(v.majors) - 1; i >= 0; i-- {
		if ds := v.majors[i]; earlierMinor(ds.Schema, s) {
			return ds, nil
		}
	}
	latest := v.Latest()
	return nil, &heal.InputError{Dataset: latest.Name, Field: me.Diffs[0].Diff.First(), Row: -1, Err: me}
}

// Write stores rec in the major whose schema it has (see [Versions.Match]),
// with lake.Write; a record matching no major stores nothing.
func (v *Versions) Write(ctx context.Context, lake heal.Lake, rec arrow.Record) error {
	ds, err := v.Match(rec.Schema())
	if err != nil {
		return fmt.Errorf("heal/evolve: write: %w", err)
	}
	if heal.DiffSchema(ds.Schema, rec.Schema()) != nil { // an earlier minor
		up := upgrade(ds.Schema, rec)
		defer up.Release()
		return lake.Write(ctx, ds, up)
	}
	return lake.Write(ctx, ds, rec)
}

// earlierMinor reports whether got is want without some of want's
// nullable columns: every column of got is want's column of that name and
// type, once, in want's order, and every column of want that got lacks is
// nullable.
func earlierMinor(want, got *arrow.Schema) bool {
	gf := got.Fields()
	j := 0
	for _, w := range want.Fields() {
		if j < len(gf) && gf[j].Name == w.Name {
			if !arrow.TypeEqual(gf[j].Type, w.Type) {
				return false
			}
			j++
			continue
		}
		if !w.Nullable {
			return false
		}
	}
	return j == len(gf) && len(gf) > 0
}

// upgrade returns rec with want's schema, the columns it lacks all null.
func upgrade(want *arrow.Schema, rec arrow.Record) arrow.Record {
	n := rec.NumRows()
	cols := make([]arrow.Array, 0, want.NumFields())
	j := 0
	for _, w := range want.Fields() {
		if j < int(rec.NumCols()) && rec.ColumnName(j) == w.Name {
			c := rec.Column(j)
			c.Retain()
			cols = append(cols, c)
			j++
			continue
		}
		cols = append(cols, array.MakeArrayOfNull(memory.DefaultAllocator, w.Type, int(n)))
	}
	out := array.NewRecord(want, cols, n)
	for _, c := range cols {
		c.Release()
	}
	return out
}

// MismatchError says a record's schema is none of a dataset's majors, and
// how it differs from each. errors.Is(err, heal.ErrSchemaMismatch) is
// true for it.
type MismatchError struct {
	Diffs []MajorDiff // newest major first
}

// MajorDiff is how a schema differs from one major.
type MajorDiff struct {
	Dataset string
	Major   int
	Diff    *heal.SchemaError
}

func (e *MismatchError) Error() string {
	parts := make([]string, len(e.Diffs))
	for i, d := range e.Diffs {
		detail := strings.TrimPrefix(d.Diff.Error(), heal.ErrSchemaMismatch.Error()+": ")
		parts[i] = fmt.Sprintf("v%d (%s): %s", d.Major, d.Dataset, detail)
	}
	return "schema matches no version of the dataset: " + strings.Join(parts, " | ")
}

// Is reports whether target is [heal.ErrSchemaMismatch].
func (e *MismatchError) Is(target error) bool { return target == heal.ErrSchemaMismatch }

// Columns names every column that differs from some major, once each.
func (e *MismatchError) Columns() []string {
	seen := map[string]bool{}
	var out []string
	for _, d := range e.Diffs {
		for _, c := range d.Diff.Columns() {
			if !seen[c] {
				seen[c] = true
				out = append(out, c)
			}
		}
	}
	return out
}
