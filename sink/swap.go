package sink

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/selfheal/heal"
)

// ErrChanged reports that a [Swapper.Swap] lost a race: the object was
// replaced or removed after it was read. Read it again and decide anew.
var ErrChanged = errors.New("heal/sink: object changed since it was read")

// Swapper is implemented by Stores that can replace an object only if it is
// unchanged since it was read: a compare-and-swap that settles
// read-modify-write races between processes. On S3 it is a conditional
// PutObject with If-Match on the ETag the read returned.
//
// The lake writes data create-only ([Store.Put] with ifAbsent, S3's
// If-None-Match: *), so it needs a swap only where a small object is
// rewritten in place: the wrapped data keys of an encrypted lake, which
// [Lake.Rewrap] re-wraps under a new key-encryption key.
type Swapper interface {
	// ReadVersion returns name's contents and an opaque version of them
	// (S3: the ETag), or an error for which errors.Is(err, heal.ErrNotFound).
	ReadVersion(ctx context.Context, name string) (data []byte, version string, err error)
	// Swap replaces name with data, atomically, if its version is still
	// version; otherwise it stores nothing and returns an error for which
	// errors.Is(err, ErrChanged) (also when name was removed).
	Swap(ctx context.Context, name string, data []byte, version string) error
}

var (
	_ Swapper = (*S3Store)(nil)
	_ Swapper = (*DirStore)(nil)
	_ Swapper = (*MemStore)(nil)
)

// ReadVersion implements [Swapper] with one GetObject; the version is the
// object's ETag.
func (s *S3Store) ReadVersion(ctx context.Context, name string) ([]byte, string, error) {
	if err := validName(name); err != nil {
		return nil, "", heal.Permanent(err)
	}
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(s.key(name))})
	if err != nil {
		return nil, "", s.readErr("get", name, err)
	}
	defer out.Body.Close()
	data, err := io.ReadAll(out.Body)
	if err != nil {
		return nil, "", classifyAWS(fmt.Errorf("heal/sink: s3 get %s: %w", s.where(name), err))
	}
	return data, aws.ToString(out.ETag), nil
}

// Swap implements [Swapper] with one PutObject carrying If-Match: version.
// S3 answers 412 when the ETag no longer matches (or the object is gone),
// and 409 while another conditional write of the key is in flight; both are
// ErrChanged. data must fit one PutObject (up to PartSize).
func (s *S3Store) Swap(ctx context.Context, name string, data []byte, version string) error {
	if s.optErr != nil {
		return s.optErr
	}
	if err := validName(name); err != nil {
		return heal.Permanent(err)
	}
	if int64(len(data)) > s.partSize {
		return heal.Permanent(fmt.Errorf("heal/sink: s3 swap %s: %d bytes, more than one PutObject (%d)", s.where(name), len(data), s.partSize))
	}
	if version == "" {
		return heal.Permanent(fmt.Errorf("heal/sink: s3 swap %s: no version", s.where(name)))
	}
	_, err := s.client.PutObject(ctx, &s3.PutObjectInput{
		Bucket:               aws.String(s.bucket),
		Key:                  aws.String(s.key(name)),
		Body:                 bytes.NewReader(data),
		ContentLength:        aws.Int64(int64(len(data))),
		IfMatch:              aws.String(version),
		ServerSideEncryption: s.sse,
		SSEKMSKeyId:          s.kmsKeyID,
	})
	if err == nil {
		return nil
	}
	if isConditionFailed(err) || awsCode(err) == "NoSuchKey" || awsStatus(err) == 404 {
		return fmt.Errorf("heal/sink: s3 swap %s: %w (%w)", s.where(name), ErrChanged, err)
	}
	return classifyAWS(fmt.Errorf("heal/sink: s3 swap %s: %w", s.where(name), err))
}

// ReadVersion implements [Swapper]; the version is a hash of the contents.
func (s *DirStore) ReadVersion(ctx context.Context, name string) ([]byte, string, error) {
	if err := ctx.Err(); err != nil {
		return nil, "", fmt.Errorf("heal/sink: read %s: %w", name, err)
	}
	p, err := s.path(name)
	if err != nil {
		return nil, "", err
	}
	data, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, "", fmt.Errorf("heal/sink: read %s: %w", name, heal.ErrNotFound)
	}
	if err != nil {
		return nil, "", fmt.Errorf("heal/sink: read %s: %w", name, err)
	}
	return data, contentVersion(data), nil
}

// Swap implements [Swapper]: the check and the atomic rename happen under
// the store's swap lock, so swaps are atomic among the goroutines of one
// process. A local-disk lake belongs to one host and, for swaps, to one
// process at a time; an S3 lake has no such limit.
func (s *DirStore) Swap(ctx context.Context, name string, data []byte, version string) error {
	s.swapMu.Lock()
	defer s.swapMu.Unlock()
	_, cur, err := s.ReadVersion(ctx, name)
	if errors.Is(err, heal.ErrNotFound) || (err == nil && cur != version) {
		return fmt.Errorf("heal/sink: swap %s: %w", name, ErrChanged)
	}
	if err != nil {
		return err
	}
	return s.put(ctx, name, data, false, true)
}

// ReadVersion implements [Swapper]; the version counts the object's puts.
func (s *MemStore) ReadVersion(ctx context.Context, name string) ([]byte, string, error) {
	if err := ctx.Err(); err != nil {
		return nil, "", fmt.Errorf("heal/sink: read %s: %w", name, err)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	o, ok := s.objects[name]
	if !ok {
		return nil, "", fmt.Errorf("heal/sink: read %s: %w", name, heal.ErrNotFound)
	}
	return bytes.Clone(o.data), strconv.FormatInt(o.version, 10), nil
}

// Swap implements [Swapper].
func (s *MemStore) Swap(ctx context.Context, name string, data []byte, version string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("heal/sink: swap %s: %w", name, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.objects[name]
	if !ok || strconv.FormatInt(o.version, 10) != version {
		return fmt.Errorf("heal/sink: swap %s: %w", name, ErrChanged)
	}
	s.versions++
	s.objects[name] = memObject{data: append([]byte{}, data...), mod: time.Now(), version: s.versions}
	return nil
}

func contentVersion(data []byte) string {
	h := sha256.Sum256(data)
	return hex.EncodeToString(h[:16])
}
