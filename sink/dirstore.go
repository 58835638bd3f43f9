package sink

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/selfheal/heal"
)

// tempPrefix starts the names of DirStore's files being written. List never
// shows them (they start with '.'), and CleanTemp removes the ones a crash
// left behind.
const tempPrefix = ".tmp-"

// DirStore is a [Store] in a directory on local disk. Names map to paths
// below the directory; nothing outside it can be named.
//
// Put writes a temporary file in the target directory, fsyncs it, then
// links it into place (create-only) or renames it over the target, and
// fsyncs the directory, so a crash leaves either the old object, the new one,
// or an invisible temporary file that [DirStore.CleanTemp] removes.
//
// Names are case-sensitive only where the filesystem is: on a
// case-insensitive one (the default on macOS and Windows) two dataset keys
// that differ only in case share a directory, and the lake quarantines the
// rows that do not match the directory's key. Use such keys only on
// case-sensitive filesystems or object stores.
type DirStore struct {
	root   string
	swapMu sync.Mutex // Swap's check-then-rename
}

// NewDirStore returns a store rooted at dir, creating dir if needed.
func NewDirStore(dir string) (*DirStore, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("heal/sink: dir store %s: %w", dir, err)
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return nil, fmt.Errorf("heal/sink: dir store: %w", err)
	}
	return &DirStore{root: abs}, nil
}

// Dir is the store's root directory.
func (s *DirStore) Dir() string { return s.root }

func (s *DirStore) path(name string) (string, error) {
	if err := validName(name); err != nil {
		return "", err
	}
	return filepath.Join(s.root, filepath.FromSlash(name)), nil
}

// Put implements [Store].
func (s *DirStore) Put(ctx context.Context, name string, data []byte, ifAbsent bool) error {
	return s.put(ctx, name, data, ifAbsent, true)
}

// PutCache creates name with data, like a create-only Put, but does not
// wait for the disk: after a crash of the machine (not of the process) the
// object may be missing or hold garbage. The lake puts its index objects,
// a checksummed cache of what the data files hold, this way.
func (s *DirStore) PutCache(ctx context.Context, name string, data []byte) error {
	return s.put(ctx, name, data, true, false)
}

func (s *DirStore) put(ctx context.Context, name string, data []byte, ifAbsent, durable bool) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("heal/sink: put %s: %w", name, err)
	}
	p, err := s.path(name)
	if err != nil {
		return err
	}
	dir := filepath.Dir(p)
	newDirs, err := s.mkdirs(dir)
	if err != nil {
		return fmt.Errorf("heal/sink: put %s: %w", name, err)
	}
	tmp, err := os.CreateTemp(dir, tempPrefix+"*")
	if err != nil {
		return fmt.Errorf("heal/sink: put %s: %w", name, err)
	}
	tmpName := tmp.Name()
	renamed := false
	defer func() {
		if !renamed {
			os.Remove(tmpName) // after Link the temp name is redundant
		}
	}()
	_, err = tmp.Write(data)
	if err == nil && durable {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("heal/sink: put %s: %w", name, err)
	}
	if ifAbsent {
		err = os.Link(tmpName, p)
		if errors.Is(err, fs.ErrExist) || errors.Is(err, syscall.EEXIST) {
			return fmt.Errorf("heal/sink: put %s: %w", name, heal.ErrExist)
		}
	} else {
		err = os.Rename(tmpName, p)
		renamed = err == nil
	}
	if err != nil {
		return fmt.Errorf("heal/sink: put %s: %w", name, err)
	}
	if !durable {
		return nil
	}
	// Make the new name durable, and the directories created for it.
	for _, d := range append([]string{dir}, newDirs...) {
		if err := syncDir(d); err != nil {
			return fmt.Errorf("heal/sink: put %s: sync directory: %w", name, err)
		}
	}
	return nil
}

// mkdirs creates dir and its missing parents below the root, and returns
// the parents of the directories it created (deepest first), whose entries
// must be synced for the new directories to survive a crash.
func (s *DirStore) mkdirs(dir string) ([]string, error) {
	if _, err := os.Stat(dir); err == nil {
		return nil, nil
	}
	var missing []string
	for d := dir; d != s.root && len(d) > len(s.root); d = filepath.Dir(d) {
		if _, err := os.Stat(d); err == nil {
			break
		}
		missing = append(missing, d)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	parents := make([]string, len(missing))
	for i, d := range missing {
		parents[i] = filepath.Dir(d)
	}
	return parents, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.ENOTSUP) {
		return nil // some filesystems cannot sync directories
	}
	return err
}

// fileObject is an open file with its size.
type fileObject struct {
	*os.File
	size int64
}

func (o fileObject) Size() int64 { return o.size }

// Open implements [Store]. The object is an *os.File underneath; a file
// deleted while open stays readable until closed.
func (s *DirStore) Open(ctx context.Context, name string) (Object, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("heal/sink: open %s: %w", name, err)
	}
	p, err := s.path(name)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
			return nil, fmt.Errorf("heal/sink: open %s: %w", name, heal.ErrNotFound)
		}
		return nil, fmt.Errorf("heal/sink: open %s: %w", name, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("heal/sink: open %s: %w", name, err)
	}
	if fi.IsDir() {
		f.Close()
		return nil, fmt.Errorf("heal/sink: open %s: is a directory: %w", name, heal.ErrNotFound)
	}
	return fileObject{File: f, size: fi.Size()}, nil
}

// List implements [Store]. It walks only the directory the prefix points
// into, one directory at a time, so that names come out in lexical order.
// Elements starting with '.' (temporary files among them) are skipped. At
// the first level holding several directories (the keys of a dataset, say),
// their subtrees are read several at once, a few ahead of the one being
// delivered.
func (s *DirStore) List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error {
	if strings.HasPrefix(prefix, "/") || strings.Contains(prefix, "\\") {
		return fmt.Errorf("heal/sink: list %q: bad prefix", prefix)
	}
	base := ""
	if i := strings.LastIndexByte(prefix, '/'); i >= 0 {
		base = prefix[:i]
		if err := validName(base); err != nil {
			return fmt.Errorf("heal/sink: list %q: %w", prefix, err)
		}
	}
	return s.walk(ctx, base, prefix, fn, true)
}

// dirEntry is one entry of a directory being walked.
type dirEntry struct {
	sortKey string
	name    string
	dir     bool
	de      fs.DirEntry
}

// listWorkers and listAhead bound a parallel walk: directories read at
// once, and subtrees read ahead of the one being delivered.
const (
	listWorkers = 8
	listAhead   = 32
)

// walk lists the directory dir (a store name, "" for the root) in lexical
// order of full names, calling fn for files matching prefix. With parallel,
// a level holding several directories is walked by walkParallel.
func (s *DirStore) walk(ctx context.Context, dir, prefix string, fn func(ObjectInfo) error, parallel bool) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("heal/sink: list %q: %w", prefix, err)
	}
	entries, err := os.ReadDir(filepath.Join(s.root, filepath.FromSlash(dir)))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
			return nil
		}
		return fmt.Errorf("heal/sink: list %q: %w", prefix, err)
	}
	list := make([]dirEntry, 0, len(entries))
	dirs := 0
	for _, de := range entries {
		if strings.HasPrefix(de.Name(), ".") {
			continue
		}
		name := de.Name()
		if dir != "" {
			name = dir + "/" + name
		}
		if de.IsDir() {
			// Only descend where the prefix can match.
			if !strings.HasPrefix(name+"/", prefix) && !strings.HasPrefix(prefix, name+"/") {
				continue
			}
			list = append(list, dirEntry{sortKey: name + "/", name: name, dir: true, de: de})
			dirs++
		} else if de.Type().IsRegular() && strings.HasPrefix(name, prefix) {
			list = append(list, dirEntry{sortKey: name, name: name, de: de})
		}
	}
	sort.Slice(list, func(i, j int) bool { return list[i].sortKey < list[j].sortKey })
	if parallel && dirs > 1 {
		return s.walkParallel(ctx, list, prefix, fn)
	}
	for _, e := range list {
		if e.dir {
			if err := s.walk(ctx, e.name, prefix, fn, parallel); err != nil {
				return err
			}
			continue
		}
		if err := s.emit(e, prefix, fn); err != nil {
			return err
		}
	}
	return nil
}

// emit calls fn for the file e.
func (s *DirStore) emit(e dirEntry, prefix string, fn func(ObjectInfo) error) error {
	fi, err := e.de.Info()
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil // deleted since ReadDir
		}
		return fmt.Errorf("heal/sink: list %q: %w", prefix, err)
	}
	return fn(ObjectInfo{Name: e.name, Size: fi.Size(), ModTime: fi.ModTime()})
}

// walkParallel delivers list in order, reading the subtrees of its
// directories up to listWorkers at once and listAhead ahead.
func (s *DirStore) walkParallel(ctx context.Context, list []dirEntry, prefix string, fn func(ObjectInfo) error) error {
	type subtree struct {
		done  chan struct{}
		infos []ObjectInfo
		err   error
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	sem := make(chan struct{}, listWorkers)
	subs := make([]*subtree, len(list))
	next := 0
	for i, e := range list {
		for ; next < len(list) && next <= i+listAhead; next++ {
			if !list[next].dir {
				continue
			}
			st := &subtree{done: make(chan struct{})}
			subs[next] = st
			name := list[next].name
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer close(st.done)
				select {
				case sem <- struct{}{}:
				case <-ctx.Done():
					st.err = ctx.Err()
					return
				}
				defer func() { <-sem }()
				st.err = s.walk(ctx, name, prefix, func(oi ObjectInfo) error {
					st.infos = append(st.infos, oi)
					return nil
				}, false)
			}()
		}
		if !e.dir {
			if err := s.emit(e, prefix, fn); err != nil {
				return err
			}
			continue
		}
		st := subs[i]
		<-st.done
		subs[i] = nil
		if st.err != nil {
			if cerr := ctx.Err(); cerr != nil {
				return fmt.Errorf("heal/sink: list %q: %w", prefix, cerr)
			}
			return st.err
		}
		for _, oi := range st.infos {
			if err := fn(oi); err != nil {
				return err
			}
		}
	}
	return nil
}

// Delete implements [Store]. Empty directories are left in place.
func (s *DirStore) Delete(ctx context.Context, name string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("heal/sink: delete %s: %w", name, err)
	}
	p, err := s.path(name)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("heal/sink: delete %s: %w", name, err)
	}
	return nil
}

// CleanTemp removes temporary files that Put left behind when its process
// died, if they are older than olderThan (a Put in flight is younger), and
// reports how many it removed. [Lake.Compact] calls it with one hour.
func (s *DirStore) CleanTemp(olderThan time.Duration) (int, error) {
	cutoff := time.Now().Add(-olderThan)
	n := 0
	err := filepath.WalkDir(s.root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if d.IsDir() || !strings.HasPrefix(d.Name(), tempPrefix) {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return nil // gone already
		}
		if fi.ModTime().Before(cutoff) {
			if err := os.Remove(p); err == nil {
				n++
			} else if !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return n, fmt.Errorf("heal/sink: clean temp files: %w", err)
	}
	return n, nil
}
