package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/memory"

	"github.com/selfheal/heal"
	"github.com/selfheal/heal/audit"
	"github.com/selfheal/heal/crypt"
	"github.com/selfheal/heal/internal/awstest"
	"github.com/selfheal/heal/internal/fakekms"
	"github.com/selfheal/heal/sink"
)

// The planted values of the encrypted columns: found in a stored byte, they
// leaked.
const (
	plantedNote  = "PLANTED-7d3a-meter-tampering-suspected"
	plantedValue = 314159.265358
)

var meterDay = time.Date(2024, 3, 4, 0, 0, 0, 0, time.UTC)

func meters() *heal.Dataset {
	return &heal.Dataset{
		Name: "meters",
		Schema: arrow.NewSchema([]arrow.Field{
			{Name: "meter", Type: arrow.BinaryTypes.String},
			{Name: "at", Type: &arrow.TimestampType{Unit: arrow.Millisecond, TimeZone: "UTC"}},
			{Name: "kwh", Type: arrow.PrimitiveTypes.Float64},
			{Name: "note", Type: arrow.BinaryTypes.String, Nullable: true},
		}, nil),
		Key: "meter", Time: "at", Grain: time.Minute, Partition: heal.PeriodDay,
	}
}

// meterRows holds every minute of w for key, with the planted values.
func meterRows(ds *heal.Dataset, key string, w heal.Window) arrow.Record {
	b := array.NewRecordBuilder(memory.DefaultAllocator, ds.Schema)
	defer b.Release()
	for at := w.Start; at.Before(w.End); at = at.Add(time.Minute) {
		b.Field(0).(*array.StringBuilder).Append(key)
		b.Field(1).(*array.TimestampBuilder).Append(arrow.Timestamp(at.UnixMilli()))
		b.Field(2).(*array.Float64Builder).Append(plantedValue)
		b.Field(3).(*array.StringBuilder).Append(plantedNote)
	}
	return b.NewRecord()
}

type meterSource struct{ ds *heal.Dataset }

func (s meterSource) Fetch(_ context.Context, req heal.Request) (arrow.Record, error) {
	return meterRows(s.ds, req.Keys[0], req.Window), nil
}
func (meterSource) Limits() heal.Limits { return heal.Limits{} }

// encryptedLake builds, in a new directory, a lake whose dataset "meters"
// has its kwh and note columns encrypted under keys, as an engine leaves
// it: the engine records the dataset and fills 00:00–01:00 of meterDay for
// m1 and m2, then a late correction of the first half hour leaves a second
// file in each of the two partitions.
func encryptedLake(t *testing.T, keys crypt.KeyProvider) string {
	t.Helper()
	ctx := context.Background()
	ds := meters()
	dir := t.TempDir()
	lake, err := sink.OpenDir(dir, &sink.Options{Encryption: &sink.Encryption{Keys: keys, Columns: map[string][]string{ds.Name: sink.SensitiveColumns(ds)}}})
	if err != nil {
		t.Fatal(err)
	}
	eng, err := heal.New(ds, meterSource{ds}, lake, &heal.Options{Keys: []string{"m1", "m2"}, Rule: audit.Continuous()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := eng.Heal(ctx, heal.Window{Start: meterDay, End: meterDay.Add(time.Hour)}); err != nil {
		t.Fatalf("Heal: %v", err)
	}
	for _, k := range []string{"m1", "m2"} {
		rec := meterRows(ds, k, heal.Window{Start: meterDay, End: meterDay.Add(30 * time.Minute)})
		err := lake.Write(ctx, ds, rec)
		rec.Release()
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := countFiles(t, dir); n < 4 {
		t.Fatalf("the fixture has %d data files, want at least 2 per partition", n)
	}
	if l := leaked(t, dir); len(l) > 0 {
		t.Fatalf("the fixture holds planted values in clear in %v", l)
	}
	return dir
}

// keyFile writes a fresh local key-encryption key to a file, as 64 hex
// digits, and returns its path, its text and a provider over it.
func keyFile(t *testing.T) (path, text string, p *crypt.Local) {
	t.Helper()
	k := make([]byte, crypt.DataKeySize)
	rand.Read(k)
	p, err := crypt.NewLocal(k)
	if err != nil {
		t.Fatal(err)
	}
	text = hex.EncodeToString(k)
	path = filepath.Join(t.TempDir(), "lake.kek")
	if err := os.WriteFile(path, []byte(text+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, text, p
}

// files returns the bytes of every file under dir.
func files(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		out[p] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func countFiles(t *testing.T, dir string) int {
	n := 0
	for p := range files(t, dir) {
		if strings.HasSuffix(p, ".parquet") && strings.Contains(p, "/meters/") {
			n++
		}
	}
	return n
}

// leaked returns the files under dir holding a planted value in clear.
func leaked(t *testing.T, dir string) []string {
	var f64 [8]byte
	binary.LittleEndian.PutUint64(f64[:], math.Float64bits(plantedValue))
	var out []string
	for p, b := range files(t, dir) {
		if bytes.Contains(b, []byte(plantedNote[:16])) || bytes.Contains(b, f64[:]) {
			out = append(out, p)
		}
	}
	return out
}

// scanRows reads every row of meters back with keys.
func scanRows(t *testing.T, dir string, keys crypt.KeyProvider) (int64, error) {
	t.Helper()
	lake, err := sink.OpenDir(dir, &sink.Options{Encryption: &sink.Encryption{Keys: keys}})
	if err != nil {
		t.Fatal(err)
	}
	rr, err := lake.Scan(context.Background(), meters(), heal.Query{})
	if err != nil {
		return 0, err
	}
	defer rr.Release()
	var n int64
	for rr.Next() {
		n += rr.Record().NumRows()
	}
	return n, rr.Err()
}

// TestEncryptedLakeWithoutKey: status, audit and report need no key;
// compact without one fails by name, says which flag to pass, and changes
// nothing.
func TestEncryptedLakeWithoutKey(t *testing.T) {
	_, _, kek := keyFile(t)
	dir := encryptedLake(t, kek)
	before := files(t, dir)
	for _, args := range [][]string{
		{"status", "-lake", dir},
		{"audit", "-lake", dir, "-min-completeness", "1"},
		{"report", "-lake", dir, "-o", "-"},
	} {
		code, out, errs := runHeal(t, args...)
		if code != exitOK || out == "" {
			t.Errorf("heal %s on an encrypted lake without a key: exit %d\n%s\n%s", args[0], code, out, errs)
		}
	}
	if code, out, _ := runHeal(t, "status", "-lake", dir); !strings.Contains(squash(out), "100.0% now") {
		t.Errorf("status without a key: exit %d\n%s", code, out)
	}
	code, out, errs := runHeal(t, "compact", "-lake", dir)
	t.Log(errs)
	if code != exitError {
		t.Errorf("compact without a key: exit %d, want %d\n%s", code, exitError, out)
	}
	for _, want := range []string{"compact meters", ".parquet", "has encrypted columns", "-local-key FILE", "-kms-key KEY_ID", "meter=m", "left as it was"} {
		if !strings.Contains(errs, want) {
			t.Errorf("the error lacks %q", want)
		}
	}
	after := files(t, dir)
	for p, b := range before {
		if !bytes.Equal(after[p], b) {
			t.Errorf("%s changed or vanished after compact without a key", p)
		}
	}
	for p := range after {
		if _, ok := before[p]; !ok {
			t.Errorf("%s written by compact without a key", p)
		}
	}
}

// TestCompactEncryptedLocalKey: with -local-key, compact merges the
// encrypted partitions, keeping their columns encrypted although the
// command names no columns; the key never shows.
func TestCompactEncryptedLocalKey(t *testing.T) {
	path, text, kek := keyFile(t)
	dir := encryptedLake(t, kek)
	code, out, errs := runHeal(t, "compact", "-lake", dir, "-local-key", path, "-v")
	if code != exitOK || !strings.Contains(out, "meters: 2 partition(s) compacted") {
		t.Fatalf("compact -local-key: exit %d\n%s\n%s", code, out, errs)
	}
	if strings.Contains(out+errs, text) || strings.Contains(strings.ToLower(out+errs), text[:16]) {
		t.Error("the key was printed")
	}
	if n := countFiles(t, dir); n != 2 {
		t.Errorf("%d data files after compact, want one per partition", n)
	}
	if l := leaked(t, dir); len(l) > 0 {
		t.Fatalf("compact -local-key wrote sensitive values in clear, in %v", l)
	}
	if n, err := scanRows(t, dir, kek); err != nil || n != 120 {
		t.Errorf("scan with the key after compact: %d rows, %v; want 120", n, err)
	}
	if _, err := scanRows(t, dir, nil); err == nil {
		t.Error("the compacted files read without the key")
	}
	if code, out, errs := runHeal(t, "status", "-lake", dir); code != exitOK || !strings.Contains(squash(out), "100.0% now") {
		t.Errorf("status after compact: exit %d\n%s\n%s", code, out, errs)
	}
	// Another key is refused by name, and changes nothing.
	other, _, _ := keyFile(t)
	rec := meterRows(meters(), "m1", heal.Window{Start: meterDay, End: meterDay.Add(time.Minute)})
	lake, err := sink.OpenDir(dir, &sink.Options{Encryption: &sink.Encryption{Keys: kek, Columns: map[string][]string{"meters": {"kwh", "note"}}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := lake.Write(context.Background(), meters(), rec); err != nil {
		t.Fatal(err)
	}
	rec.Release()
	before := files(t, dir)
	code, _, errs = runHeal(t, "compact", "-lake", dir, "-local-key", other)
	if code != exitError || !strings.Contains(errs, "the key given cannot unwrap") || !strings.Contains(errs, ".parquet") {
		t.Errorf("compact with another key: exit %d, stderr %s", code, errs)
	}
	if after := files(t, dir); len(after) != len(before) {
		t.Errorf("%d files before a compact with the wrong key, %d after", len(before), len(after))
	}
}

// TestCompactEncryptedKMS: -kms-key reaches KMS (fakekms, the real kms
// client over HTTP) through the standard AWS configuration.
func TestCompactEncryptedKMS(t *testing.T) {
	srv := fakekms.New(t)
	srv.CreateKey("lake")
	dir := encryptedLake(t, crypt.NewKMS(srv.Client(), "alias/lake"))
	for k, v := range map[string]string{
		"AWS_ENDPOINT_URL_KMS": srv.URL, "AWS_REGION": awstest.Region,
		"AWS_ACCESS_KEY_ID": "heal-test", "AWS_SECRET_ACCESS_KEY": "heal-test-not-a-secret", "AWS_SESSION_TOKEN": "",
		"AWS_PROFILE": "", "AWS_CONFIG_FILE": os.DevNull, "AWS_SHARED_CREDENTIALS_FILE": os.DevNull, "AWS_EC2_METADATA_DISABLED": "true",
		"AWS_MAX_ATTEMPTS": "1",
	} {
		t.Setenv(k, v)
	}
	// Decrypt refused: the error names the file; nothing changes.
	srv.Deny("Decrypt", true)
	before := files(t, dir)
	code, _, errs := runHeal(t, "compact", "-lake", dir, "-kms-key", "alias/lake")
	if code != exitError || !strings.Contains(errs, "AccessDenied") || !strings.Contains(errs, ".parquet") {
		t.Errorf("compact -kms-key without decrypt rights: exit %d, stderr %s", code, errs)
	}
	if after := files(t, dir); len(after) != len(before) {
		t.Errorf("%d files before a refused compact, %d after", len(before), len(after))
	}
	srv.Deny("Decrypt", false)
	code, out, errs := runHeal(t, "compact", "-lake", dir, "-kms-key", "alias/lake")
	if code != exitOK || !strings.Contains(out, "meters: 2 partition(s) compacted") {
		t.Fatalf("compact -kms-key: exit %d\n%s\n%s", code, out, errs)
	}
	if l := leaked(t, dir); len(l) > 0 {
		t.Fatalf("compact -kms-key wrote sensitive values in clear, in %v", l)
	}
	if n, err := scanRows(t, dir, crypt.NewKMS(srv.Client(), "alias/lake")); err != nil || n != 120 {
		t.Errorf("scan with the KMS key after compact: %d rows, %v; want 120", n, err)
	}
}

func TestKeyFlagErrors(t *testing.T) {
	lake := fixtureLake(t)
	bad := filepath.Join(t.TempDir(), "short.kek")
	if err := os.WriteFile(bad, []byte("c2VjcmV0LWJ1dC1zaG9ydA==\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"both keys", []string{"compact", "-lake", lake, "-local-key", bad, "-kms-key", "alias/x"}, exitUsage, "-local-key and -kms-key exclude each other"},
		{"key flag on status", []string{"status", "-lake", lake, "-local-key", bad}, exitUsage, "not defined: -local-key"},
		{"missing key file", []string{"compact", "-lake", lake, "-local-key", bad + ".nope"}, exitError, "-local-key " + bad + ".nope"},
		{"malformed key file", []string{"serve", "-lake", lake, "-local-key", bad}, exitError, "-local-key " + bad + ": heal/crypt: key file"},
		{"compact help", []string{"help", "compact"}, exitOK, "-kms-key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errs := runHeal(t, tc.args...)
			if code != tc.code || !strings.Contains(errs, tc.want) {
				t.Errorf("exit %d (want %d), stderr:\n%s\nwant it to hold %q", code, tc.code, errs, tc.want)
			}
			if strings.Contains(errs, "c2VjcmV0") {
				t.Error("the key file's content was printed")
			}
		})
	}
}
