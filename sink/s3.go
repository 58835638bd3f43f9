package sink

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"golang.org/x/sync/errgroup"

	"github.com/selfheal/heal"
)

// S3Options configures an [S3Store]. A nil *S3Options, or any zero field,
// means the default written beside the field.
type S3Options struct {
	// PartSize is the size of the parts of a multipart upload. An object
	// larger than PartSize is uploaded in parts; a smaller one with a single
	// PutObject. 0: 16 MiB. Values under 5 MiB, the smallest part S3
	// accepts, are raised to 5 MiB.
	PartSize int64
	// Concurrency bounds the parts of one multipart upload in flight.
	// <=0: 4.
	Concurrency int
	// SSE asks S3 to encrypt what Put stores: "" (the bucket's default),
	// "AES256" (SSE-S3) or "aws:kms" (SSE-KMS, with KMSKeyID). Any other
	// value makes Put fail with a permanent error.
	SSE string
	// KMSKeyID is the KMS key for SSE "aws:kms". "": the account's
	// aws/s3 key.
	KMSKeyID string
	// PageSize is the number of keys asked for per ListObjectsV2 page.
	// 0: the server's default (1000 on S3, which is also its maximum).
	PageSize int32
}

// Defaults of [S3Options].
const (
	DefaultS3PartSize = 16 << 20
	minS3PartSize     = 5 << 20
	// s3TailSize is how much of the end of an object the first read near
	// its end fetches: a Parquet footer and its length in one request.
	s3TailSize = 64 << 10
)

// S3Store is a [Store] in an S3 bucket, under a prefix. It works with any
// S3-compatible server that supports conditional writes (If-None-Match),
// which AWS S3 has since 2024.
//
// # Atomicity and races
//
// An object is committed whole: a single PutObject, or a multipart upload
// that becomes visible only when completed and is aborted on any failure
// (so no parts are left billed). Create-only puts send If-None-Match: *, so
// S3 itself settles the race between two writers: the loser gets 412
// PreconditionFailed (or 409 ConditionalRequestConflict while the winner's
// write is in flight), which Put reports as [heal.ErrExist].
//
// One caveat comes with conditional writes on S3: if the SDK client retries
// a create-only put whose first attempt landed but whose response was lost,
// the retry finds the object and Put reports ErrExist for a write that in
// fact succeeded. Callers that must tell the two apart compare the stored
// contents.
//
// # Errors
//
// Open maps NoSuchKey/404 to [heal.ErrNotFound]. Throttling, 5xx, request
// timeouts and network errors are returned as they are (retryable); other
// 4xx answers (access denied, no such bucket, invalid input) are marked
// with [heal.Permanent]. Errors name the bucket and key, never credentials.
//
// # Reads
//
// Open makes one HeadObject; reads are ranged GetObjects pinned to the ETag
// seen by Open (so an object replaced while open fails the read rather
// than mixing two versions). The first read within the last 64 KiB fetches
// that whole tail at once: a small Parquet file costs one HEAD and one GET.
type S3Store struct {
	client   *s3.Client
	bucket   string
	prefix   string // "" or ending in "/"
	partSize int64
	conc     int
	sse      types.ServerSideEncryption
	kmsKeyID *string
	pageSize *int32
	optErr   error
}

var _ Store = (*S3Store)(nil)

// NewS3Store returns a Store keeping objects in bucket under prefix
// (e.g. "lake" stores name "a/b" at "lake/a/b"; "" is the bucket's root).
// The client is the caller's: its config decides credentials, region and
// endpoint (build it with config.LoadDefaultConfig and s3.NewFromConfig).
// Retries are the client's too: a Store does not retry by itself.
func NewS3Store(client *s3.Client, bucket, prefix string, opts *S3Options) *S3Store {
	var o S3Options
	if opts != nil {
		o = *opts
	}
	s := &S3Store{client: client, bucket: bucket, prefix: normPrefix(prefix)}
	s.partSize = o.PartSize
	if s.partSize <= 0 {
		s.partSize = DefaultS3PartSize
	} else if s.partSize < minS3PartSize {
		s.partSize = minS3PartSize
	}
	s.conc = o.Concurrency
	if s.conc <= 0 {
		s.conc = 4
	}
	switch o.SSE {
	case "":
	case string(types.ServerSideEncryptionAes256):
		s.sse = types.ServerSideEncryptionAes256
	case string(types.ServerSideEncryptionAwsKms):
		s.sse = types.ServerSideEncryptionAwsKms
		if o.KMSKeyID != "" {
			s.kmsKeyID = aws.String(o.KMSKeyID)
		}
	default:
		s.optErr = heal.Permanent(fmt.Errorf("heal/sink: s3: unknown SSE %q: want \"\", \"AES256\" or \"aws:kms\"", o.SSE))
	}
	if o.SSE != string(types.ServerSideEncryptionAwsKms) && o.KMSKeyID != "" && s.optErr == nil {
		s.optErr = heal.Permanent(errors.New("heal/sink: s3: KMSKeyID is set but SSE is not \"aws:kms\""))
	}
	if o.PageSize > 0 {
		s.pageSize = aws.Int32(o.PageSize)
	}
	return s
}

func normPrefix(p string) string {
	p = strings.Trim(p, "/")
	if p == "" {
		return ""
	}
	return p + "/"
}

// Bucket is the bucket the store keeps its objects in.
func (s *S3Store) Bucket() string { return s.bucket }

// Prefix is the key prefix of the store's objects: "" or ending in "/".
func (s *S3Store) Prefix() string { return s.prefix }

// Client is the S3 client the store was made with.
func (s *S3Store) Client() *s3.Client { return s.client }

// URL is "s3://bucket/prefix", for logs and for [ParseS3URL].
func (s *S3Store) URL() string { return "s3://" + s.bucket + "/" + s.prefix }

func (s *S3Store) key(name string) string { return s.prefix + name }

func (s *S3Store) where(name string) string { return "s3://" + s.bucket + "/" + s.prefix + name }

// Put stores data under name: one PutObject up to PartSize, a multipart
// upload above it. With ifAbsent it is a conditional write (If-None-Match:
// *) and a name already taken gives an error for which
// errors.Is(err, heal.ErrExist).
func (s *S3Store) Put(ctx context.Context, name string, data []byte, ifAbsent bool) error {
	if s.optErr != nil {
		return s.optErr
	}
	if err := validName(name); err != nil {
		return heal.Permanent(err)
	}
	if int64(len(data)) > s.partSize {
		return s.putMultipart(ctx, name, data, ifAbsent)
	}
	in := &s3.PutObjectInput{
		Bucket:               aws.String(s.bucket),
		Key:                  aws.String(s.key(name)),
		Body:                 bytes.NewReader(data),
		ContentLength:        aws.Int64(int64(len(data))),
		ServerSideEncryption: s.sse,
		SSEKMSKeyId:          s.kmsKeyID,
	}
	if ifAbsent {
		in.IfNoneMatch = aws.String("*")
	}
	_, err := s.client.PutObject(ctx, in)
	return s.putErr("put", name, err, ifAbsent)
}

func (s *S3Store) putErr(op, name string, err error, ifAbsent bool) error {
	if err == nil {
		return nil
	}
	if ifAbsent && isConditionFailed(err) {
		return fmt.Errorf("heal/sink: s3 %s %s: %w (%w)", op, s.where(name), heal.ErrExist, err)
	}
	return classifyAWS(fmt.Errorf("heal/sink: s3 %s %s: %w", op, s.where(name), err))
}

// isConditionFailed reports a lost create-only race: 412 when the object
// exists, 409 ConditionalRequestConflict while a concurrent conditional
// write of the same key is in flight.
func isConditionFailed(err error) bool {
	switch awsCode(err) {
	case "PreconditionFailed", "ConditionalRequestConflict":
		return true
	}
	st := awsStatus(err)
	return st == 412 || (st == 409 && awsCode(err) == "")
}

func (s *S3Store) putMultipart(ctx context.Context, name string, data []byte, ifAbsent bool) (err error) {
	key := aws.String(s.key(name))
	created, err := s.client.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{
		Bucket:               aws.String(s.bucket),
		Key:                  key,
		ServerSideEncryption: s.sse,
		SSEKMSKeyId:          s.kmsKeyID,
		ChecksumAlgorithm:    types.ChecksumAlgorithmCrc32,
	})
	if err != nil {
		return s.putErr("create multipart upload", name, err, false)
	}
	uploadID := created.UploadId
	defer func() {
		if err == nil {
			return
		}
		// Abort even when ctx ended: parts left behind are billed and
		// never listed. A fresh deadline bounds it.
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if _, aerr := s.client.AbortMultipartUpload(actx, &s3.AbortMultipartUploadInput{
			Bucket: aws.String(s.bucket), Key: key, UploadId: uploadID,
		}); aerr != nil {
			err = errors.Join(err, fmt.Errorf("heal/sink: s3 abort multipart upload %s: %w", s.where(name), aerr))
		}
	}()

	n := int((int64(len(data)) + s.partSize - 1) / s.partSize)
	parts := make([]types.CompletedPart, n)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(s.conc)
	for i := range n {
		off := int64(i) * s.partSize
		end := min(off+s.partSize, int64(len(data)))
		g.Go(func() error {
			out, err := s.client.UploadPart(gctx, &s3.UploadPartInput{
				Bucket:            aws.String(s.bucket),
				Key:               key,
				UploadId:          uploadID,
				PartNumber:        aws.Int32(int32(i + 1)),
				Body:              bytes.NewReader(data[off:end]),
				ContentLength:     aws.Int64(end - off),
				ChecksumAlgorithm: types.ChecksumAlgorithmCrc32,
			})
			if err != nil {
				return err
			}
			parts[i] = types.CompletedPart{PartNumber: aws.Int32(int32(i + 1)), ETag: out.ETag, ChecksumCRC32: out.ChecksumCRC32}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return s.putErr("upload part", name, err, false)
	}
	in := &s3.CompleteMultipartUploadInput{
		Bucket:          aws.String(s.bucket),
		Key:             key,
		UploadId:        uploadID,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: parts},
	}
	if ifAbsent {
		in.IfNoneMatch = aws.String("*")
	}
	_, err = s.client.CompleteMultipartUpload(ctx, in)
	return s.putErr("complete multipart upload", name, err, ifAbsent)
}

// Open returns a reader over name after one HeadObject, or an error for
// which errors.Is(err, heal.ErrNotFound). Reads made through the Object use
// ctx: they fail once it ends.
func (s *S3Store) Open(ctx context.Context, name string) (Object, error) {
	if err := validName(name); err != nil {
		return nil, heal.Permanent(err)
	}
	h, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(s.key(name))})
	if err != nil {
		return nil, s.readErr("open", name, err)
	}
	return &s3Object{ctx: ctx, s: s, name: name, size: aws.ToInt64(h.ContentLength), etag: h.ETag}, nil
}

func (s *S3Store) readErr(op, name string, err error) error {
	if isNotFound(err) {
		return fmt.Errorf("heal/sink: s3 %s %s: %w", op, s.where(name), heal.ErrNotFound)
	}
	return classifyAWS(fmt.Errorf("heal/sink: s3 %s %s: %w", op, s.where(name), err))
}

// isNotFound reports a missing object (not a missing bucket, which is a
// configuration error).
func isNotFound(err error) bool {
	var nsk *types.NoSuchKey
	var nf *types.NotFound
	switch {
	case errors.As(err, &nsk), errors.As(err, &nf):
		return true
	case awsCode(err) == "NoSuchBucket":
		return false
	}
	return awsStatus(err) == 404
}

// List calls fn for each object under prefix in lexical order, one
// ListObjectsV2 page at a time.
func (s *S3Store) List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error {
	in := &s3.ListObjectsV2Input{
		Bucket:  aws.String(s.bucket),
		Prefix:  aws.String(s.prefix + prefix),
		MaxKeys: s.pageSize,
	}
	last := ""
	for {
		out, err := s.client.ListObjectsV2(ctx, in)
		if err != nil {
			return classifyAWS(fmt.Errorf("heal/sink: s3 list %s: %w", s.where(prefix), err))
		}
		for _, o := range out.Contents {
			k := aws.ToString(o.Key)
			if !strings.HasPrefix(k, s.prefix) || validName(k[len(s.prefix):]) != nil {
				continue // like DirStore and MemStore: no dot elements (.DS_Store, ._SUCCESS.crc)
			}
			if k <= last {
				// S3 lists in UTF-8 binary order; a server that does not
				// would break the Store's contract silently.
				return fmt.Errorf("heal/sink: s3 list %s: server returned %q after %q: not in lexical order", s.where(prefix), k, last)
			}
			last = k
			if err := fn(ObjectInfo{Name: k[len(s.prefix):], Size: aws.ToInt64(o.Size), ModTime: aws.ToTime(o.LastModified)}); err != nil {
				return err
			}
		}
		if !aws.ToBool(out.IsTruncated) || aws.ToString(out.NextContinuationToken) == "" {
			return nil
		}
		in.ContinuationToken = out.NextContinuationToken
	}
}

// Delete removes name; a missing name is not an error.
func (s *S3Store) Delete(ctx context.Context, name string) error {
	if err := validName(name); err != nil {
		return heal.Permanent(err)
	}
	_, err := s.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(s.key(name))})
	if err != nil && !isNotFound(err) {
		return classifyAWS(fmt.Errorf("heal/sink: s3 delete %s: %w", s.where(name), err))
	}
	return nil
}

// s3Object reads one object with ranged GETs. ReadAt may be called
// concurrently (as io.ReaderAt allows); Read and Seek share a position and
// may not.
type s3Object struct {
	ctx    context.Context // Open's: io.ReaderAt has no ctx of its own
	s      *S3Store
	name   string
	size   int64
	etag   *string
	pos    int64
	closed atomic.Bool

	tailOnce sync.Once
	tailOff  int64
	tail     []byte
	tailErr  error
}

func (o *s3Object) Size() int64 { return o.size }

func (o *s3Object) Close() error {
	o.closed.Store(true)
	return nil
}

func (o *s3Object) ReadAt(p []byte, off int64) (int, error) {
	if o.closed.Load() {
		return 0, fmt.Errorf("heal/sink: s3 read %s: %w", o.s.where(o.name), heal.ErrClosed)
	}
	if off < 0 {
		return 0, fmt.Errorf("heal/sink: s3 read %s: negative offset", o.s.where(o.name))
	}
	if off >= o.size {
		return 0, io.EOF
	}
	want := int64(len(p))
	n := min(want, o.size-off)
	tailOff := max(0, o.size-s3TailSize)
	if off >= tailOff {
		o.tailOnce.Do(func() {
			o.tailOff = tailOff
			o.tail = make([]byte, o.size-tailOff)
			o.tailErr = o.get(o.tail, tailOff)
		})
		if o.tailErr != nil {
			return 0, o.tailErr
		}
		copy(p[:n], o.tail[off-o.tailOff:])
	} else if err := o.get(p[:n], off); err != nil {
		return 0, err
	}
	if n < want {
		return int(n), io.EOF
	}
	return int(n), nil
}

// get fills p from the object at off with one ranged GetObject.
func (o *s3Object) get(p []byte, off int64) error {
	if len(p) == 0 {
		return nil
	}
	out, err := o.s.client.GetObject(o.ctx, &s3.GetObjectInput{
		Bucket:  aws.String(o.s.bucket),
		Key:     aws.String(o.s.key(o.name)),
		Range:   aws.String("bytes=" + strconv.FormatInt(off, 10) + "-" + strconv.FormatInt(off+int64(len(p))-1, 10)),
		IfMatch: o.etag,
	})
	if err != nil {
		if awsStatus(err) == 412 {
			return fmt.Errorf("heal/sink: s3 read %s: the object changed since it was opened: %w", o.s.where(o.name), err)
		}
		return o.s.readErr("read", o.name, err)
	}
	defer out.Body.Close()
	if _, err := io.ReadFull(out.Body, p); err != nil {
		return fmt.Errorf("heal/sink: s3 read %s at %d: %w", o.s.where(o.name), off, err)
	}
	return nil
}

func (o *s3Object) Read(p []byte) (int, error) {
	n, err := o.ReadAt(p, o.pos)
	o.pos += int64(n)
	if err == io.EOF && n > 0 {
		err = nil
	}
	return n, err
}

func (o *s3Object) Seek(offset int64, whence int) (int64, error) {
	var abs int64
	switch whence {
	case io.SeekStart:
		abs = offset
	case io.SeekCurrent:
		abs = o.pos + offset
	case io.SeekEnd:
		abs = o.size + offset
	default:
		return 0, fmt.Errorf("heal/sink: s3 seek %s: invalid whence %d", o.s.where(o.name), whence)
	}
	if abs < 0 {
		return 0, fmt.Errorf("heal/sink: s3 seek %s: negative position", o.s.where(o.name))
	}
	o.pos = abs
	return abs, nil
}

// ParseS3URL splits "s3://bucket/prefix" into its bucket and prefix (the
// prefix without leading or trailing slashes; "" for the bucket's root).
// Query parameters are ignored here; see [OpenS3].
func ParseS3URL(raw string) (bucket, prefix string, err error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", "", fmt.Errorf("heal/sink: s3 url: %w", err)
	}
	if u.Scheme != "s3" {
		return "", "", fmt.Errorf("heal/sink: s3 url %q: scheme is %q, want s3", raw, u.Scheme)
	}
	if u.Host == "" {
		return "", "", fmt.Errorf("heal/sink: s3 url %q: no bucket", raw)
	}
	if u.User != nil {
		return "", "", errors.New("heal/sink: s3 url: credentials do not belong in the url; use the AWS credential chain")
	}
	return u.Host, strings.Trim(u.Path, "/"), nil
}

// OpenS3 opens the store a URL names, "s3://bucket/prefix", with the
// standard AWS configuration: config.LoadDefaultConfig, so credentials and
// region come from the environment, the shared config files or the
// instance role, and AWS_ENDPOINT_URL_S3 (or AWS_ENDPOINT_URL) points it at
// an S3-compatible server. Two query parameters are read: region=NAME
// overrides the region, and use_path_style=true asks for path-style
// requests (needed by most local S3 servers).
func OpenS3(ctx context.Context, rawURL string, opts *S3Options) (*S3Store, error) {
	bucket, prefix, err := ParseS3URL(rawURL)
	if err != nil {
		return nil, err
	}
	q, _ := url.Parse(rawURL)
	var loadOpts []func(*config.LoadOptions) error
	if r := q.Query().Get("region"); r != "" {
		loadOpts = append(loadOpts, config.WithRegion(r))
	}
	pathStyle := false
	if v := q.Query().Get("use_path_style"); v != "" {
		if pathStyle, err = strconv.ParseBool(v); err != nil {
			return nil, fmt.Errorf("heal/sink: s3 url: use_path_style=%q: want true or false", v)
		}
	}
	cfg, err := config.LoadDefaultConfig(ctx, loadOpts...)
	if err != nil {
		return nil, fmt.Errorf("heal/sink: s3: load aws config: %w", err)
	}
	client := s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = pathStyle })
	return NewS3Store(client, bucket, prefix, opts), nil
}
