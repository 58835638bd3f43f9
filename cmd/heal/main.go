// Command heal reports on, audits and compacts any heal lake, on local disk
// or on S3, with nothing but the lake: the datasets, their keys and their
// completeness rules come from the descriptors the engine records in it.
//
//	go install github.com/selfheal/heal/cmd/heal@latest
//
//	heal status  -lake /var/lib/heal                 completeness, gaps, alarms, costs
//	heal audit   -lake s3://bucket/lake -since 24h   the gaps now (read-only)
//	heal report  -lake /var/lib/heal -o report.html  the HTML health report
//	heal compact -lake /var/lib/heal                 one file per partition
//	heal serve   -lake /var/lib/heal -addr :8080     the latest rows and health over HTTP
//
// Run `heal help` for the flags. Exit codes, for cron and CI:
//
//	0  success (and, with -min-completeness, every key complete enough)
//	1  an error: the lake cannot be read, a dataset is unknown, ...
//	2  a usage error: unknown command or flag, bad value
//	3  status or audit found a key less complete than -min-completeness
//
// # Encrypted lakes
//
// status, audit and report need no key: the key and time columns, the
// footers and the index of an encrypted lake (sink.Encryption) stay in
// clear. compact and serve read the encrypted columns, and take the
// lake's key-encryption key:
//
//	heal compact -lake DIR -local-key /etc/heal/lake.kek   a local key (crypt.LocalFromFile: 64 hex digits or base64)
//	heal compact -lake s3://bucket/lake -kms-key alias/lake an AWS KMS key (id, ARN or alias), unwrapped keys cached
//
// Which columns are encrypted comes from the files: compact keeps
// encrypted every column its inputs hold encrypted. Without a key flag,
// compact on an encrypted partition fails naming the file and the flag to
// pass (exit 1), leaving the partition as it was. The KMS key is reached
// through the standard AWS configuration (AWS_REGION, AWS_ENDPOINT_URL_KMS,
// ...). heal never prints key material.
//
// S3 lakes use the standard AWS configuration (environment, shared config
// files, instance role); AWS_ENDPOINT_URL_S3 points heal at an
// S3-compatible server, and ?region=NAME&use_path_style=true may follow the
// URL.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
