package heal

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/apache/arrow/go/v17/arrow/ipc"
	"github.com/apache/arrow/go/v17/arrow/memory"
)

// Descriptor is what an engine records about its dataset in the lake
// (_heal/datasets/<name>/), so tools that know nothing of the pipeline's
// code (the heal command, a notebook) can audit and report on it.
type Descriptor struct {
	Name        string        `json:"name"`
	Key         string        `json:"key"`
	Time        string        `json:"time"`
	Grain       time.Duration `json:"grain"`
	Partition   Period        `json:"partition"`
	Version     int           `json:"version,omitempty"` // the schema's major, Dataset.Version
	Schema      string        `json:"schema"`            // base64 Arrow IPC schema message
	Keys        []string      `json:"keys"`
	Rule        string        `json:"rule,omitempty"`         // the rule's String(), if it has one (e.g. "us-equities")
	Derived     []string      `json:"derived,omitempty"`      // names of the datasets derived from this one
	DerivedFrom string        `json:"derived_from,omitempty"` // set on a derived dataset's descriptor
	// Majors names every schema major of the logical dataset, oldest
	// first, when the engine's lake holds several ([MajorLister]): tools
	// then audit each major counting the slots of all of them, as the
	// engine does.
	Majors       []string  `json:"majors,omitempty"`
	RecordedAt   time.Time `json:"recorded_at"`
	EngineConfig string    `json:"engine_config,omitempty"`
}

// Dataset rebuilds the dataset description.
func (d *Descriptor) Dataset() (*Dataset, error) {
	b, err := base64.StdEncoding.DecodeString(d.Schema)
	if err != nil {
		return nil, fmt.Errorf("heal: descriptor %q: schema: %w", d.Name, err)
	}
	r, err := ipc.NewReader(bytes.NewReader(b), ipc.WithAllocator(memory.NewGoAllocator()))
	if err != nil {
		return nil, fmt.Errorf("heal: descriptor %q: schema: %w", d.Name, err)
	}
	defer r.Release()
	ds := &Dataset{Name: d.Name, Schema: r.Schema(), Key: d.Key, Time: d.Time, Grain: d.Grain, Partition: d.Partition, Version: d.Version}
	return ds, ds.Validate()
}

func describe(ds *Dataset, keys []string, rule CompletenessRule) (*Descriptor, error) {
	var buf bytes.Buffer
	w := ipc.NewWriter(&buf, ipc.WithSchema(ds.Schema))
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("heal: describe %q: %w", ds.Name, err)
	}
	d := &Descriptor{
		Name: ds.Name, Key: ds.Key, Time: ds.Time, Grain: ds.Grain, Partition: ds.Partition, Version: ds.Version,
		Schema: base64.StdEncoding.EncodeToString(buf.Bytes()), Keys: append([]string(nil), keys...),
	}
	if s, ok := rule.(fmt.Stringer); ok {
		d.Rule = s.String()
	}
	return d, nil
}

// MajorLister is implemented by lakes that hold several schema majors of
// one logical dataset, each a Dataset of its own name, and count a slot
// held in any of them as held in all
// ([github.com/selfheal/heal/evolve.Versions.Lake]). An engine over such a
// lake records the majors in its descriptor, so that tools knowing nothing
// of the pipeline (the heal command) audit the majors as one too.
type MajorLister interface {
	// Majors returns the names of the majors of the dataset named name,
	// oldest first, or nil when name is not one of them.
	Majors(name string) []string
}

// record writes the descriptors of the engine's dataset and of its derived
// datasets, unless the latest recorded ones are the same.
func (e *Engine) recordDescriptors(ctx context.Context) error {
	d, err := describe(e.ds, e.allKeys, e.opts.Rule)
	if err != nil {
		return err
	}
	if ml, ok := e.lake.(MajorLister); ok {
		if m := ml.Majors(e.ds.Name); len(m) > 1 {
			d.Majors = m
		}
	}
	all := []*Descriptor{d}
	for _, t := range e.opts.Transformers {
		d.Derived = append(d.Derived, t.Output().Name)
		od, err := describe(t.Output(), e.allKeys, nil)
		if err != nil {
			return err
		}
		od.DerivedFrom = e.ds.Name
		all = append(all, od)
	}
	for _, d := range all {
		prev, err := LatestDescriptor(ctx, e.meta, d.Name)
		if err == nil {
			p := *prev
			p.RecordedAt = time.Time{}
			if same, _ := jsonEqual(&p, d); same {
				continue
			}
		} else if !errors.Is(err, ErrNotFound) {
			return err
		}
		d.RecordedAt = e.clock.Now().UTC()
		b, err := json.MarshalIndent(d, "", "  ")
		if err != nil {
			return err
		}
		name := fmt.Sprintf("datasets/%s/%020d.json", d.Name, d.RecordedAt.UnixNano())
		if err := e.meta.PutMeta(ctx, name, b); err != nil && !errors.Is(err, ErrExist) {
			return fmt.Errorf("heal: record descriptor of %q: %w", d.Name, err)
		}
	}
	return nil
}

func jsonEqual(a, b any) (bool, error) {
	x, err := json.Marshal(a)
	if err != nil {
		return false, err
	}
	y, err := json.Marshal(b)
	return bytes.Equal(x, y), err
}

// LatestDescriptor returns the newest descriptor recorded for the named
// dataset, or an error for which errors.Is(err, ErrNotFound).
func LatestDescriptor(ctx context.Context, meta MetaStore, name string) (*Descriptor, error) {
	names, err := meta.ListMeta(ctx, "datasets/"+name+"/")
	if err != nil {
		return nil, err
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("heal: no descriptor for dataset %q: %w", name, ErrNotFound)
	}
	b, err := meta.GetMeta(ctx, names[len(names)-1])
	if err != nil {
		return nil, err
	}
	var d Descriptor
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, fmt.Errorf("heal: descriptor %s: %w", names[len(names)-1], err)
	}
	return &d, nil
}

// Descriptors returns the newest descriptor of every dataset recorded in
// the lake, sorted by name.
func Descriptors(ctx context.Context, meta MetaStore) ([]*Descriptor, error) {
	names, err := meta.ListMeta(ctx, "datasets/")
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var out []*Descriptor
	for _, n := range names {
		parts := strings.Split(n, "/")
		if len(parts) != 3 || seen[parts[1]] {
			continue
		}
		seen[parts[1]] = true
		d, err := LatestDescriptor(ctx, meta, parts[1])
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, nil
}
