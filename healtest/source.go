package healtest

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/memory"

	"github.com/selfheal/heal"
)

// Condition is the state a [SourceHarness] puts its source in, so the suite
// can check how each failure is classified.
type Condition int

// The conditions a source suite asks for. A harness that cannot simulate
// one returns ErrUnsupported from MakeSource and the case is skipped.
const (
	Healthy      Condition = iota // answers normally
	Unauthorized                  // bad credentials or plan: errors must be heal.Permanent
	Unavailable                   // 5xx or timeouts: errors must be retryable (not Permanent)
	RateLimited                   // throttled: errors must be *heal.RetryAfterError with a wait
)

// ErrUnsupported is returned by a harness for a condition it cannot make.
var ErrUnsupported = errors.New("healtest: condition not supported by this harness")

// SourceHarness sets up a Source under test and tells the suite where its
// data is.
type SourceHarness interface {
	// Dataset is the dataset the source produces.
	Dataset() *heal.Dataset
	// MakeSource returns the source in the given condition, allocating
	// records from mem.
	MakeSource(ctx context.Context, cond Condition, mem memory.Allocator) (heal.Source, error)
	// Keys have data within DataWindow.
	Keys() []string
	// DataWindow is a historical window holding data for every key.
	DataWindow() heal.Window
	// EmptyWindow is a historical window holding no data for any key.
	EmptyWindow() heal.Window
	// LiveSlot is a slot a live request may ask for.
	LiveSlot() time.Time
	Close()
}

// SourceHarnessMaker makes a harness for one test.
type SourceHarnessMaker func(ctx context.Context, t *testing.T) (SourceHarness, error)

// RunSourceTests checks a [heal.Source] against the contract written on the
// interface: records of the dataset's schema holding only requested keys
// within the requested window, an empty window answered as no data (not as
// an error and not as a nil record), errors classified as permanent,
// retryable or retry-after, the context respected, concurrent calls safe,
// and every Arrow buffer released.
func RunSourceTests(t *testing.T, newHarness SourceHarnessMaker) {
	cases := []struct {
		name string
		fn   func(t *testing.T, h SourceHarness, mem memory.Allocator)
	}{
		{"Limits", testSourceLimits},
		{"History", testSourceHistory},
		{"HistoryAtMaxWindow", testSourceMaxWindow},
		{"NoData", testSourceNoData},
		{"Live", testSourceLive},
		{"Unauthorized", func(t *testing.T, h SourceHarness, mem memory.Allocator) {
			testSourceCondition(t, h, mem, Unauthorized)
		}},
		{"Unavailable", func(t *testing.T, h SourceHarness, mem memory.Allocator) { testSourceCondition(t, h, mem, Unavailable) }},
		{"RateLimited", func(t *testing.T, h SourceHarness, mem memory.Allocator) { testSourceCondition(t, h, mem, RateLimited) }},
		{"CanceledContext", testSourceCanceled},
		{"Concurrent", testSourceConcurrent},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx := context.Background()
			h, err := newHarness(ctx, t)
			if err != nil {
				t.Fatal(err)
			}
			defer h.Close()
			mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
			defer mem.AssertSize(t, 0)
			c.fn(t, h, mem)
		})
	}
}

func makeSource(t *testing.T, h SourceHarness, cond Condition, mem memory.Allocator) heal.Source {
	t.Helper()
	src, err := h.MakeSource(context.Background(), cond, mem)
	if errors.Is(err, ErrUnsupported) {
		t.Skipf("harness cannot simulate condition %d", cond)
	}
	if err != nil {
		t.Fatal(err)
	}
	return src
}

func testSourceLimits(t *testing.T, h SourceHarness, mem memory.Allocator) {
	l := makeSource(t, h, Healthy, mem).Limits()
	if l.MaxWindow < 0 || l.MaxKeys < 0 {
		t.Errorf("Limits() = %+v: negative limits", l)
	}
	for _, r := range l.Rates {
		if r.Calls <= 0 || r.Per <= 0 {
			t.Errorf("Limits() rate %+v: want positive calls per positive duration", r)
		}
	}
}

// checkRecord asserts rec has the dataset's schema and only rows of keys
// within w. It returns the rows per key.
func checkRecord(t *testing.T, ds *heal.Dataset, rec arrow.Record, keys []string, w heal.Window) map[string]int {
	t.Helper()
	if err := ds.CheckSchema(rec.Schema()); err != nil {
		t.Fatalf("record schema: %v", err)
	}
	out := map[string]int{}
	ks := rec.Column(ds.KeyIndex()).(*array.String)
	ts := rec.Column(ds.TimeIndex()).(*array.Timestamp)
	for i := 0; i < int(rec.NumRows()); i++ {
		if ks.IsNull(i) || ts.IsNull(i) {
			t.Fatalf("row %d: null key or time", i)
		}
		k, at := ks.Value(i), ds.Slot(ts.Value(i).ToTime(ds.TimeUnit()))
		found := false
		for _, x := range keys {
			found = found || x == k
		}
		if !found {
			t.Errorf("row %d: key %q was not requested (%v)", i, k, keys)
		}
		if !w.Contains(at) {
			t.Errorf("row %d: time %s outside the requested window %s", i, at, w)
		}
		out[k]++
	}
	return out
}

func testSourceHistory(t *testing.T, h SourceHarness, mem memory.Allocator) {
	src := makeSource(t, h, Healthy, mem)
	w := h.DataWindow()
	for _, k := range h.Keys() {
		rec, err := src.Fetch(context.Background(), heal.Request{Keys: []string{k}, Window: w})
		if err != nil {
			t.Fatalf("Fetch %s %s: %v", k, w, err)
		}
		got := checkRecord(t, h.Dataset(), rec, []string{k}, w)
		rec.Release()
		if got[k] == 0 {
			t.Errorf("Fetch %s %s: no rows, but the harness says there is data", k, w)
		}
	}
}

func testSourceMaxWindow(t *testing.T, h SourceHarness, mem memory.Allocator) {
	src := makeSource(t, h, Healthy, mem)
	l := src.Limits()
	if l.MaxWindow == 0 {
		t.Skip("source declares no window limit")
	}
	w := heal.Window{Start: h.DataWindow().Start, End: h.DataWindow().Start.Add(l.MaxWindow)}
	rec, err := src.Fetch(context.Background(), heal.Request{Keys: h.Keys()[:1], Window: w})
	if err != nil && !errors.Is(err, heal.ErrNoData) {
		t.Fatalf("a request of exactly MaxWindow (%s) failed: %v", l.MaxWindow, err)
	}
	if rec != nil {
		checkRecord(t, h.Dataset(), rec, h.Keys()[:1], w)
		rec.Release()
	}
}

func testSourceNoData(t *testing.T, h SourceHarness, mem memory.Allocator) {
	src := makeSource(t, h, Healthy, mem)
	w := h.EmptyWindow()
	rec, err := src.Fetch(context.Background(), heal.Request{Keys: h.Keys()[:1], Window: w})
	if errors.Is(err, heal.ErrNoData) {
		if rec != nil {
			rec.Release()
			t.Error("Fetch returned a record with ErrNoData")
		}
		return
	}
	if err != nil {
		t.Fatalf("empty window %s: %v; want a zero-row record or ErrNoData", w, err)
	}
	if rec == nil {
		t.Fatal("empty window: nil record and nil error; want a zero-row record or ErrNoData")
	}
	defer rec.Release()
	if rec.NumRows() != 0 {
		t.Errorf("empty window %s: %d rows", w, rec.NumRows())
	}
}

func testSourceLive(t *testing.T, h SourceHarness, mem memory.Allocator) {
	src := makeSource(t, h, Healthy, mem)
	ds := h.Dataset()
	slot := ds.Slot(h.LiveSlot())
	w := heal.Window{Start: slot, End: slot.Add(ds.Grain)}
	k := h.Keys()[:1]
	rec, err := src.Fetch(context.Background(), heal.Request{Keys: k, Window: w, Live: true})
	if err != nil {
		t.Fatalf("live Fetch %v %s: %v", k, w, err)
	}
	defer rec.Release()
	if got := checkRecord(t, ds, rec, k, w); got[k[0]] > 1 {
		t.Errorf("live Fetch returned %d rows for one key and one slot", got[k[0]])
	}
}

func testSourceCondition(t *testing.T, h SourceHarness, mem memory.Allocator, cond Condition) {
	src := makeSource(t, h, cond, mem)
	rec, err := src.Fetch(context.Background(), heal.Request{Keys: h.Keys()[:1], Window: h.DataWindow()})
	if rec != nil {
		rec.Release()
	}
	if err == nil {
		t.Fatal("Fetch succeeded in a failing condition")
	}
	var ra *heal.RetryAfterError
	switch cond {
	case Unauthorized:
		if !heal.IsPermanent(err) {
			t.Errorf("unauthorized: %v is not heal.Permanent; the engine would retry it", err)
		}
	case Unavailable:
		if heal.IsPermanent(err) {
			t.Errorf("unavailable: %v is Permanent; the engine would give up at once", err)
		}
	case RateLimited:
		if heal.IsPermanent(err) || !errors.As(err, &ra) || ra.Wait <= 0 {
			t.Errorf("rate limited: %v; want a retryable *heal.RetryAfterError with a positive wait", err)
		}
	}
}

func testSourceCanceled(t *testing.T, h SourceHarness, mem memory.Allocator) {
	src := makeSource(t, h, Healthy, mem)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		rec, err := src.Fetch(ctx, heal.Request{Keys: h.Keys()[:1], Window: h.DataWindow()})
		if rec != nil {
			rec.Release()
		}
		if err == nil {
			t.Error("Fetch with a canceled context succeeded")
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Fetch ignored a canceled context for 10s")
	}
}

func testSourceConcurrent(t *testing.T, h SourceHarness, mem memory.Allocator) {
	src := makeSource(t, h, Healthy, mem)
	var wg sync.WaitGroup
	for _, k := range h.Keys() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rec, err := src.Fetch(context.Background(), heal.Request{Keys: []string{k}, Window: h.DataWindow()})
			if err != nil {
				t.Errorf("concurrent Fetch %s: %v", k, err)
				return
			}
			rec.Release()
		}()
	}
	wg.Wait()
}
