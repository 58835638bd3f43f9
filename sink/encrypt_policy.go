package sink

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/selfheal/heal"
)

// The lake remembers which columns of a dataset were ever written
// encrypted, so that a process configured otherwise (Encryption.Columns
// without the dataset, or no Encryption at all) cannot write them in clear
// next to encrypted files. Each Lake whose Columns names a dataset records
// its set once, as a create-only policy object
// _heal/keys/_columns/<dataset>/<16 hex digits of the set's SHA-256>
// (JSON: the column names). Every Write and Compact of the dataset then
// encrypts the union of the configured columns and of every policy
// recorded, and fails with an error naming the columns when it has no
// key provider to do so. Policies only add: a column once declared stays
// encrypted until its policy object is deleted by hand. They sit under
// the data keys' prefix, which the MetaStore methods hide (a dataset name
// cannot start with '_', so _columns is no dataset's key directory).

// policyPrefix holds the encryption policies.
const policyPrefix = keysPrefix + "_columns/"

// policyTTL is how long a Lake trusts the policies it read for a dataset
// before listing them again: a process started before another declared a
// column learns of it within this time.
var policyTTL = time.Minute

type policyState struct {
	mu       sync.Mutex
	cols     []string  // the union of the recorded policies
	read     time.Time // when they were listed; zero: never
	declared bool      // this Lake recorded its own set
}

// policy returns the policy state of ds.
func (l *Lake) policy(ds *heal.Dataset) *policyState {
	v, _ := l.policies.LoadOrStore(ds.Name, new(policyState))
	return v.(*policyState)
}

// declare records this lake's encrypted columns of ds as a policy, once
// per Lake: Write calls it once it has stored encrypted files, so that a
// refused write (a bad configuration, a key provider refusing) records
// nothing.
func (l *Lake) declare(ctx context.Context, ds *heal.Dataset) error {
	own := l.configuredColumns(ds)
	if len(own) == 0 {
		return nil
	}
	ps := l.policy(ds)
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.declared {
		return nil
	}
	if err := l.recordPolicy(ctx, ds, own); err != nil {
		return err
	}
	ps.declared = true
	ps.cols = union(ps.cols, own)
	return nil
}

// declaredColumns returns the columns every recorded policy of ds
// declares, listed at most once per policyTTL.
func (l *Lake) declaredColumns(ctx context.Context, ds *heal.Dataset) ([]string, error) {
	ps := l.policy(ds)
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if !ps.read.IsZero() && time.Since(ps.read) < policyTTL {
		return ps.cols, nil
	}
	var cols []string
	err := l.store.List(ctx, policyPrefix+ds.Name+"/", func(oi ObjectInfo) error {
		c, err := l.readPolicy(ctx, oi.Name)
		if err != nil {
			return err
		}
		cols = union(cols, c)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("heal/sink: encryption policy of %s: %w", ds.Name, err)
	}
	if ps.declared {
		cols = union(cols, l.configuredColumns(ds))
	}
	ps.cols, ps.read = cols, time.Now()
	return cols, nil
}

// configuredColumns returns the columns Encryption.Columns names for ds.
func (l *Lake) configuredColumns(ds *heal.Dataset) []string {
	if l.enc == nil {
		return nil
	}
	return l.enc.Columns[ds.Name]
}

// recordPolicy stores the policy declaring cols of ds, unless an identical
// one is stored.
func (l *Lake) recordPolicy(ctx context.Context, ds *heal.Dataset, cols []string) error {
	set := slices.Clone(cols)
	slices.Sort(set)
	b, err := json.Marshal(set)
	if err != nil {
		return err
	}
	h := sha256.Sum256([]byte(strings.Join(set, "\x00")))
	name := policyPrefix + ds.Name + "/" + hex.EncodeToString(h[:8])
	if err := l.store.Put(ctx, name, b, true); err != nil && !errors.Is(err, heal.ErrExist) {
		return fmt.Errorf("heal/sink: record the encryption policy of %s: %w", ds.Name, err)
	}
	return nil
}

// readPolicy reads one policy object.
func (l *Lake) readPolicy(ctx context.Context, name string) ([]string, error) {
	obj, err := l.store.Open(ctx, name)
	if errors.Is(err, heal.ErrNotFound) {
		return nil, nil // deleted meanwhile
	}
	if err != nil {
		return nil, err
	}
	defer obj.Close()
	b, err := io.ReadAll(io.NewSectionReader(obj, 0, obj.Size()))
	if err != nil {
		return nil, err
	}
	var cols []string
	if err := json.Unmarshal(b, &cols); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return cols, nil
}

// union returns a with the strings of b it lacks appended.
func union(a, b []string) []string {
	for _, s := range b {
		if !slices.Contains(a, s) {
			a = append(a, s)
		}
	}
	return a
}
