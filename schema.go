package heal

import (
	"fmt"
	"strings"

	"github.com/apache/arrow/go/v17/arrow"
)

// SchemaError lists every difference between a record's schema and a
// dataset's: columns are matched by name, then compared by type and
// position. errors.Is(err, ErrSchemaMismatch) is true for it.
type SchemaError struct {
	Missing    []string // columns of the dataset the record lacks
	Unexpected []string // columns of the record the dataset lacks
	Retyped    []string // columns of both whose types differ, as "name (got, want)"
	Misplaced  []string // columns of both at another position, as "name (got i, want j)"
	first      string
}

// DiffSchema compares got with want (names, types and order; nullability
// and metadata are not compared) and returns nil when they match.
func DiffSchema(want, got *arrow.Schema) *SchemaError {
	e := &SchemaError{}
	wf, gf := want.Fields(), got.Fields()
	at := make(map[string]int, len(gf))
	for i, f := range gf {
		if _, dup := at[f.Name]; !dup {
			at[f.Name] = i
		}
	}
	first := -1
	note := func(i int) {
		if first < 0 || i < first {
			first = i
		}
	}
	for i, w := range wf {
		j, ok := at[w.Name]
		switch {
		case !ok:
			e.Missing = append(e.Missing, w.Name)
			note(i)
		case !arrow.TypeEqual(gf[j].Type, w.Type):
			e.Retyped = append(e.Retyped, fmt.Sprintf("%s (%s, want %s)", w.Name, gf[j].Type, w.Type))
			note(i)
		case j != i:
			e.Misplaced = append(e.Misplaced, fmt.Sprintf("%s (column %d, want %d)", w.Name, j, i))
			note(i)
		}
	}
	seen := make(map[string]bool, len(gf))
	for _, w := range wf {
		seen[w.Name] = true
	}
	for i, g := range gf {
		switch {
		case !seen[g.Name]:
			e.Unexpected = append(e.Unexpected, g.Name)
			seen[g.Name] = true // named once
		case at[g.Name] != i: // a second column of a name
			e.Unexpected = append(e.Unexpected, g.Name+" (repeated)")
			if j := indexIn(wf, g.Name); j < len(wf) {
				note(j)
			}
		}
	}
	switch {
	case first >= 0:
		e.first = wf[first].Name
	case len(e.Unexpected) > 0:
		e.first = strings.TrimSuffix(e.Unexpected[0], " (repeated)")
	default:
		return nil
	}
	return e
}

func indexIn(fs []arrow.Field, name string) int {
	for i := range fs {
		if fs[i].Name == name {
			return i
		}
	}
	return len(fs)
}

// Columns names every column concerned, those of the dataset first.
func (e *SchemaError) Columns() []string {
	var out []string
	for _, l := range [][]string{e.Missing, e.Retyped, e.Misplaced, e.Unexpected} {
		for _, s := range l {
			name, _, _ := strings.Cut(s, " (")
			out = append(out, name)
		}
	}
	return out
}

// First is the first column at fault, in the dataset's order.
func (e *SchemaError) First() string { return e.first }

func (e *SchemaError) Error() string {
	var parts []string
	for _, p := range []struct {
		what string
		l    []string
	}{{"missing", e.Missing}, {"retyped", e.Retyped}, {"misplaced", e.Misplaced}, {"unexpected", e.Unexpected}} {
		if len(p.l) > 0 {
			parts = append(parts, p.what+" "+strings.Join(p.l, ", "))
		}
	}
	return ErrSchemaMismatch.Error() + ": " + strings.Join(parts, "; ")
}

// Is reports whether target is [ErrSchemaMismatch].
func (e *SchemaError) Is(target error) bool { return target == ErrSchemaMismatch }
