// Package awstest starts or locates the AWS-compatible servers heal's tests
// run against, and builds aws-sdk-go-v2 clients for them.
//
// In-process servers need nothing: [GoFakeS3] serves gofakes3 behind
// httptest. External servers are started by .ci/aws-servers.sh, which
// exports where they listen:
//
//	HEAL_S3_ENDPOINT          versitygw (posix backend), path-style S3
//	HEAL_S3_ACCESS_KEY        its access key
//	HEAL_S3_SECRET_KEY        its secret key (random per run)
//	HEAL_KINESIS_ENDPOINT     kinesalite
//	HEAL_SNS_ENDPOINT         fauxqs (SNS)
//	HEAL_SQS_ENDPOINT         fauxqs (SQS), the same server
//
// A test that needs an external server skips with a message naming the
// variable when it is unset, except when CI is set: there a missing server
// fails the test, so CI can never go green by skipping.
//
// Nothing here reads the developer's own AWS configuration: every client is
// built from an explicit aws.Config with dummy or per-run credentials, and
// points at 127.0.0.1.
package awstest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
)

// The environment variables that locate external servers.
const (
	EnvS3Endpoint      = "HEAL_S3_ENDPOINT"
	EnvS3AccessKey     = "HEAL_S3_ACCESS_KEY"
	EnvS3SecretKey     = "HEAL_S3_SECRET_KEY"
	EnvKinesisEndpoint = "HEAL_KINESIS_ENDPOINT"
	EnvSNSEndpoint     = "HEAL_SNS_ENDPOINT"
	EnvSQSEndpoint     = "HEAL_SQS_ENDPOINT"
)

// Region is the region every test client uses.
const Region = "us-east-1"

// Config returns an aws.Config for a local server: region us-east-1,
// static credentials, and no retries beyond the SDK's default.
func Config(accessKey, secretKey string) aws.Config {
	return aws.Config{
		Region:      Region,
		Credentials: credentials.NewStaticCredentialsProvider(accessKey, secretKey, ""),
	}
}

// dummy is the configuration for servers that accept any credentials.
func dummy() aws.Config { return Config("heal-test", "heal-test-not-a-secret") }

// Endpoint returns the value of the environment variable env, the address
// of the external server named server. When it is unset the test is skipped
// with a message saying how to start the server, or failed when CI is set.
func Endpoint(t testing.TB, env, server string) string {
	t.Helper()
	v := os.Getenv(env)
	if v != "" {
		return v
	}
	msg := env + " is unset: " + server + " is not running (start it with: source .ci/aws-servers.sh)"
	if os.Getenv("CI") != "" {
		t.Fatal(msg + "; CI is set, so a missing server is a failure")
	}
	t.Skip(msg)
	return ""
}

// Name returns a fresh name for a bucket, stream, topic or queue: prefix,
// a dash and 12 random hex digits, lower case (valid as an S3 bucket name
// when prefix is).
func Name(prefix string) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return prefix + "-" + hex.EncodeToString(b[:])
}

// GoFakeS3 starts gofakes3 (in-memory backend) in-process behind httptest
// and returns a path-style client for it, made with optFns, and a fresh,
// empty bucket. The server stops when t ends.
func GoFakeS3(t testing.TB, optFns ...func(*s3.Options)) (*s3.Client, string) {
	t.Helper()
	ts := httptest.NewServer(gofakes3.New(s3mem.New(), gofakes3.WithLogger(gofakes3.DiscardLog())).Server())
	t.Cleanup(ts.Close)
	c := S3Client(dummy(), ts.URL, optFns...)
	return c, makeBucket(t, c, false)
}

// ExternalS3 returns a client for the external S3 server at
// HEAL_S3_ENDPOINT (versitygw in CI), made with optFns, and a fresh bucket
// that is emptied and removed when t ends.
func ExternalS3(t testing.TB, optFns ...func(*s3.Options)) (*s3.Client, string) {
	t.Helper()
	ep := Endpoint(t, EnvS3Endpoint, "versitygw")
	ak, sk := os.Getenv(EnvS3AccessKey), os.Getenv(EnvS3SecretKey)
	if ak == "" || sk == "" {
		t.Fatalf("%s is set but %s or %s is not", EnvS3Endpoint, EnvS3AccessKey, EnvS3SecretKey)
	}
	c := S3Client(Config(ak, sk), ep, optFns...)
	return c, makeBucket(t, c, true)
}

// S3Client returns a path-style S3 client for endpoint.
func S3Client(cfg aws.Config, endpoint string, optFns ...func(*s3.Options)) *s3.Client {
	return s3.NewFromConfig(cfg, append([]func(*s3.Options){func(o *s3.Options) {
		o.BaseEndpoint = aws.String(endpoint)
		o.UsePathStyle = true
	}}, optFns...)...)
}

func makeBucket(t testing.TB, c *s3.Client, cleanup bool) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	bucket := Name("heal-test")
	if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)}); err != nil {
		t.Fatalf("create bucket %s: %v", bucket, err)
	}
	if cleanup {
		t.Cleanup(func() { EmptyBucket(t, c, bucket, true) })
	}
	return bucket
}

// EmptyBucket deletes every object and pending multipart upload of bucket,
// and the bucket itself when remove is set. Failures are logged, not fatal.
func EmptyBucket(t testing.TB, c *s3.Client, bucket string, remove bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	p := s3.NewListObjectsV2Paginator(c, &s3.ListObjectsV2Input{Bucket: aws.String(bucket)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			t.Logf("empty bucket %s: %v", bucket, err)
			return
		}
		if len(page.Contents) == 0 {
			continue
		}
		ids := make([]types.ObjectIdentifier, len(page.Contents))
		for i, o := range page.Contents {
			ids[i] = types.ObjectIdentifier{Key: o.Key}
		}
		if _, err := c.DeleteObjects(ctx, &s3.DeleteObjectsInput{Bucket: aws.String(bucket), Delete: &types.Delete{Objects: ids, Quiet: aws.Bool(true)}}); err != nil {
			t.Logf("empty bucket %s: %v", bucket, err)
			return
		}
	}
	if ups, err := c.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: aws.String(bucket)}); err == nil {
		for _, u := range ups.Uploads {
			_, _ = c.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: aws.String(bucket), Key: u.Key, UploadId: u.UploadId})
		}
	}
	if remove {
		if _, err := c.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: aws.String(bucket)}); err != nil {
			t.Logf("delete bucket %s: %v", bucket, err)
		}
	}
}

// Kinesis returns a client for the Kinesis server at HEAL_KINESIS_ENDPOINT
// (kinesalite), made with optFns.
func Kinesis(t testing.TB, optFns ...func(*kinesis.Options)) *kinesis.Client {
	t.Helper()
	ep := Endpoint(t, EnvKinesisEndpoint, "kinesalite")
	return kinesis.NewFromConfig(dummy(), append([]func(*kinesis.Options){func(o *kinesis.Options) {
		o.BaseEndpoint = aws.String(ep)
	}}, optFns...)...)
}

// SNS returns a client for the SNS server at HEAL_SNS_ENDPOINT (fauxqs).
func SNS(t testing.TB, optFns ...func(*sns.Options)) *sns.Client {
	t.Helper()
	ep := Endpoint(t, EnvSNSEndpoint, "fauxqs")
	return sns.NewFromConfig(dummy(), append([]func(*sns.Options){func(o *sns.Options) {
		o.BaseEndpoint = aws.String(ep)
	}}, optFns...)...)
}

// SQS returns a client for the SQS server at HEAL_SQS_ENDPOINT (fauxqs),
// falling back to HEAL_SNS_ENDPOINT, the same server in CI.
func SQS(t testing.TB, optFns ...func(*sqs.Options)) *sqs.Client {
	t.Helper()
	env := EnvSQSEndpoint
	if os.Getenv(env) == "" && os.Getenv(EnvSNSEndpoint) != "" {
		env = EnvSNSEndpoint
	}
	ep := Endpoint(t, env, "fauxqs")
	return sqs.NewFromConfig(dummy(), append([]func(*sqs.Options){func(o *sqs.Options) {
		o.BaseEndpoint = aws.String(ep)
	}}, optFns...)...)
}
