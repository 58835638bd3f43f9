package sink_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"golang.org/x/sync/errgroup"

	"github.com/selfheal/heal"
	"github.com/selfheal/heal/healtest"
	"github.com/selfheal/heal/internal/awstest"
	"github.com/selfheal/heal/sink"
)

// s3Server is one S3 implementation the store is tested against.
type s3Server struct {
	name string
	// client returns a client made with optFns and a fresh bucket.
	client func(t testing.TB, optFns ...func(*s3.Options)) (*s3.Client, string)
	// conditionalMultipart: the server honours If-None-Match on
	// CompleteMultipartUpload (S3 does; gofakes3 v1.2.0 ignores it).
	conditionalMultipart bool
}

var s3Servers = []s3Server{
	{name: "gofakes3", client: awstest.GoFakeS3},
	{name: "versitygw", client: awstest.ExternalS3, conditionalMultipart: true},
}

func s3ForEach(t *testing.T, f func(t *testing.T, srv s3Server)) {
	for _, srv := range s3Servers {
		t.Run(srv.name, func(t *testing.T) {
			t.Parallel()
			f(t, srv)
		})
	}
}

func s3Ctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func s3RandBytes(t testing.TB, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func s3ReadAll(t *testing.T, st sink.Store, name string) []byte {
	t.Helper()
	o, err := st.Open(s3Ctx(t), name)
	if err != nil {
		t.Fatalf("open %s: %v", name, err)
	}
	defer o.Close()
	b := make([]byte, o.Size())
	if _, err := o.ReadAt(b, 0); err != nil && err != io.EOF {
		t.Fatalf("read %s: %v", name, err)
	}
	return b
}

func s3ListNames(t *testing.T, st sink.Store, prefix string) []string {
	t.Helper()
	var names []string
	if err := st.List(s3Ctx(t), prefix, func(oi sink.ObjectInfo) error {
		names = append(names, oi.Name)
		return nil
	}); err != nil {
		t.Fatalf("list %q: %v", prefix, err)
	}
	return names
}

func TestS3StoreRoundTrip(t *testing.T) {
	s3ForEach(t, func(t *testing.T, srv s3Server) {
		c, bucket := srv.client(t)
		st := sink.NewS3Store(c, bucket, "lake/", nil)
		ctx := s3Ctx(t)
		// 200 KiB: reads before and within the cached 64 KiB tail.
		data := s3RandBytes(t, 200<<10)
		if err := st.Put(ctx, "ds/k=a/date=2024-01-02/1.parquet", data, false); err != nil {
			t.Fatal(err)
		}
		o, err := st.Open(ctx, "ds/k=a/date=2024-01-02/1.parquet")
		if err != nil {
			t.Fatal(err)
		}
		defer o.Close()
		if o.Size() != int64(len(data)) {
			t.Fatalf("Size = %d, want %d", o.Size(), len(data))
		}
		for _, r := range []struct{ off, n int }{{0, 10}, {len(data) - 8, 8}, {len(data) - 70000, 100}, {1000, 150000}, {len(data) - 100, 100}} {
			p := make([]byte, r.n)
			n, err := o.ReadAt(p, int64(r.off))
			if err != nil || n != r.n || !bytes.Equal(p, data[r.off:r.off+r.n]) {
				t.Fatalf("ReadAt(%d, %d) = %d, %v; equal %v", r.n, r.off, n, err, bytes.Equal(p, data[r.off:r.off+r.n]))
			}
		}
		// Reading past the end gives io.EOF with the bytes that exist.
		p := make([]byte, 50)
		if n, err := o.ReadAt(p, int64(len(data)-20)); n != 20 || err != io.EOF || !bytes.Equal(p[:20], data[len(data)-20:]) {
			t.Fatalf("ReadAt past end = %d, %v", n, err)
		}
		if n, err := o.ReadAt(p, int64(len(data))); n != 0 || err != io.EOF {
			t.Fatalf("ReadAt at end = %d, %v", n, err)
		}
		// Concurrent ReadAt (io.ReaderAt allows it; -race checks the tail cache).
		var g errgroup.Group
		for i := range 8 {
			g.Go(func() error {
				off := i * 20000
				q := make([]byte, 5000)
				if _, err := o.ReadAt(q, int64(off)); err != nil {
					return err
				}
				if !bytes.Equal(q, data[off:off+5000]) {
					return fmt.Errorf("concurrent ReadAt at %d: wrong bytes", off)
				}
				return nil
			})
		}
		if err := g.Wait(); err != nil {
			t.Fatal(err)
		}
		// Seek + Read.
		if pos, err := o.Seek(-30, io.SeekEnd); err != nil || pos != int64(len(data)-30) {
			t.Fatalf("Seek = %d, %v", pos, err)
		}
		got, err := io.ReadAll(o)
		if err != nil || !bytes.Equal(got, data[len(data)-30:]) {
			t.Fatalf("Read after Seek = %d bytes, %v", len(got), err)
		}
		if err := o.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := o.ReadAt(p, 0); !errors.Is(err, heal.ErrClosed) {
			t.Fatalf("ReadAt after Close = %v, want ErrClosed", err)
		}
		// Overwrite (not create-only) replaces.
		if err := st.Put(ctx, "ds/k=a/date=2024-01-02/1.parquet", []byte("v2"), false); err != nil {
			t.Fatal(err)
		}
		if got := s3ReadAll(t, st, "ds/k=a/date=2024-01-02/1.parquet"); string(got) != "v2" {
			t.Fatalf("after overwrite: %q", got)
		}
		// Empty objects are objects.
		if err := st.Put(ctx, "empty", nil, true); err != nil {
			t.Fatal(err)
		}
		if o, err := st.Open(ctx, "empty"); err != nil || o.Size() != 0 {
			t.Fatalf("open empty: %v", err)
		} else {
			_ = o.Close()
		}
		// The prefix is honoured: the key in the bucket is lake/...
		if _, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String("lake/empty")}); err != nil {
			t.Fatalf("object not under the prefix: %v", err)
		}
	})
}

func TestS3StoreNotFoundAndDelete(t *testing.T) {
	s3ForEach(t, func(t *testing.T, srv s3Server) {
		c, bucket := srv.client(t)
		st := sink.NewS3Store(c, bucket, "p", nil)
		ctx := s3Ctx(t)
		if _, err := st.Open(ctx, "missing/x"); !errors.Is(err, heal.ErrNotFound) {
			t.Fatalf("Open missing = %v, want ErrNotFound", err)
		}
		if err := st.Delete(ctx, "missing/x"); err != nil {
			t.Fatalf("Delete missing = %v", err)
		}
		if err := st.Put(ctx, "a/b", []byte("x"), false); err != nil {
			t.Fatal(err)
		}
		if err := st.Delete(ctx, "a/b"); err != nil {
			t.Fatal(err)
		}
		if _, err := st.Open(ctx, "a/b"); !errors.Is(err, heal.ErrNotFound) {
			t.Fatalf("Open deleted = %v, want ErrNotFound", err)
		}
		if n := s3ListNames(t, st, ""); len(n) != 0 {
			t.Fatalf("listed after delete: %v", n)
		}
		// Names the Store contract forbids never reach the bucket.
		for _, bad := range []string{"", "/abs", "a/../b", "a//b", "./a"} {
			if err := st.Put(ctx, bad, nil, false); err == nil || !heal.IsPermanent(err) {
				t.Errorf("Put(%q) = %v, want a permanent error", bad, err)
			}
		}
		// A missing bucket is a configuration error: permanent, not ErrNotFound.
		nb := sink.NewS3Store(c, bucket+"-missing", "", nil)
		if err := nb.Put(ctx, "x", []byte("x"), false); !heal.IsPermanent(err) {
			t.Fatalf("Put into a missing bucket = %v, want permanent", err)
		}
		if _, err := nb.Open(ctx, "x"); err == nil {
			t.Fatal("Open in a missing bucket succeeded")
		}
	})
}

func TestS3StoreList(t *testing.T) {
	s3ForEach(t, func(t *testing.T, srv s3Server) {
		c, bucket := srv.client(t)
		ctx := s3Ctx(t)
		// Names chosen so a directory-walking server would misorder them:
		// '-' (0x2d) and '.' (0x2e) sort before '/' (0x2f).
		names := []string{"a-b", "a.c", "a/b", "a/c/d", "a0", "b/x=1/y", "b/x=10/y", "b/x=2/y", "c"}
		st := sink.NewS3Store(c, bucket, "root", &sink.S3Options{PageSize: 2})
		for _, n := range names {
			if err := st.Put(ctx, n, []byte(n), false); err != nil {
				t.Fatal(err)
			}
		}
		// An object outside the prefix is not listed.
		if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String("rootless"), Body: strings.NewReader("x")}); err != nil {
			t.Fatal(err)
		}
		want := append([]string(nil), names...)
		sort.Strings(want)
		if got := s3ListNames(t, st, ""); strings.Join(got, ",") != strings.Join(want, ",") {
			t.Fatalf("List = %v, want %v", got, want)
		}
		if got := s3ListNames(t, st, "b/"); strings.Join(got, ",") != "b/x=1/y,b/x=10/y,b/x=2/y" {
			t.Fatalf("List(b/) = %v", got)
		}
		if got := s3ListNames(t, st, "a/"); strings.Join(got, ",") != "a/b,a/c/d" {
			t.Fatalf("List(a/) = %v", got)
		}
		var sizes int64
		_ = st.List(ctx, "c", func(oi sink.ObjectInfo) error {
			sizes += oi.Size
			if oi.ModTime.IsZero() {
				t.Error("ModTime is zero")
			}
			return nil
		})
		if sizes != 1 {
			t.Fatalf("List(c) sizes = %d", sizes)
		}
		// fn's error stops the listing and comes back as it is.
		stop := errors.New("stop")
		n := 0
		if err := st.List(ctx, "", func(sink.ObjectInfo) error { n++; return stop }); err != stop || n != 1 {
			t.Fatalf("List with a stopping fn = %v after %d calls", err, n)
		}
	})
}

// TestS3StoreListPaging lists more than 1000 keys, the most one
// ListObjectsV2 page can hold, both with the server's default page size
// and with a small one.
func TestS3StoreListPaging(t *testing.T) {
	s3ForEach(t, func(t *testing.T, srv s3Server) {
		c, bucket := srv.client(t)
		ctx := s3Ctx(t)
		const n = 1050
		st := sink.NewS3Store(c, bucket, "many", nil)
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(16)
		for i := range n {
			g.Go(func() error { return st.Put(gctx, fmt.Sprintf("k/%05d", i), []byte{byte(i)}, true) })
		}
		if err := g.Wait(); err != nil {
			t.Fatal(err)
		}
		for _, page := range []int32{0, 97} {
			st := sink.NewS3Store(c, bucket, "many", &sink.S3Options{PageSize: page})
			got := s3ListNames(t, st, "k/")
			if len(got) != n {
				t.Fatalf("page size %d: listed %d, want %d", page, len(got), n)
			}
			for i, name := range got {
				if name != fmt.Sprintf("k/%05d", i) {
					t.Fatalf("page size %d: item %d is %q", page, i, name)
				}
			}
		}
	})
}

func TestS3StoreCreateOnly(t *testing.T) {
	s3ForEach(t, func(t *testing.T, srv s3Server) {
		c, bucket := srv.client(t)
		st := sink.NewS3Store(c, bucket, "", nil)
		ctx := s3Ctx(t)
		if err := st.Put(ctx, "_heal/ledger/1", []byte("first"), true); err != nil {
			t.Fatal(err)
		}
		err := st.Put(ctx, "_heal/ledger/1", []byte("second"), true)
		if !errors.Is(err, heal.ErrExist) {
			t.Fatalf("second create-only Put = %v, want ErrExist", err)
		}
		if heal.IsPermanent(err) {
			t.Fatalf("ErrExist is a condition, not a permanent failure: %v", err)
		}
		if got := s3ReadAll(t, st, "_heal/ledger/1"); string(got) != "first" {
			t.Fatalf("the loser overwrote the winner: %q", got)
		}
	})
}

// TestS3StoreCreateOnlyRace: concurrent create-only puts of one name have
// exactly one winner, and what is stored is the winner's.
func TestS3StoreCreateOnlyRace(t *testing.T) {
	s3ForEach(t, func(t *testing.T, srv s3Server) {
		c, bucket := srv.client(t)
		st := sink.NewS3Store(c, bucket, "race", nil)
		ctx := s3Ctx(t)
		for round := range 5 {
			name := fmt.Sprintf("lock/%d", round)
			const writers = 12
			var wins atomic.Int32
			winner := make(chan string, writers)
			var wg sync.WaitGroup
			start := make(chan struct{})
			for w := range writers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					body := fmt.Sprintf("writer %d", w)
					err := st.Put(ctx, name, []byte(body), true)
					switch {
					case err == nil:
						wins.Add(1)
						winner <- body
					case errors.Is(err, heal.ErrExist):
					default:
						t.Errorf("writer %d: %v", w, err)
					}
				}()
			}
			close(start)
			wg.Wait()
			if wins.Load() != 1 {
				t.Fatalf("round %d: %d winners, want exactly 1", round, wins.Load())
			}
			if got := s3ReadAll(t, st, name); string(got) != <-winner {
				t.Fatalf("round %d: stored %q is not the winner's", round, got)
			}
		}
	})
}

func TestS3StoreMultipart(t *testing.T) {
	s3ForEach(t, func(t *testing.T, srv s3Server) {
		var parts atomic.Int32
		c, bucket := srv.client(t, s3CountOps(map[string]*atomic.Int32{"UploadPart": &parts}))
		st := sink.NewS3Store(c, bucket, "mp", &sink.S3Options{PartSize: 1}) // raised to 5 MiB
		ctx := s3Ctx(t)
		data := s3RandBytes(t, 11<<20+123)
		if err := st.Put(ctx, "big.parquet", data, true); err != nil {
			t.Fatal(err)
		}
		if parts.Load() != 3 {
			t.Fatalf("uploaded %d parts, want 3 of 5 MiB", parts.Load())
		}
		if got := s3ReadAll(t, st, "big.parquet"); !bytes.Equal(got, data) {
			t.Fatalf("read back %d bytes, not what was written", len(got))
		}
		if !srv.conditionalMultipart {
			t.Logf("%s ignores If-None-Match on CompleteMultipartUpload: create-only multipart race not checked here", srv.name)
			return
		}
		err := st.Put(ctx, "big.parquet", data[:6<<20], true)
		if !errors.Is(err, heal.ErrExist) {
			t.Fatalf("create-only multipart over an existing object = %v, want ErrExist", err)
		}
		if got := s3ReadAll(t, st, "big.parquet"); !bytes.Equal(got, data) {
			t.Fatal("the losing multipart upload replaced the object")
		}
		s3AssertNoUploads(t, c, bucket)
	})
}

// TestS3StoreMultipartAborted: a multipart upload that fails midway, by a
// part refused or by the caller's ctx ending, is aborted: no upload is
// left pending and no object appears.
func TestS3StoreMultipartAborted(t *testing.T) {
	s3ForEach(t, func(t *testing.T, srv s3Server) {
		var aborts atomic.Int32
		fault := func(o *s3.Options) {
			o.APIOptions = append(o.APIOptions, func(stack *middleware.Stack) error {
				return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("fault", func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
					if up, ok := in.Parameters.(*s3.UploadPartInput); ok && aws.ToInt32(up.PartNumber) == 2 {
						return middleware.InitializeOutput{}, middleware.Metadata{}, errors.New("injected fault in part 2")
					}
					return next.HandleInitialize(ctx, in)
				}), middleware.Before)
			})
		}
		c, bucket := srv.client(t, fault, s3CountOps(map[string]*atomic.Int32{"AbortMultipartUpload": &aborts}))
		st := sink.NewS3Store(c, bucket, "", &sink.S3Options{PartSize: 5 << 20, Concurrency: 1})
		ctx := s3Ctx(t)
		err := st.Put(ctx, "failed.parquet", s3RandBytes(t, 12<<20), false)
		if err == nil || !strings.Contains(err.Error(), "injected fault") {
			t.Fatalf("Put = %v, want the injected fault", err)
		}
		if aborts.Load() != 1 {
			t.Fatalf("%d AbortMultipartUpload calls, want 1", aborts.Load())
		}
		s3AssertNoUploads(t, c, bucket)
		if _, err := st.Open(ctx, "failed.parquet"); !errors.Is(err, heal.ErrNotFound) {
			t.Fatalf("a failed upload left an object: %v", err)
		}

		// The caller's ctx ends while parts are in flight: still aborted.
		slow, bucket2 := srv.client(t, func(o *s3.Options) {
			o.APIOptions = append(o.APIOptions, func(stack *middleware.Stack) error {
				return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("slow", func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
					if _, ok := in.Parameters.(*s3.UploadPartInput); ok {
						<-ctx.Done()
						return middleware.InitializeOutput{}, middleware.Metadata{}, ctx.Err()
					}
					return next.HandleInitialize(ctx, in)
				}), middleware.Before)
			})
		})
		st2 := sink.NewS3Store(slow, bucket2, "", nil)
		cctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		defer cancel()
		if err := st2.Put(cctx, "canceled.parquet", s3RandBytes(t, 17<<20), false); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Put with an expiring ctx = %v", err)
		}
		s3AssertNoUploads(t, slow, bucket2)
	})
}

func s3AssertNoUploads(t *testing.T, c *s3.Client, bucket string) {
	t.Helper()
	out, err := c.ListMultipartUploads(s3Ctx(t), &s3.ListMultipartUploadsInput{Bucket: aws.String(bucket)})
	var ae smithy.APIError
	if errors.As(err, &ae) && ae.ErrorCode() == "NoSuchUpload" {
		// gofakes3 v1.2.0 answers so for a bucket in which no upload ever
		// began (S3 lists none): on a loaded machine the caller's deadline
		// can end a Put before its CreateMultipartUpload is sent.
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Uploads) != 0 {
		t.Fatalf("%d multipart uploads left pending, first %s", len(out.Uploads), aws.ToString(out.Uploads[0].Key))
	}
}

// countOps counts calls of the named operations.
func s3CountOps(counters map[string]*atomic.Int32) func(*s3.Options) {
	return func(o *s3.Options) {
		o.APIOptions = append(o.APIOptions, func(stack *middleware.Stack) error {
			return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("count", func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
				if c := counters[middleware.GetOperationName(ctx)]; c != nil {
					c.Add(1)
				}
				return next.HandleInitialize(ctx, in)
			}), middleware.Before)
		})
	}
}

// recordHeaders records the HTTP headers of each request sent, by operation.
type recordHeaders struct {
	mu  sync.Mutex
	got map[string][]http.Header
}

func (r *recordHeaders) option(o *s3.Options) {
	o.APIOptions = append(o.APIOptions, func(stack *middleware.Stack) error {
		return stack.Finalize.Add(middleware.FinalizeMiddlewareFunc("record", func(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
			if req, ok := in.Request.(*smithyhttp.Request); ok {
				r.mu.Lock()
				if r.got == nil {
					r.got = map[string][]http.Header{}
				}
				op := middleware.GetOperationName(ctx)
				r.got[op] = append(r.got[op], req.Header.Clone())
				r.mu.Unlock()
			}
			return next.HandleFinalize(ctx, in)
		}), middleware.After)
	})
}

func (r *recordHeaders) header(op, name string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var vs []string
	for _, h := range r.got[op] {
		vs = append(vs, h.Get(name))
	}
	return vs
}

func TestS3StoreSSE(t *testing.T) {
	t.Run("kms-headers", func(t *testing.T) {
		// The headers S3 needs for SSE-KMS, recorded on the wire. gofakes3
		// ignores them, so this checks what is sent, not what is stored.
		var rec recordHeaders
		c, bucket := awstest.GoFakeS3(t, rec.option)
		st := sink.NewS3Store(c, bucket, "", &sink.S3Options{SSE: "aws:kms", KMSKeyID: "alias/heal-test", PartSize: 5 << 20})
		ctx := s3Ctx(t)
		if err := st.Put(ctx, "small", []byte("x"), true); err != nil {
			t.Fatal(err)
		}
		if err := st.Put(ctx, "big", s3RandBytes(t, 6<<20), false); err != nil {
			t.Fatal(err)
		}
		for _, op := range []string{"PutObject", "CreateMultipartUpload"} {
			if got := rec.header(op, "X-Amz-Server-Side-Encryption"); len(got) != 1 || got[0] != "aws:kms" {
				t.Errorf("%s sse header = %q, want aws:kms", op, got)
			}
			if got := rec.header(op, "X-Amz-Server-Side-Encryption-Aws-Kms-Key-Id"); len(got) != 1 || got[0] != "alias/heal-test" {
				t.Errorf("%s kms key header = %q", op, got)
			}
		}
		if got := rec.header("PutObject", "If-None-Match"); len(got) != 1 || got[0] != "*" {
			t.Errorf("create-only PutObject If-None-Match = %q", got)
		}
	})
	t.Run("sse-s3-versitygw", func(t *testing.T) {
		var rec recordHeaders
		c, bucket := awstest.ExternalS3(t, rec.option)
		st := sink.NewS3Store(c, bucket, "", &sink.S3Options{SSE: "AES256"})
		ctx := s3Ctx(t)
		if err := st.Put(ctx, "enc", []byte("secret data"), false); err != nil {
			t.Fatal(err)
		}
		if got := rec.header("PutObject", "X-Amz-Server-Side-Encryption"); len(got) != 1 || got[0] != "AES256" {
			t.Errorf("PutObject sse header = %q, want AES256", got)
		}
		h, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String("enc")})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("versitygw reports ServerSideEncryption %q for the object", h.ServerSideEncryption)
		if got := s3ReadAll(t, st, "enc"); string(got) != "secret data" {
			t.Fatalf("read back %q", got)
		}
	})
	t.Run("bad-options", func(t *testing.T) {
		c, bucket := awstest.GoFakeS3(t)
		for _, o := range []sink.S3Options{{SSE: "aws:kms:dsse"}, {SSE: "AES256", KMSKeyID: "k"}} {
			st := sink.NewS3Store(c, bucket, "", &o)
			if err := st.Put(s3Ctx(t), "x", nil, false); !heal.IsPermanent(err) {
				t.Errorf("options %+v: Put = %v, want a permanent error", o, err)
			}
		}
	})
}

// TestS3StoreAuthIsPermanent: wrong credentials are a permanent failure,
// and the error does not carry the secret.
func TestS3StoreAuthIsPermanent(t *testing.T) {
	ep := awstest.Endpoint(t, awstest.EnvS3Endpoint, "versitygw")
	c := awstest.S3Client(awstest.Config("heal-ci", "wrong-secret-value"), ep)
	st := sink.NewS3Store(c, "heal-none", "", nil)
	err := st.Put(s3Ctx(t), "x", []byte("x"), false)
	if !heal.IsPermanent(err) {
		t.Fatalf("Put with wrong credentials = %v, want permanent", err)
	}
	if strings.Contains(err.Error(), "wrong-secret-value") {
		t.Fatalf("the error holds the secret: %v", err)
	}
}

func TestParseS3URL(t *testing.T) {
	for _, tc := range []struct {
		in, bucket, prefix string
		bad                bool
	}{
		{in: "s3://bucket/prefix", bucket: "bucket", prefix: "prefix"},
		{in: "s3://bucket/a/b/", bucket: "bucket", prefix: "a/b"},
		{in: "s3://bucket", bucket: "bucket"},
		{in: "s3://bucket/?region=eu-west-1", bucket: "bucket"},
		{in: "gs://bucket/x", bad: true},
		{in: "s3:///x", bad: true},
		{in: "s3://key:secret@bucket/x", bad: true},
	} {
		b, p, err := sink.ParseS3URL(tc.in)
		if tc.bad {
			if err == nil {
				t.Errorf("ParseS3URL(%q) succeeded", tc.in)
			} else if strings.Contains(err.Error(), "secret") && !strings.Contains(err.Error(), "credential") {
				t.Errorf("error repeats the url's secret: %v", err)
			}
			continue
		}
		if err != nil || b != tc.bucket || p != tc.prefix {
			t.Errorf("ParseS3URL(%q) = %q, %q, %v", tc.in, b, p, err)
		}
	}
}

// TestOpenS3 opens a store by URL with the standard AWS configuration,
// pointed at versitygw the standard way (AWS_ENDPOINT_URL_S3).
func TestOpenS3(t *testing.T) {
	_, bucket := awstest.ExternalS3(t)
	t.Setenv("AWS_ENDPOINT_URL_S3", awstest.Endpoint(t, awstest.EnvS3Endpoint, "versitygw"))
	t.Setenv("AWS_ACCESS_KEY_ID", os.Getenv(awstest.EnvS3AccessKey))
	t.Setenv("AWS_SECRET_ACCESS_KEY", os.Getenv(awstest.EnvS3SecretKey))
	t.Setenv("AWS_CONFIG_FILE", "/dev/null")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	ctx := s3Ctx(t)
	st, err := sink.OpenS3(ctx, "s3://"+bucket+"/via/url?region=us-east-1&use_path_style=true", nil)
	if err != nil {
		t.Fatal(err)
	}
	if st.URL() != "s3://"+bucket+"/via/url/" {
		t.Fatalf("URL = %q", st.URL())
	}
	if err := st.Put(ctx, "x", []byte("hello"), true); err != nil {
		t.Fatal(err)
	}
	if got := s3ReadAll(t, st, "x"); string(got) != "hello" {
		t.Fatalf("read back %q", got)
	}
}

// TestS3StoreContract runs the Store checks DirStore and MemStore pass.
func TestS3StoreContract(t *testing.T) {
	s3ForEach(t, func(t *testing.T, srv s3Server) {
		c, bucket := srv.client(t)
		testStore(t, sink.NewS3Store(c, bucket, "store", nil))
	})
}

// TestS3Conformance runs the shared Lake conformance suite over
// sink.NewLake on an S3Store, on each server. Each case gets a bucket of
// its own.
func TestS3Conformance(t *testing.T) {
	s3ForEach(t, func(t *testing.T, srv s3Server) {
		healtest.RunLakeTests(t, func(_ context.Context, t *testing.T) (healtest.LakeHarness, error) {
			c, bucket := srv.client(t)
			return &harness{store: sink.NewS3Store(c, bucket, "lake", nil)}, nil
		})
	})
}
