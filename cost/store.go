package cost

import (
	"context"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/selfheal/heal"
	"github.com/selfheal/heal/sink"
)

// s3TailSize mirrors sink.S3Store: the first read within the last 64 KiB
// of an object fetches that whole tail with one GET.
const s3TailSize = 64 << 10

// Store returns s decorated to count every request the lake makes through
// it, by the stage in the call's ctx, as sink.S3Store would issue them (see
// the package doc). The meter measures storage through s at each Flush.
// Build the lake over the result: sink.NewLake(m.Store(s), opts).
func (m *Meter) Store(s sink.Store) sink.Store {
	m.mu.Lock()
	m.store = s
	m.mu.Unlock()
	return &meteredStore{s: s, m: m}
}

type meteredStore struct {
	s sink.Store
	m *Meter
}

// Unwrap returns the decorated store.
func (s *meteredStore) Unwrap() sink.Store { return s.s }

// CleanTemp passes on to the decorated store (sink.DirStore removes the
// temporary files of puts a crash interrupted; the lake calls it when it
// compacts), so decorating does not turn the clean-up off.
func (s *meteredStore) CleanTemp(olderThan time.Duration) (int, error) {
	if c, ok := s.s.(interface {
		CleanTemp(time.Duration) (int, error)
	}); ok {
		return c.CleanTemp(olderThan)
	}
	return 0, nil
}

func (s *meteredStore) Put(ctx context.Context, name string, data []byte, ifAbsent bool) error {
	if ctx.Value(selfKey{}) == s.m {
		return s.s.Put(ctx, name, data, ifAbsent)
	}
	t0 := time.Now()
	err := s.s.Put(ctx, name, data, ifAbsent)
	n := int64(1)
	if size := int64(len(data)); size > sink.DefaultS3PartSize {
		n = (size+sink.DefaultS3PartSize-1)/sink.DefaultS3PartSize + 2 // create, parts, complete
	}
	s.m.lake(heal.StageOf(ctx), Put, n, int64(len(data)), 0, time.Since(t0))
	return err
}

func (s *meteredStore) Open(ctx context.Context, name string) (sink.Object, error) {
	t0 := time.Now()
	obj, err := s.s.Open(ctx, name)
	stage := heal.StageOf(ctx)
	s.m.lake(stage, Get, 1, 0, 0, time.Since(t0)) // HEAD
	if err != nil {
		return nil, err
	}
	return &meteredObject{Object: obj, m: s.m, stage: stage}, nil
}

func (s *meteredStore) List(ctx context.Context, prefix string, fn func(sink.ObjectInfo) error) error {
	t0 := time.Now()
	var names int64
	var inFn time.Duration
	err := s.s.List(ctx, prefix, func(oi sink.ObjectInfo) error {
		names++
		t := time.Now()
		err := fn(oi)
		inFn += time.Since(t)
		return err
	})
	pages := max(1, (names+999)/1000)
	s.m.lake(heal.StageOf(ctx), List, pages, 0, 0, time.Since(t0)-inFn)
	return err
}

func (s *meteredStore) Delete(ctx context.Context, name string) error {
	t0 := time.Now()
	err := s.s.Delete(ctx, name)
	s.m.lake(heal.StageOf(ctx), Delete, 1, 0, 0, time.Since(t0))
	return err
}

// meteredObject counts the GETs sink.S3Store would make to serve the reads.
type meteredObject struct {
	sink.Object
	m        *Meter
	stage    heal.Stage
	tailOnce sync.Once
	pos      atomic.Int64
}

func (o *meteredObject) ReadAt(p []byte, off int64) (int, error) {
	t0 := time.Now()
	n, err := o.Object.ReadAt(p, off)
	took := time.Since(t0)
	size := o.Object.Size()
	if off >= size || len(p) == 0 {
		return n, err
	}
	tailOff := max(0, size-s3TailSize)
	if off >= tailOff {
		counted := false
		o.tailOnce.Do(func() {
			o.m.lake(o.stage, Get, 1, 0, size-tailOff, took)
			counted = true
		})
		if !counted {
			o.m.lake(o.stage, Get, 0, 0, 0, took)
		}
		return n, err
	}
	o.m.lake(o.stage, Get, 1, 0, int64(n), took)
	return n, err
}

func (o *meteredObject) Read(p []byte) (int, error) {
	pos := o.pos.Load()
	n, err := o.ReadAt(p, pos)
	o.pos.Store(pos + int64(n))
	if err == io.EOF && n > 0 {
		err = nil
	}
	return n, err
}

func (o *meteredObject) Seek(off int64, whence int) (int64, error) {
	var abs int64
	switch whence {
	case io.SeekStart:
		abs = off
	case io.SeekCurrent:
		abs = o.pos.Load() + off
	case io.SeekEnd:
		abs = o.Object.Size() + off
	}
	if _, err := o.Object.Seek(abs, io.SeekStart); err != nil {
		return 0, err
	}
	o.pos.Store(abs)
	return abs, nil
}

// Transport returns rt (nil: http.DefaultTransport) decorated to count the
// bytes of every response body read, by the stage in the request's
// context: give it to an HTTP source's client (for examples/finnhub,
// finnhub.Options.HTTPClient = &http.Client{Transport: m.Transport(nil)}).
func (m *Meter) Transport(rt http.RoundTripper) http.RoundTripper {
	if rt == nil {
		rt = http.DefaultTransport
	}
	return &meteredTransport{rt: rt, m: m}
}

type meteredTransport struct {
	rt http.RoundTripper
	m  *Meter
}

func (t *meteredTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.rt.RoundTrip(req)
	if err != nil || resp.Body == nil {
		return resp, err
	}
	resp.Body = &countingBody{ReadCloser: resp.Body, m: t.m, ctx: req.Context()}
	return resp, nil
}

type countingBody struct {
	io.ReadCloser
	m   *Meter
	ctx context.Context
	n   int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n += int64(n)
	return n, err
}

func (b *countingBody) Close() error {
	if b.n > 0 {
		b.m.AddSourceBytes(b.ctx, b.n)
		b.n = 0
	}
	return b.ReadCloser.Close()
}
