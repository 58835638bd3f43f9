package sink_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/selfheal/heal"
	"github.com/selfheal/heal/sink"
)

// testStore checks the Store contract on an empty store.
func testStore(t *testing.T, s sink.Store) {
	ctx := context.Background()
	names := func(prefix string) []string {
		t.Helper()
		var out []string
		if err := s.List(ctx, prefix, func(oi sink.ObjectInfo) error {
			out = append(out, oi.Name)
			return nil
		}); err != nil {
			t.Fatalf("List(%q): %v", prefix, err)
		}
		return out
	}
	read := func(name string) string {
		t.Helper()
		o, err := s.Open(ctx, name)
		if err != nil {
			t.Fatalf("Open(%s): %v", name, err)
		}
		defer o.Close()
		b, err := io.ReadAll(io.NewSectionReader(o, 0, o.Size()))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}

	t.Run("PutOpenDelete", func(t *testing.T) {
		if _, err := s.Open(ctx, "a/missing"); !errors.Is(err, heal.ErrNotFound) {
			t.Fatalf("Open of a missing name: %v, want heal.ErrNotFound", err)
		}
		if err := s.Put(ctx, "a/x", []byte("one"), true); err != nil {
			t.Fatal(err)
		}
		if err := s.Put(ctx, "a/x", []byte("two"), true); !errors.Is(err, heal.ErrExist) {
			t.Fatalf("create-only Put over an existing name: %v, want heal.ErrExist", err)
		}
		if got := read("a/x"); got != "one" {
			t.Fatalf("read %q after a refused Put", got)
		}
		if err := s.Put(ctx, "a/x", []byte("three"), false); err != nil {
			t.Fatal(err)
		}
		if got := read("a/x"); got != "three" {
			t.Fatalf("read %q after an overwrite", got)
		}
		o, err := s.Open(ctx, "a/x")
		if err != nil {
			t.Fatal(err)
		}
		if o.Size() != 5 {
			t.Fatalf("Size = %d", o.Size())
		}
		if _, err := o.Seek(1, io.SeekStart); err != nil {
			t.Fatal(err)
		}
		b := make([]byte, 2)
		if _, err := io.ReadFull(o, b); err != nil || string(b) != "hr" {
			t.Fatalf("Seek+Read = %q, %v", b, err)
		}
		o.Close()
		if err := s.Put(ctx, "a/empty", nil, true); err != nil {
			t.Fatal(err)
		}
		if got := read("a/empty"); got != "" {
			t.Fatalf("empty object reads %q", got)
		}
		for _, n := range []string{"a/x", "a/x", "a/empty", "never/was"} {
			if err := s.Delete(ctx, n); err != nil {
				t.Fatalf("Delete(%s): %v", n, err)
			}
		}
		if _, err := s.Open(ctx, "a/x"); !errors.Is(err, heal.ErrNotFound) {
			t.Fatalf("Open after Delete: %v", err)
		}
		if _, err := s.Open(ctx, "a"); !errors.Is(err, heal.ErrNotFound) {
			t.Fatalf("Open of a directory-like name: %v, want heal.ErrNotFound", err)
		}
	})

	t.Run("ListOrderAndPrefix", func(t *testing.T) {
		all := []string{"l/a.b", "l/a/b", "l/a-b", "l/a/a/z", "l/ab", "l/b", "l/a%2Fb", "m/x", "l2/y"}
		for _, n := range all {
			if err := s.Put(ctx, n, []byte(n), true); err != nil {
				t.Fatal(err)
			}
		}
		want := func(prefix string) []string {
			var out []string
			for _, n := range all {
				if strings.HasPrefix(n, prefix) {
					out = append(out, n)
				}
			}
			slices.Sort(out)
			return out
		}
		for _, p := range []string{"", "l/", "l", "l/a", "l/a/", "l/a/a/z", "l/a.", "nothing/", "m/x/"} {
			if got := names(p); !slices.Equal(got, want(p)) {
				t.Fatalf("List(%q) = %v, want %v", p, got, want(p))
			}
		}
		stop := errors.New("stop")
		n := 0
		err := s.List(ctx, "l/", func(sink.ObjectInfo) error { n++; return stop })
		if !errors.Is(err, stop) || n != 1 {
			t.Fatalf("List did not stop at fn's error: %v after %d calls", err, n)
		}
		for _, n := range all {
			s.Delete(ctx, n)
		}
	})

	t.Run("BadNames", func(t *testing.T) {
		for _, n := range []string{"", "/abs", "a/../../x", "..", "a//b", "./a", "a/.", "a/.hidden", "a\\b"} {
			if err := s.Put(ctx, n, []byte("x"), false); err == nil {
				t.Fatalf("Put(%q) succeeded", n)
			}
			if _, err := s.Open(ctx, n); err == nil {
				t.Fatalf("Open(%q) succeeded", n)
			}
		}
	})

	t.Run("CreateOnlyRace", func(t *testing.T) {
		const racers = 16
		var wg sync.WaitGroup
		var mu sync.Mutex
		wins, exist := 0, 0
		for i := 0; i < racers; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				err := s.Put(ctx, "race/one", []byte(fmt.Sprint(i)), true)
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					wins++
				case errors.Is(err, heal.ErrExist):
					exist++
				default:
					t.Errorf("racing Put: %v", err)
				}
			}()
		}
		wg.Wait()
		if wins != 1 || exist != racers-1 {
			t.Fatalf("%d winners and %d ErrExist, want 1 and %d", wins, exist, racers-1)
		}
		if got := names("race/"); !slices.Equal(got, []string{"race/one"}) {
			t.Fatalf("List after the race = %v", got)
		}
	})

	if sw, ok := s.(sink.Swapper); ok {
		t.Run("Swap", func(t *testing.T) {
			if _, _, err := sw.ReadVersion(ctx, "swap/missing"); !errors.Is(err, heal.ErrNotFound) {
				t.Fatalf("ReadVersion of a missing name: %v, want heal.ErrNotFound", err)
			}
			if err := s.Put(ctx, "swap/k", []byte("v1"), true); err != nil {
				t.Fatal(err)
			}
			data, v1, err := sw.ReadVersion(ctx, "swap/k")
			if err != nil || string(data) != "v1" || v1 == "" {
				t.Fatalf("ReadVersion = %q, %q, %v", data, v1, err)
			}
			if err := sw.Swap(ctx, "swap/k", []byte("v2"), v1); err != nil {
				t.Fatalf("Swap with the version read: %v", err)
			}
			// A second writer that read v1 too loses, and stores nothing.
			if err := sw.Swap(ctx, "swap/k", []byte("stale"), v1); !errors.Is(err, sink.ErrChanged) {
				t.Fatalf("Swap with a stale version: %v, want sink.ErrChanged", err)
			}
			data, v2, err := sw.ReadVersion(ctx, "swap/k")
			if err != nil || string(data) != "v2" || v2 == v1 {
				t.Fatalf("after the lost swap: %q, version %q (was %q), %v", data, v2, v1, err)
			}
			// A plain overwrite also changes the version.
			if err := s.Put(ctx, "swap/k", []byte("v3"), false); err != nil {
				t.Fatal(err)
			}
			if err := sw.Swap(ctx, "swap/k", []byte("stale"), v2); !errors.Is(err, sink.ErrChanged) {
				t.Fatalf("Swap after an overwrite: %v, want sink.ErrChanged", err)
			}
			if err := s.Delete(ctx, "swap/k"); err != nil {
				t.Fatal(err)
			}
			if err := sw.Swap(ctx, "swap/k", []byte("stale"), v2); !errors.Is(err, sink.ErrChanged) {
				t.Fatalf("Swap of a removed name: %v, want sink.ErrChanged", err)
			}
			if _, err := s.Open(ctx, "swap/k"); !errors.Is(err, heal.ErrNotFound) {
				t.Fatalf("a lost Swap of a removed name created it: %v", err)
			}
			// Of many writers racing from one version, exactly one wins.
			if err := s.Put(ctx, "swap/race", []byte("base"), true); err != nil {
				t.Fatal(err)
			}
			_, base, err := sw.ReadVersion(ctx, "swap/race")
			if err != nil {
				t.Fatal(err)
			}
			var wg sync.WaitGroup
			var mu sync.Mutex
			won := []string{}
			for i := range 8 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					val := fmt.Sprintf("w%d", i)
					err := sw.Swap(ctx, "swap/race", []byte(val), base)
					if err == nil {
						mu.Lock()
						won = append(won, val)
						mu.Unlock()
					} else if !errors.Is(err, sink.ErrChanged) {
						t.Errorf("racing Swap: %v", err)
					}
				}()
			}
			wg.Wait()
			if len(won) != 1 || read("swap/race") != won[0] {
				t.Fatalf("winners %v, stored %q: want exactly one, stored", won, read("swap/race"))
			}
		})
	}

	t.Run("CanceledContext", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if err := s.Put(cctx, "c/x", nil, false); !errors.Is(err, context.Canceled) {
			t.Fatalf("Put: %v", err)
		}
		if err := s.List(cctx, "", func(sink.ObjectInfo) error { return nil }); !errors.Is(err, context.Canceled) {
			t.Fatalf("List: %v", err)
		}
	})
}

func TestMemStore(t *testing.T) { testStore(t, sink.NewMemStore()) }

func TestDirStore(t *testing.T) {
	dir := t.TempDir()
	s, err := sink.NewDirStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	testStore(t, s)
	ctx := context.Background()

	t.Run("PutCache", func(t *testing.T) {
		// Create-only like Put, without waiting for the disk.
		if err := s.PutCache(ctx, "c/a/b", []byte("cached")); err != nil {
			t.Fatal(err)
		}
		if err := s.PutCache(ctx, "c/a/b", []byte("again")); !errors.Is(err, heal.ErrExist) {
			t.Fatalf("second PutCache: %v, want ErrExist", err)
		}
		if b, err := os.ReadFile(filepath.Join(dir, "c", "a", "b")); err != nil || string(b) != "cached" {
			t.Fatalf("read back %q, %v", b, err)
		}
		if entries, _ := os.ReadDir(filepath.Join(dir, "c", "a")); len(entries) != 1 {
			t.Fatalf("PutCache left %d entries", len(entries))
		}
	})

	t.Run("TempFilesInvisibleAndCleaned", func(t *testing.T) {
		// A crash between writing the temporary file and linking it leaves
		// it behind: it must never be listed, and CleanTemp removes it
		// once it is old.
		if err := s.Put(ctx, "t/real", []byte("x"), true); err != nil {
			t.Fatal(err)
		}
		stale := filepath.Join(dir, "t", ".tmp-123456")
		fresh := filepath.Join(dir, "t", ".tmp-654321")
		for _, p := range []string{stale, fresh} {
			if err := os.WriteFile(p, []byte("half a file"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		old := time.Now().Add(-2 * time.Hour)
		if err := os.Chtimes(stale, old, old); err != nil {
			t.Fatal(err)
		}
		var listed []string
		s.List(ctx, "t/", func(oi sink.ObjectInfo) error { listed = append(listed, oi.Name); return nil })
		if !slices.Equal(listed, []string{"t/real"}) {
			t.Fatalf("List shows %v, want only t/real", listed)
		}
		n, err := s.CleanTemp(time.Hour)
		if err != nil || n != 1 {
			t.Fatalf("CleanTemp = %d, %v; want 1", n, err)
		}
		if _, err := os.Stat(stale); !os.IsNotExist(err) {
			t.Fatalf("stale temp file still there: %v", err)
		}
		if _, err := os.Stat(fresh); err != nil {
			t.Fatalf("CleanTemp removed a temp file younger than the cutoff: %v", err)
		}
	})

	t.Run("NoTempLeftAfterPut", func(t *testing.T) {
		for i := 0; i < 5; i++ {
			s.Put(ctx, "n/x", []byte("x"), i%2 == 0)
		}
		entries, err := os.ReadDir(filepath.Join(dir, "n"))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), ".tmp-") {
				t.Fatalf("Put left %s behind", e.Name())
			}
		}
	})

	t.Run("NothingEscapesTheRoot", func(t *testing.T) {
		outside := filepath.Join(filepath.Dir(dir), "escaped")
		for _, n := range []string{"../escaped", "a/../../escaped", "/tmp/escaped"} {
			if err := s.Put(ctx, n, []byte("x"), false); err == nil {
				t.Fatalf("Put(%q) succeeded", n)
			}
		}
		if _, err := os.Stat(outside); !os.IsNotExist(err) {
			t.Fatalf("a file appeared outside the root")
		}
		if err := s.List(ctx, "../", func(sink.ObjectInfo) error { return nil }); err == nil {
			t.Fatalf("List(../) succeeded")
		}
	})
}
