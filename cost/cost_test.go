package cost_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/memory"

	"github.com/selfheal/heal"
	"github.com/selfheal/heal/cost"
	"github.com/selfheal/heal/healtest"
	"github.com/selfheal/heal/sink"
)

var t0 = time.Date(2024, 3, 4, 14, 0, 0, 0, time.UTC)

func ticks() *heal.Dataset {
	return &heal.Dataset{
		Name: "ticks",
		Schema: arrow.NewSchema([]arrow.Field{
			{Name: "symbol", Type: arrow.BinaryTypes.String},
			{Name: "ts", Type: &arrow.TimestampType{Unit: arrow.Millisecond, TimeZone: "UTC"}},
			{Name: "value", Type: arrow.PrimitiveTypes.Float64},
		}, nil),
		Key: "symbol", Time: "ts", Grain: time.Minute,
	}
}

// source serves one row per key and minute over HTTP-free Fetch; live
// polls of dropped slots come back empty. Each call goes through an
// http.Client, so the meter's Transport sees it.
type source struct {
	ds   *heal.Dataset
	drop func(key string, t time.Time) bool
	hc   *http.Client
	url  string
}

func (s *source) Limits() heal.Limits { return heal.Limits{MaxWindow: time.Hour, MaxKeys: 10} }

func (s *source) Fetch(ctx context.Context, req heal.Request) (arrow.Record, error) {
	if s.hc != nil {
		r, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.url, nil)
		resp, err := s.hc.Do(r)
		if err != nil {
			return nil, err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	b := array.NewRecordBuilder(memory.DefaultAllocator, s.ds.Schema)
	defer b.Release()
	for _, k := range req.Keys {
		for t := req.Window.Start; t.Before(req.Window.End); t = t.Add(time.Minute) {
			if req.Live && s.drop(k, t) {
				continue
			}
			b.Field(0).(*array.StringBuilder).Append(k)
			b.Field(1).(*array.TimestampBuilder).Append(arrow.Timestamp(t.UnixMilli()))
			b.Field(2).(*array.Float64Builder).Append(float64(t.Minute()))
		}
	}
	return b.NewRecord(), nil
}

func TestMeterEngine(t *testing.T) {
	ctx := context.Background()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write(bytes.Repeat([]byte("x"), 100))
	}))
	defer srv.Close()
	clk := healtest.NewManualClock(t0)
	m := cost.NewMeter("ticks", &cost.Options{Clock: clk})
	lake := sink.NewLake(m.Store(sink.NewMemStore()), nil)
	keys := []string{"A", "B", "C"}
	src := &source{ds: ticks(), drop: func(k string, t time.Time) bool { return k == "B" && t.Minute()%10 == 3 },
		hc: &http.Client{Transport: m.Transport(nil)}, url: srv.URL}
	eng, err := heal.New(ticks(), src, lake, &heal.Options{Keys: keys, Clock: clk, Observer: m})
	if err != nil {
		t.Fatal(err)
	}
	w := heal.Window{Start: t0, End: t0.Add(time.Hour)}
	for s := w.Start; s.Before(w.End); s = s.Add(time.Minute) {
		clk.Set(s.Add(time.Second))
		if _, err := eng.Acquire(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	clk.Set(w.End.Add(5 * time.Minute))
	rep, err := eng.Heal(ctx, w)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Repaired != 6 {
		t.Fatalf("repaired %d, want 6", rep.Repaired)
	}
	r, err := m.Flush(ctx, lake)
	if err != nil {
		t.Fatal(err)
	}
	acq, rp, au := r.Stages[heal.StageAcquire], r.Stages[heal.StageRepair], r.Stages[heal.StageAudit]
	if acq == nil || rp == nil || au == nil {
		t.Fatalf("stages %v: want acquire, repair and audit", r.Stages)
	}
	if acq.SourceCalls != 60 || rp.SourceCalls != int64(rep.Calls) {
		t.Errorf("source calls: live %d (want 60), repair %d (want %d)", acq.SourceCalls, rp.SourceCalls, rep.Calls)
	}
	if acq.SourceBytes != 6000 || rp.SourceBytes != 100*int64(rep.Calls) {
		t.Errorf("source bytes: live %d (want 6000), repair %d", acq.SourceBytes, rp.SourceBytes)
	}
	// Every tick writes one file: at least one PUT per minute.
	if acq.Requests[cost.Put] < 60 || acq.BytesWritten == 0 {
		t.Errorf("live path: %d PUTs, %d bytes written", acq.Requests[cost.Put], acq.BytesWritten)
	}
	if rp.Requests[cost.Put] == 0 || au.Requests[cost.List] == 0 {
		t.Errorf("repair PUTs %d, audit LISTs %d: want both", rp.Requests[cost.Put], au.Requests[cost.List])
	}
	if r.Events.Repaired != 6 || r.Events.Gaps != 6 || r.Events.Audits != 1 || r.Events.LiveRows != 174 {
		t.Errorf("events %+v", r.Events)
	}
	if r.StoredBytes <= 0 || r.StoredObjects == 0 {
		t.Errorf("storage not measured: %d bytes in %d objects", r.StoredBytes, r.StoredObjects)
	}
	if !r.Start.Equal(t0) || !r.End.Equal(clk.Now()) {
		t.Errorf("interval %s–%s, want the meter clock's", r.Start, r.End)
	}
	var cpu time.Duration
	for _, u := range r.Stages {
		cpu += u.CPU
	}
	if cpu != r.CPU {
		t.Errorf("stages' CPU add up to %s, process CPU %s", cpu, r.CPU)
	}

	// The record is in the lake; a second flush with nothing new writes nothing.
	if again, err := m.Flush(ctx, lake); err != nil || again != nil {
		t.Fatalf("empty flush: %v, %v", again, err)
	}
	recs, err := cost.Load(ctx, lake, "ticks", heal.Window{})
	if err != nil || len(recs) != 1 {
		t.Fatalf("Load: %d records, %v", len(recs), err)
	}
	if recs[0].Stages[heal.StageRepair].SourceCalls != rp.SourceCalls {
		t.Errorf("loaded record differs: %+v", recs[0].Stages[heal.StageRepair])
	}
	if old, _ := cost.Load(ctx, lake, "ticks", heal.Window{Start: t0.Add(-48 * time.Hour), End: t0.Add(-24 * time.Hour)}); len(old) != 0 {
		t.Errorf("Load outside the window returned %d records", len(old))
	}

	s := cost.Summarize(recs, cost.DefaultPrices(), time.Hour)
	if s.Healing <= 0 || s.Pipeline <= 0 || s.Storage <= 0 {
		t.Errorf("summary: healing %g, pipeline %g, storage %g: want all positive", s.Healing, s.Pipeline, s.Storage)
	}
	if math.Abs(s.PerRepair-s.Healing/6) > 1e-15 {
		t.Errorf("per repair %g, want %g", s.PerRepair, s.Healing/6)
	}
	if s.Stages[0].Stage != heal.StageAcquire || !s.Stages[len(s.Stages)-1].Healing {
		t.Errorf("stage order: %v", s.Stages)
	}
}

func TestStoreCountsAsS3(t *testing.T) {
	ctx := context.Background()
	m := cost.NewMeter("d", nil)
	st := m.Store(sink.NewMemStore())
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	small := make([]byte, 100<<10)
	must(st.Put(ctx, "d/a", small, false))
	must(st.Put(ctx, "d/big", make([]byte, sink.DefaultS3PartSize+1), false)) // 2 parts + create + complete
	obj, err := st.Open(ctx, "d/a")                                           // HEAD
	must(err)
	buf := make([]byte, 8)
	for i := 0; i < 3; i++ {
		_, err = obj.ReadAt(buf, int64(len(small)-8)) // the tail: one GET, once
		must(err)
	}
	_, err = obj.ReadAt(buf, 0) // before the tail: one GET
	must(err)
	obj.Close()
	for i := 0; i < 2500; i++ {
		must(st.Put(ctx, fmt.Sprintf("d/many/%04d", i), nil, false))
	}
	n := 0
	must(st.List(ctx, "d/many/", func(sink.ObjectInfo) error { n++; return nil })) // 3 pages
	must(st.Delete(ctx, "d/a"))
	u := m.Snapshot().Stages[cost.StageOther]
	want := map[cost.Request]int64{cost.Put: 1 + 4 + 2500, cost.Get: 1 + 1 + 1, cost.List: 3, cost.Delete: 1}
	for k, v := range want {
		if u.Requests[k] != v {
			t.Errorf("%s requests: %d, want %d", k, u.Requests[k], v)
		}
	}
	if u.BytesWritten != int64(len(small))+sink.DefaultS3PartSize+1 {
		t.Errorf("bytes written %d", u.BytesWritten)
	}
	if u.BytesRead != 64<<10+8 {
		t.Errorf("bytes read %d, want the 64 KiB tail and 8", u.BytesRead)
	}
	if _, ok := st.(interface{ Unwrap() sink.Store }); !ok {
		t.Error("the decorated store has no Unwrap")
	}
	dir, err := sink.NewDirStore(t.TempDir())
	must(err)
	if c, ok := m.Store(dir).(interface {
		CleanTemp(time.Duration) (int, error)
	}); !ok {
		t.Error("a decorated DirStore hides CleanTemp")
	} else if _, err := c.CleanTemp(time.Hour); err != nil {
		t.Error(err)
	}
}

// failing is a MetaStore whose puts fail while fail is set.
type failing struct {
	heal.MetaStore
	fail bool
}

func (f *failing) PutMeta(ctx context.Context, name string, data []byte) error {
	if f.fail {
		return errors.New("s3 is down")
	}
	return f.MetaStore.PutMeta(ctx, name, data)
}

func TestFlushKeepsCountsOnFailure(t *testing.T) {
	ctx := context.Background()
	clk := healtest.NewManualClock(t0)
	m := cost.NewMeter("d", &cost.Options{Clock: clk})
	meta := &failing{MetaStore: sink.NewMemLake(nil), fail: true}
	m.Observe(heal.Event{Kind: heal.EventFetch, Dataset: "d", Live: true})
	m.Observe(heal.Event{Kind: heal.EventFetch, Dataset: "other", Live: true}) // not ours
	clk.Set(t0.Add(time.Hour))
	if _, err := m.Flush(ctx, meta); err == nil {
		t.Fatal("flush to a failing store succeeded")
	}
	m.Observe(heal.Event{Kind: heal.EventFetch, Dataset: "d", Err: errors.New("503")})
	clk.Set(t0.Add(2 * time.Hour))
	meta.fail = false
	r, err := m.Flush(ctx, meta)
	if err != nil {
		t.Fatal(err)
	}
	if !r.Start.Equal(t0) || r.Stages[heal.StageAcquire].SourceCalls != 1 || r.Stages[heal.StageRepair].SourceErrors != 1 {
		t.Fatalf("after a failed flush: start %s, stages %+v %+v", r.Start, r.Stages[heal.StageAcquire], r.Stages[heal.StageRepair])
	}
}

func TestPricesSet(t *testing.T) {
	p := cost.DefaultPrices()
	if err := p.Set("source-month=49.99, cpu-hour=$0.1"); err != nil {
		t.Fatal(err)
	}
	if p.SourceMonthly != 49.99 || p.CPUHour != 0.1 || p.PutPer1000 != 0.005 {
		t.Fatalf("prices %+v", p)
	}
	for _, bad := range []string{"nope=1", "put", "put=-1", "get=abc"} {
		q := p
		if err := q.Set(bad); err == nil {
			t.Errorf("Set(%q) accepted", bad)
		} else if q != p {
			t.Errorf("Set(%q) failed but changed the prices", bad)
		}
	}
	var q cost.Prices
	if err := q.Set(p.String()); err != nil || q != p {
		t.Errorf("String/Set round trip: %v, %+v", err, q)
	}
	if !strings.Contains(strings.Join(cost.PriceNames(), " "), "source-month") {
		t.Error("PriceNames lacks source-month")
	}
}

func TestSummarize(t *testing.T) {
	day := time.Date(2024, 3, 4, 0, 0, 0, 0, time.UTC)
	recs := []cost.Record{{
		Dataset: "d", Start: day, End: day.Add(12 * time.Hour), CPU: time.Hour, StoredBytes: 1 << 30,
		Events: cost.Events{Repaired: 4, Audits: 2},
		Stages: map[heal.Stage]*cost.Usage{
			heal.StageAcquire: {SourceCalls: 3, Requests: map[cost.Request]int64{cost.Put: 1000}, CPU: 45 * time.Minute},
			heal.StageRepair:  {SourceCalls: 1, Requests: map[cost.Request]int64{cost.Get: 1000}, CPU: 15 * time.Minute},
		},
	}, {
		Dataset: "d", Start: day.Add(12 * time.Hour), End: day.Add(36 * time.Hour), StoredBytes: -1,
		Stages: map[heal.Stage]*cost.Usage{},
	}}
	p := cost.Prices{PutPer1000: 1, GetPer1000: 2, StorageGBMonth: 730, CPUHour: 8, SourceMonthly: 30 * 24, SourcePerCall: 0.5}
	s := cost.Summarize(recs, p, 24*time.Hour)
	// Storage: 1 GB for 36 hours at $1 per GB-hour; the second record uses the size measured before.
	if math.Abs(s.Storage-36) > 1e-9 {
		t.Errorf("storage $%g, want $36", s.Storage)
	}
	// Subscription: $1 an hour; 12h split 3:1 by calls, 24h with no calls to the live path.
	acq, rep := s.Stages[0], s.Stages[1]
	if acq.Stage != heal.StageAcquire || rep.Stage != heal.StageRepair {
		t.Fatalf("stages %+v", s.Stages)
	}
	if math.Abs(acq.Source-(9+24+1.5)) > 1e-9 || math.Abs(rep.Source-(3+0.5)) > 1e-9 {
		t.Errorf("source: live $%g (want 34.5), repair $%g (want 3.5)", acq.Source, rep.Source)
	}
	if acq.Requests != 1 || rep.Requests != 2 || acq.Compute != 6 || rep.Compute != 2 {
		t.Errorf("requests %g/%g, compute %g/%g", acq.Requests, rep.Requests, acq.Compute, rep.Compute)
	}
	if math.Abs(s.Healing-7.5) > 1e-9 || math.Abs(s.Pipeline-(34.5+1+6+36)) > 1e-9 {
		t.Errorf("healing $%g (want 7.5), pipeline $%g (want 77.5)", s.Healing, s.Pipeline)
	}
	if s.PerRepair != 7.5/4 || s.PerAudit != 7.5/2 {
		t.Errorf("per repair %g, per audit %g", s.PerRepair, s.PerAudit)
	}
	if len(s.Periods) != 2 || s.Periods[0].Repaired != 4 || math.Abs(s.Periods[0].Healing-7.5) > 1e-9 {
		t.Errorf("periods %+v", s.Periods)
	}
	var sum float64
	for _, pd := range s.Periods {
		sum += pd.Pipeline + pd.Healing
	}
	if math.Abs(sum-s.Total) > 1e-9 {
		t.Errorf("periods add up to $%g, total $%g", sum, s.Total)
	}
}

func TestDollarsAndBytes(t *testing.T) {
	for v, want := range map[float64]string{0: "$0", 12.345: "$12.35", 0.0123: "$0.0123", 0.000012: "$0.0000120"} {
		if got := cost.Dollars(v); got != want {
			t.Errorf("Dollars(%g) = %q, want %q", v, got, want)
		}
	}
	for n, want := range map[int64]string{512: "512 B", 1536: "1.5 KiB", 3 << 20: "3.0 MiB"} {
		if got := cost.Bytes(n); got != want {
			t.Errorf("Bytes(%d) = %q, want %q", n, got, want)
		}
	}
}
