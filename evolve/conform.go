package evolve

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/compute"
	"github.com/apache/arrow/go/v17/arrow/memory"

	"github.com/selfheal/heal"
)

// Mapping says how the rows of one major become rows of the conformed
// dataset. The zero Mapping reads each conformed column from the major's
// column of the same name, cast to the conformed type when the types
// differ, and leaves it null when the major has no such column (which the
// conformed column must then allow).
type Mapping struct {
	// Rename maps a conformed column to the major's column it is read from
	// (a column renamed by a breaking change: {"last": "price"}).
	Rename map[string]string
	// Convert, when set, replaces the column mapping: it returns the
	// conformed record, with the conformed schema, for a record of the
	// major. It must not retain rec; the caller owns the result.
	Convert func(ctx context.Context, mem memory.Allocator, rec arrow.Record) (arrow.Record, error)
}

// ConformOptions configures [Versions.Conform]. A nil *ConformOptions, or
// any zero field, means the default written beside the field.
type ConformOptions struct {
	// Mappings holds one Mapping per major, oldest first. Missing entries:
	// the zero Mapping.
	Mappings []Mapping
	// Every is the span of one derived window: a live tick derives its
	// window when the window's last slot lands, so the conformed dataset
	// trails the live one by up to Every. It must be a multiple of the
	// grain and divide 24h. 0: one hour.
	Every time.Duration
	// Allocator is used for every Arrow buffer the transformer makes. nil:
	// memory.DefaultAllocator.
	Allocator memory.Allocator
}

// Conform returns the [heal.Transformer] that maps every major of v into
// out, the conformed dataset. Register it on the engine of one major
// (the live one): Derive receives that major's rows, reads those of the
// other majors for the same key and window from lake, maps them all with
// opts.Mappings, and keeps one row per slot, the newest major's where
// several hold it. out must have the majors' grain and a Name of its own.
func (v *Versions) Conform(lake heal.Lake, out *heal.Dataset, opts *ConformOptions) (heal.Transformer, error) {
	if lake == nil {
		return nil, errors.New("heal/evolve: Conform: nil Lake")
	}
	if err := out.Validate(); err != nil {
		return nil, fmt.Errorf("heal/evolve: Conform: %w", err)
	}
	if v.major(out.Name) != nil {
		return nil, fmt.Errorf("heal/evolve: Conform: the conformed dataset %q is a major; give it a name of its own", out.Name)
	}
	grain := v.majors[0].Grain
	if out.Grain != grain {
		return nil, fmt.Errorf("heal/evolve: Conform: %s's grain %s differs from the majors' %s", out.Name, out.Grain, grain)
	}
	var o ConformOptions
	if opts != nil {
		o = *opts
	}
	if len(o.Mappings) > len(v.majors) {
		return nil, fmt.Errorf("heal/evolve: Conform: %d mappings for %d majors", len(o.Mappings), len(v.majors))
	}
	if o.Every == 0 {
		o.Every = time.Hour
	}
	if o.Every < 0 || o.Every%grain != 0 || (24*time.Hour)%o.Every != 0 {
		return nil, fmt.Errorf("heal/evolve: Conform: Every %s must be a positive multiple of the grain %s dividing 24h", o.Every, grain)
	}
	if o.Allocator == nil {
		o.Allocator = memory.DefaultAllocator
	}
	c := &conformer{v: v, lake: lake, out: out, every: o.Every, mem: o.Allocator,
		maps: make([]Mapping, len(v.majors)), src: make([][]int, len(v.majors))}
	copy(c.maps, o.Mappings)
	for m, ds := range v.majors {
		if c.maps[m].Convert != nil {
			continue
		}
		c.src[m] = make([]int, len(out.Schema.Fields()))
		for i, f := range out.Schema.Fields() {
			name := f.Name
			if r, ok := c.maps[m].Rename[f.Name]; ok {
				name = r
			}
			idx := ds.Schema.FieldIndices(name)
			switch {
			case len(idx) == 1:
				from := ds.Schema.Field(idx[0]).Type
				if !arrow.TypeEqual(from, f.Type) && !compute.CanCast(from, f.Type) {
					return nil, fmt.Errorf("heal/evolve: Conform: v%d (%s) column %s is %s, which does not cast to %s's %s %s",
						ds.Major(), ds.Name, name, from, out.Name, f.Name, f.Type)
				}
				c.src[m][i] = idx[0]
			case f.Name == out.Key || f.Name == out.Time || !f.Nullable:
				return nil, fmt.Errorf("heal/evolve: Conform: v%d (%s) has no column %s for %s's column %s, which cannot be null: add it to Mappings[%d].Rename",
					ds.Major(), ds.Name, name, out.Name, f.Name, m)
			default:
				c.src[m][i] = -1
			}
		}
	}
	return c, nil
}

type conformer struct {
	v     *Versions
	lake  heal.Lake
	out   *heal.Dataset
	every time.Duration
	mem   memory.Allocator
	maps  []Mapping
	src   [][]int // per major, per conformed column: the major's column, -1 for null
}

func (c *conformer) Output() *heal.Dataset { return c.out }

// Affected returns the windows of Every overlapping w.
func (c *conformer) Affected(w heal.Window) []heal.Window {
	if w.Empty() {
		return nil
	}
	var out []heal.Window
	for s := w.Start.UTC().Truncate(c.every); s.Before(w.End); s = s.Add(c.every) {
		out = append(out, heal.Window{Start: s, End: s.Add(c.every)})
	}
	return out
}

// Derive conforms the rows of key within w of every major: in, a
// record of one of them, and the others' rows read from the lake.
func (c *conformer) Derive(ctx context.Context, key string, w heal.Window, in arrow.Record) (arrow.Record, error) {
	own := -1
	for m, ds := range c.v.majors {
		if heal.DiffSchema(ds.Schema, in.Schema()) == nil {
			own = m
		}
	}
	if own < 0 {
		ds, err := c.v.Match(in.Schema())
		if err == nil {
			err = fmt.Errorf("input is %s", ds.Name)
		}
		return nil, heal.Permanent(fmt.Errorf("heal/evolve: conform %s: the input is no major: %w", c.out.Name, err))
	}
	var conv []arrow.Record // per major, oldest first; nil: no rows
	defer func() {
		for _, r := range conv {
			if r != nil {
				r.Release()
			}
		}
	}()
	for m, ds := range c.v.majors {
		var rec arrow.Record
		var err error
		if m == own {
			rec, err = c.convert(ctx, m, in)
		} else {
			rec, err = c.read(ctx, m, key, w)
		}
		if err != nil {
			return nil, fmt.Errorf("heal/evolve: conform %s from v%d (%s), %s %s: %w", c.out.Name, ds.Major(), ds.Name, key, w, err)
		}
		conv = append(conv, rec)
	}
	return c.merge(ctx, conv)
}

// read returns the conformed rows of major m for key within w, nil if none.
func (c *conformer) read(ctx context.Context, m int, key string, w heal.Window) (arrow.Record, error) {
	ds := c.v.majors[m]
	rd, err := c.lake.Scan(ctx, ds, heal.Query{Keys: []string{key}, Window: w})
	if err != nil {
		return nil, err
	}
	defer rd.Release()
	var recs []arrow.Record
	defer func() {
		for _, r := range recs {
			r.Release()
		}
	}()
	for rd.Next() {
		r, err := c.convert(ctx, m, rd.Record())
		if err != nil {
			return nil, err
		}
		recs = append(recs, r)
	}
	if err := rd.Err(); err != nil {
		return nil, err
	}
	switch len(recs) {
	case 0:
		return nil, nil
	case 1:
		r := recs[0]
		recs = nil
		return r, nil
	}
	return concat(ctx, c.mem, c.out.Schema, recs, nil)
}

// convert maps a record of major m to the conformed schema.
func (c *conformer) convert(ctx context.Context, m int, rec arrow.Record) (arrow.Record, error) {
	if f := c.maps[m].Convert; f != nil {
		out, err := f(ctx, c.mem, rec)
		if err != nil {
			return nil, err
		}
		if d := heal.DiffSchema(c.out.Schema, out.Schema()); d != nil {
			out.Release()
			return nil, heal.Permanent(fmt.Errorf("Mappings[%d].Convert: %w", m, d))
		}
		return out, nil
	}
	n := int(rec.NumRows())
	cols := make([]arrow.Array, len(c.src[m]))
	defer func() {
		for _, col := range cols {
			if col != nil {
				col.Release()
			}
		}
	}()
	cctx := compute.WithAllocator(ctx, c.mem)
	for i, f := range c.out.Schema.Fields() {
		j := c.src[m][i]
		if j < 0 {
			cols[i] = array.MakeArrayOfNull(c.mem, f.Type, n)
			continue
		}
		a := rec.Column(j)
		if arrow.TypeEqual(a.DataType(), f.Type) {
			a.Retain()
			cols[i] = a
			continue
		}
		cast, err := compute.CastArray(cctx, a, compute.SafeCastOptions(f.Type))
		if err != nil {
			return nil, heal.Permanent(fmt.Errorf("cast %s to %s %s: %w", rec.Schema().Field(j).Name, f.Name, f.Type, err))
		}
		cols[i] = cast
	}
	return array.NewRecord(c.out.Schema, cols, int64(n)), nil
}

// merge keeps one row per slot of the conformed records (one per major,
// oldest first; nil for none), the newest major's, ordered by time.
func (c *conformer) merge(ctx context.Context, conv []arrow.Record) (arrow.Record, error) {
	type ref struct {
		t   int64
		row int // in the concatenation
	}
	var refs []ref
	var recs []arrow.Record
	base := 0
	ti := c.out.TimeIndex()
	for _, r := range conv {
		if r == nil || r.NumRows() == 0 {
			continue
		}
		ts := r.Column(ti).(*array.Timestamp)
		for i := 0; i < ts.Len(); i++ {
			if ts.IsNull(i) {
				continue // refused by the engine's checks anyway
			}
			refs = append(refs, ref{int64(ts.Value(i)), base + i})
		}
		base += ts.Len()
		recs = append(recs, r)
	}
	// Stable: within a time, the order of the majors, the newest last.
	slices.SortStableFunc(refs, func(a, b ref) int {
		switch {
		case a.t < b.t:
			return -1
		case a.t > b.t:
			return 1
		}
		return 0
	})
	rows := make([]int, 0, len(refs))
	for i, r := range refs {
		if i+1 < len(refs) && refs[i+1].t == r.t {
			continue
		}
		rows = append(rows, r.row)
	}
	if len(recs) == 0 {
		b := array.NewRecordBuilder(c.mem, c.out.Schema)
		defer b.Release()
		return b.NewRecord(), nil
	}
	return concat(ctx, c.mem, c.out.Schema, recs, rows)
}

// concat returns the rows of recs (all of sc), in their concatenation's
// order or, when rows is not nil, those rows in that order.
func concat(ctx context.Context, mem memory.Allocator, sc *arrow.Schema, recs []arrow.Record, rows []int) (arrow.Record, error) {
	var idx arrow.Array
	if rows != nil {
		ib := array.NewInt64Builder(mem)
		for _, r := range rows {
			ib.Append(int64(r))
		}
		idx = ib.NewArray()
		ib.Release()
		defer idx.Release()
	}
	cctx := compute.WithAllocator(ctx, mem)
	cols := make([]arrow.Array, len(sc.Fields()))
	defer func() {
		for _, col := range cols {
			if col != nil {
				col.Release()
			}
		}
	}()
	n := 0
	for i := range cols {
		parts := make([]arrow.Array, len(recs))
		for j, r := range recs {
			parts[j] = r.Column(i)
		}
		all, err := array.Concatenate(parts, mem)
		if err != nil {
			return nil, fmt.Errorf("concatenate %s: %w", sc.Field(i).Name, err)
		}
		if idx == nil {
			cols[i] = all
			n = all.Len()
			continue
		}
		taken, err := compute.TakeArray(cctx, all, idx)
		all.Release()
		if err != nil {
			return nil, fmt.Errorf("take %s: %w", sc.Field(i).Name, err)
		}
		cols[i] = taken
		n = taken.Len()
	}
	return array.NewRecord(sc, cols, int64(n)), nil
}
