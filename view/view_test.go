package view_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/memory"

	"github.com/selfheal/heal"
	"github.com/selfheal/heal/healtest"
	"github.com/selfheal/heal/sink"
	"github.com/selfheal/heal/view"
)

var t0 = time.Date(2024, 3, 4, 10, 0, 0, 0, time.UTC)

func price(key string, t time.Time) float64 {
	return float64(len(key)*1000) + float64(t.Hour()*100+t.Minute()) + float64(key[0])/1000
}

// source answers every slot of every key, except the live polls it drops.
type source struct {
	ds   *heal.Dataset
	mem  memory.Allocator
	drop map[string]map[time.Time]bool
}

func (s *source) Limits() heal.Limits { return heal.Limits{MaxKeys: 10} }

func (s *source) Fetch(ctx context.Context, req heal.Request) (arrow.Record, error) {
	var rows []healtest.Row
	for _, k := range req.Keys {
		for at := req.Window.Start; at.Before(req.Window.End); at = at.Add(s.ds.Grain) {
			if req.Live && s.drop[k][at] {
				continue
			}
			rows = append(rows, healtest.Row{Key: k, Time: at, Price: price(k, at)})
		}
	}
	return healtest.Records(s.mem, s.ds, rows...), nil
}

// rig is a lake, an engine feeding a view, and the view served over HTTP.
type rig struct {
	ctx   context.Context
	mem   *memory.CheckedAllocator
	lake  *sink.Lake
	ds    *heal.Dataset
	clock *healtest.ManualClock
	eng   *heal.Engine
	view  *view.View
	srv   *httptest.Server
}

func newRig(t *testing.T, vopts view.Options, drop map[string]map[time.Time]bool) *rig {
	t.Helper()
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	t.Cleanup(func() { mem.AssertSize(t, 0) })
	r := &rig{ctx: context.Background(), mem: mem, lake: sink.NewMemLake(&sink.Options{Allocator: mem}),
		ds: healtest.QuotesDataset(), clock: healtest.NewManualClock(t0)}
	vopts.Clock = r.clock
	var err error
	if r.view, err = view.New(r.lake, &vopts); err != nil {
		t.Fatal(err)
	}
	src := &source{ds: r.ds, mem: mem, drop: drop}
	r.eng, err = heal.New(r.ds, src, r.lake, &heal.Options{
		Keys: []string{"A", "BB"}, Clock: r.clock, Allocator: mem, Observer: r.view,
		Retry: heal.RetryPolicy{Jitter: -1},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.view.Add(r.ds, &view.Track{Auditor: r.eng}); err != nil {
		t.Fatal(err)
	}
	r.srv = httptest.NewServer(r.view.Handler())
	t.Cleanup(r.srv.Close)
	return r
}

// acquire polls the slots [t0, t0+n minutes) live.
func (r *rig) acquire(t *testing.T, n int) {
	t.Helper()
	for i := range n {
		at := t0.Add(time.Duration(i) * time.Minute)
		r.clock.Set(at)
		if _, err := r.eng.Acquire(r.ctx, at); err != nil {
			t.Fatal(err)
		}
	}
}

// get fetches path and decodes its JSON body into out, returning the status.
func (r *rig) get(t *testing.T, path string, out any) int {
	t.Helper()
	resp, err := r.srv.Client().Get(r.srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("GET %s: Content-Type %q", path, ct)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, out); err != nil {
		t.Fatalf("GET %s: %v in %s", path, err, b)
	}
	return resp.StatusCode
}

type row struct {
	Symbol string  `json:"symbol"`
	TS     string  `json:"ts"`
	Price  float64 `json:"price"`
}

func latestOf(t *testing.T, st view.State, key string) (time.Time, row) {
	t.Helper()
	for _, l := range st.Keys {
		if l.Key != key {
			continue
		}
		if l.Time == nil {
			t.Fatalf("key %s: no latest slot", key)
		}
		var rw row
		if err := json.Unmarshal(l.Row, &rw); err != nil {
			t.Fatal(err)
		}
		return *l.Time, rw
	}
	t.Fatalf("key %s not in %+v", key, st.Keys)
	return time.Time{}, row{}
}

func TestLatestFollowsRepairOverHTTP(t *testing.T) {
	min := func(i int) time.Time { return t0.Add(time.Duration(i) * time.Minute) }
	// BB's last live poll is lost, and one older one; A loses an older one.
	drop := map[string]map[time.Time]bool{"BB": {min(9): true, min(3): true}, "A": {min(5): true}}
	r := newRig(t, view.Options{Window: 10 * time.Minute, MinCompleteness: 1}, drop)
	if err := r.view.Refresh(r.ctx); err != nil { // an empty lake
		t.Fatal(err)
	}
	r.acquire(t, 10)
	r.clock.Set(min(11))
	if err := r.view.Sync(r.ctx); err != nil {
		t.Fatal(err)
	}

	var st view.State
	if code := r.get(t, "/v1/datasets/quotes/latest", &st); code != http.StatusOK {
		t.Fatalf("latest: status %d", code)
	}
	if at, rw := latestOf(t, st, "A"); !at.Equal(min(9)) || rw.Price != price("A", min(9)) || rw.Symbol != "A" || rw.TS != "2024-03-04T10:09:00Z" {
		t.Errorf("A before repair: %s %+v, want 10:09 price %g", at, rw, price("A", min(9)))
	}
	if at, rw := latestOf(t, st, "BB"); !at.Equal(min(8)) || rw.Price != price("BB", min(8)) {
		t.Errorf("BB before repair: %s %+v, want 10:08", at, rw)
	}

	// The audit of the recent window sees the holes: /v1/health degrades.
	if err := r.view.Refresh(r.ctx); err != nil {
		t.Fatal(err)
	}
	var h view.Health
	if code := r.get(t, "/v1/health", &h); code != http.StatusServiceUnavailable || h.Status != "degraded" {
		t.Fatalf("health before repair: %d %+v", code, h)
	}
	if d := h.Datasets[0]; !reflect.DeepEqual(d.Incomplete, []string{"A", "BB"}) || d.Completeness.Missing != 3 || d.Completeness.Expected != 20 {
		t.Errorf("health before repair: %+v %+v", d, d.Completeness)
	}

	rep, err := r.eng.Heal(r.ctx, heal.Window{Start: min(0), End: min(10)})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Repaired != 3 {
		t.Fatalf("repaired %d slots, want 3", rep.Repaired)
	}
	// The repair's events alone bring BB's latest forward.
	if err := r.view.Sync(r.ctx); err != nil {
		t.Fatal(err)
	}
	var one view.State
	if code := r.get(t, "/v1/datasets/quotes/latest?key=BB", &one); code != http.StatusOK || len(one.Keys) != 1 {
		t.Fatalf("latest?key=BB: %d %+v", code, one)
	}
	if at, rw := latestOf(t, one, "BB"); !at.Equal(min(9)) || rw.Price != price("BB", min(9)) {
		t.Errorf("BB after repair: %s %+v, want 10:09 price %g", at, rw, price("BB", min(9)))
	}

	// The incrementally kept state is what a fresh read of the lake gives.
	if code := r.get(t, "/v1/datasets/quotes/latest", &st); code != http.StatusOK {
		t.Fatal(code)
	}
	fresh, err := view.New(r.lake, &view.Options{Clock: r.clock})
	if err != nil {
		t.Fatal(err)
	}
	if err := fresh.Add(r.ds, nil); err != nil {
		t.Fatal(err)
	}
	if err := fresh.Refresh(r.ctx); err != nil {
		t.Fatal(err)
	}
	want, err := fresh.State("quotes")
	if err != nil {
		t.Fatal(err)
	}
	if len(want.Keys) != 2 || len(st.Keys) != 2 {
		t.Fatalf("keys: got %d, a fresh view %d", len(st.Keys), len(want.Keys))
	}
	for i := range want.Keys {
		g, w := st.Keys[i], want.Keys[i]
		if g.Key != w.Key || !g.Time.Equal(*w.Time) || string(compact(t, g.Row)) != string(compact(t, w.Row)) {
			t.Errorf("key %s: kept %s %s, fresh read %s %s", w.Key, g.Time, g.Row, w.Time, w.Row)
		}
	}

	// Healed and audited again: whole, fresh, ok.
	if err := r.view.Refresh(r.ctx); err != nil {
		t.Fatal(err)
	}
	if code := r.get(t, "/v1/health", &h); code != http.StatusOK || h.Status != "ok" {
		t.Fatalf("health after repair: %d %+v", code, h)
	}
	if d := h.Datasets[0]; d.Completeness.Share != 1 || d.Keys != 2 || !d.Latest.Equal(min(9)) || d.MaxAgeSeconds != 120 {
		t.Errorf("health after repair: %+v", d)
	}
}

func compact(t *testing.T, b json.RawMessage) []byte {
	t.Helper()
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	out, _ := json.Marshal(v)
	return out
}

func TestRepairOfAnOlderSlotKeepsTheLatest(t *testing.T) {
	r := newRig(t, view.Options{}, map[string]map[time.Time]bool{"A": {t0.Add(2 * time.Minute): true}})
	r.acquire(t, 5)
	if err := r.view.Refresh(r.ctx); err != nil {
		t.Fatal(err)
	}
	before, err := r.view.State("quotes", "A")
	if err != nil {
		t.Fatal(err)
	}
	r.clock.Set(t0.Add(6 * time.Minute))
	if rep, err := r.eng.Heal(r.ctx, heal.Window{Start: t0, End: t0.Add(5 * time.Minute)}); err != nil || rep.Repaired != 1 {
		t.Fatalf("heal: %+v %v", rep, err)
	}
	if err := r.view.Sync(r.ctx); err != nil {
		t.Fatal(err)
	}
	after, err := r.view.State("quotes", "A")
	if err != nil {
		t.Fatal(err)
	}
	if !after.Keys[0].Time.Equal(t0.Add(4*time.Minute)) || string(after.Keys[0].Row) != string(before.Keys[0].Row) {
		t.Errorf("latest of A moved: %s %s, was %s %s", after.Keys[0].Time, after.Keys[0].Row, before.Keys[0].Time, before.Keys[0].Row)
	}
}

func TestErrorsAreJSON(t *testing.T) {
	r := newRig(t, view.Options{}, nil)
	r.acquire(t, 1)
	if err := r.view.Refresh(r.ctx); err != nil {
		t.Fatal(err)
	}
	type errBody struct {
		Error struct {
			Status  int    `json:"status"`
			Message string `json:"message"`
		} `json:"error"`
	}
	for _, tc := range []struct {
		name, path string
		code       int
		msg        string
	}{
		{"unknown dataset", "/v1/datasets/nope/latest", 404, `dataset "nope" is not served`},
		{"unknown key", "/v1/datasets/quotes/latest?key=ZZZ", 404, `no key "ZZZ"`},
		{"unknown path", "/v2/things", 404, "no such resource /v2/things"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b errBody
			if code := r.get(t, tc.path, &b); code != tc.code || b.Error.Status != tc.code || !strings.Contains(b.Error.Message, tc.msg) {
				t.Errorf("GET %s: %d %+v, want %d %q", tc.path, code, b, tc.code, tc.msg)
			}
		})
	}
	resp, err := r.srv.Client().Post(r.srv.URL+"/v1/health", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET, HEAD" {
		t.Errorf("POST /v1/health: %d, Allow %q", resp.StatusCode, resp.Header.Get("Allow"))
	}
	var list struct{ Datasets []string }
	if code := r.get(t, "/v1/datasets", &list); code != 200 || !reflect.DeepEqual(list.Datasets, []string{"quotes"}) {
		t.Errorf("/v1/datasets: %d %+v", code, list)
	}
}

func TestMaxKeysBoundsTheState(t *testing.T) {
	r := newRig(t, view.Options{MaxKeys: 1}, nil)
	r.acquire(t, 3)
	if err := r.view.Refresh(r.ctx); err != nil {
		t.Fatal(err)
	}
	r.acquire(t, 4) // events for both keys
	if err := r.view.Sync(r.ctx); err != nil {
		t.Fatal(err)
	}
	st, err := r.view.State("quotes")
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Keys) != 1 || st.Keys[0].Key != "A" || !st.Truncated || !st.Keys[0].Time.Equal(t0.Add(3*time.Minute)) {
		t.Errorf("state with MaxKeys 1: %+v", st)
	}
}

func TestRowValues(t *testing.T) {
	r := newRig(t, view.Options{}, nil)
	rec := healtest.Records(r.mem, r.ds, healtest.Row{Key: "A", Time: t0, Price: math.NaN()}, healtest.Row{Key: "BB", Time: t0, Price: math.Inf(-1)})
	defer rec.Release()
	if err := r.lake.Write(r.ctx, r.ds, rec); err != nil {
		t.Fatal(err)
	}
	if err := r.view.Refresh(r.ctx); err != nil {
		t.Fatal(err)
	}
	st, err := r.view.State("quotes")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"A": `{"price":"NaN","symbol":"A","ts":"2024-03-04T10:00:00Z"}`, "BB": `{"price":"-Inf","symbol":"BB","ts":"2024-03-04T10:00:00Z"}`}
	for _, l := range st.Keys {
		if string(l.Row) != want[l.Key] {
			t.Errorf("row of %s: %s, want %s", l.Key, l.Row, want[l.Key])
		}
	}
}

func TestServeStopsWithItsContext(t *testing.T) {
	r := newRig(t, view.Options{}, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(r.ctx)
	done := make(chan error, 1)
	go func() { done <- r.view.Serve(ctx, ln) }()
	resp, err := http.Get("http://" + ln.Addr().String() + "/v1/health")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	// Never refreshed: degraded until the first Refresh.
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("health of a view never refreshed: %d", resp.StatusCode)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Serve after cancel: %v", err)
	}
	if _, err := http.Get("http://" + ln.Addr().String() + "/v1/health"); err == nil || errors.Is(err, context.Canceled) {
		t.Errorf("the server still answers after Serve returned: %v", err)
	}
}
