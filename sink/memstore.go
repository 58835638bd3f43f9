package sink

import (
	"bytes"
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/selfheal/heal"
)

// MemStore is a [Store] in memory, for tests and examples. Its zero value
// is not usable; call [NewMemStore].
type MemStore struct {
	mu       sync.RWMutex
	objects  map[string]memObject
	versions int64 // puts so far: each object's version is the count at its put
}

type memObject struct {
	data    []byte
	mod     time.Time
	version int64
}

// NewMemStore returns an empty in-memory store.
func NewMemStore() *MemStore { return &MemStore{objects: make(map[string]memObject)} }

// Put implements [Store]. It copies data.
func (s *MemStore) Put(ctx context.Context, name string, data []byte, ifAbsent bool) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("heal/sink: put %s: %w", name, err)
	}
	if err := validName(name); err != nil {
		return err
	}
	obj := memObject{data: bytes.Clone(data), mod: time.Now()}
	if obj.data == nil {
		obj.data = []byte{}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.objects[name]; ok && ifAbsent {
		return fmt.Errorf("heal/sink: put %s: %w", name, heal.ErrExist)
	}
	s.versions++
	obj.version = s.versions
	s.objects[name] = obj
	return nil
}

type memReader struct{ *bytes.Reader }

func (memReader) Close() error { return nil }

// Open implements [Store]. The object reads the data as it was when opened.
func (s *MemStore) Open(ctx context.Context, name string) (Object, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("heal/sink: open %s: %w", name, err)
	}
	if err := validName(name); err != nil {
		return nil, err
	}
	s.mu.RLock()
	obj, ok := s.objects[name]
	s.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("heal/sink: open %s: %w", name, heal.ErrNotFound)
	}
	return memReader{bytes.NewReader(obj.data)}, nil
}

// List implements [Store]. Like [DirStore], it skips names with an element
// starting with '.'.
func (s *MemStore) List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("heal/sink: list %q: %w", prefix, err)
	}
	s.mu.RLock()
	var infos []ObjectInfo
	for name, obj := range s.objects {
		if strings.HasPrefix(name, prefix) {
			infos = append(infos, ObjectInfo{Name: name, Size: int64(len(obj.data)), ModTime: obj.mod})
		}
	}
	s.mu.RUnlock()
	sort.Slice(infos, func(i, j int) bool { return infos[i].Name < infos[j].Name })
	for i, info := range infos {
		if i%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("heal/sink: list %q: %w", prefix, err)
			}
		}
		if err := fn(info); err != nil {
			return err
		}
	}
	return nil
}

// Delete implements [Store].
func (s *MemStore) Delete(ctx context.Context, name string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("heal/sink: delete %s: %w", name, err)
	}
	if err := validName(name); err != nil {
		return err
	}
	s.mu.Lock()
	delete(s.objects, name)
	s.mu.Unlock()
	return nil
}
