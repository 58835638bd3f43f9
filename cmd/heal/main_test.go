package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/selfheal/heal"
	"github.com/selfheal/heal/internal/awstest"
	"github.com/selfheal/heal/report/reporttest"
	"github.com/selfheal/heal/sink"
)

var (
	lakeOnce sync.Once
	lakeDir  string
	lakeErr  error
)

// fixtureLake returns a lake a real engine filled (see reporttest), built
// once per test binary; tests must not change it.
func fixtureLake(t *testing.T) string {
	t.Helper()
	lakeOnce.Do(func() {
		lakeDir, lakeErr = os.MkdirTemp("", "heal-cmd-test-")
		if lakeErr == nil {
			_, lakeErr = reporttest.Build(context.Background(), lakeDir)
		}
	})
	if lakeErr != nil {
		t.Fatal(lakeErr)
	}
	return lakeDir
}

func TestMain(m *testing.M) {
	code := m.Run()
	if lakeDir != "" {
		os.RemoveAll(lakeDir)
	}
	os.Exit(code)
}

// heal runs the command in-process.
func runHeal(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

// squash collapses runs of white space, so tables compare as words.
func squash(s string) string { return strings.Join(strings.Fields(s), " ") }

func TestStatus(t *testing.T) {
	lake := fixtureLake(t)
	code, out, errs := runHeal(t, "status", "-lake", lake)
	if code != exitOK {
		t.Fatalf("exit %d; stderr:\n%s", code, errs)
	}
	t.Log("\n" + out)
	for _, want := range []string{
		"ticks: 4 key(s), grain 1m, rule continuous",
		"window 2024-03-04 14:00–17:00 UTC",
		"complete: 96.4% before repair, 99.3% now · expected 720 · repaired 18 · confirmed empty 3 · unrepairable 5 · missing 5 · alarms open 1",
		"ticks_hourly: 4 key(s), grain 1h, rule continuous, derived from ticks",
		"open gaps: 5 slot(s) in 1 gap(s)",
		"C 2024-03-04 15:20–15:25 UTC 5 slot(s) unrepairable (alarmed)",
		"alarms open: 1",
		"403 the plan lacks history for C",
		"cost: 4 record(s)",
		"running the pipeline $",
	} {
		if !strings.Contains(squash(out), want) {
			t.Errorf("status lacks %q", want)
		}
	}
	// The matrix: B repaired every hour, C's second hour incomplete.
	if !strings.Contains(squash(out), "B 100* 100* 100*") || !strings.Contains(squash(out), "C 100 91! 100") {
		t.Errorf("the completeness matrix does not show B's repairs and C's hole")
	}
}

func TestStatusThresholdAndJSON(t *testing.T) {
	lake := fixtureLake(t)
	// 97.2% for C: below 0.98, above 0.97.
	code, _, errs := runHeal(t, "status", "-lake", lake, "-dataset", "ticks", "-min-completeness", "0.98")
	if code != exitIncomplete || !strings.Contains(errs, "ticks/C 97.2%") {
		t.Errorf("below the threshold: exit %d (want 3), stderr %q", code, errs)
	}
	if code, _, errs := runHeal(t, "status", "-lake", lake, "-dataset", "ticks", "-min-completeness", "0.97"); code != exitOK {
		t.Errorf("above the threshold: exit %d, stderr %q", code, errs)
	}
	code, out, errs := runHeal(t, "status", "-lake", lake, "-dataset", "ticks", "-json", "-min-completeness", "0.98")
	if code != exitIncomplete {
		t.Fatalf("json: exit %d; %s", code, errs)
	}
	var st statusJSON
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status -json is not JSON: %v\n%s", err, out)
	}
	if len(st.Datasets) != 1 || st.Datasets[0].All.Repaired != reporttest.Repaired || st.Datasets[0].All.Completeness < 0.99 ||
		len(st.Datasets[0].Gaps) != 1 || !st.Datasets[0].Gaps[0].Alarmed || st.Datasets[0].Cost == nil || len(st.Incomplete) != 1 {
		t.Errorf("status -json: %+v", st)
	}
}

func TestAudit(t *testing.T) {
	lake := fixtureLake(t)
	code, out, errs := runHeal(t, "audit", "-lake", lake, "-dataset", "ticks", "-min-completeness", "0.99")
	if code != exitIncomplete {
		t.Fatalf("exit %d (want 3); stderr:\n%s", code, errs)
	}
	t.Log("\n" + out)
	for _, want := range []string{"ticks: audit of 2024-03-04 14:00–17:00 UTC, rule continuous (read-only)", "gaps:", "C 2024-03-04 15:20–15:25 UTC 5 slot(s)"} {
		if !strings.Contains(squash(out), want) {
			t.Errorf("audit lacks %q", want)
		}
	}
	// A narrower window with no hole passes; -rule overrides the recorded rule.
	code, out, _ = runHeal(t, "audit", "-lake", lake, "-dataset", "ticks", "-from", "2024-03-04T14:00", "-to", "2024-03-04T15:00", "-min-completeness", "1", "-rule", "us-equities")
	if code != exitOK || !strings.Contains(out, "rule us-equities") {
		t.Errorf("audit of a whole hour: exit %d\n%s", code, out)
	}
	// Read-only: nothing was written.
	before := snapshot(t, lake)
	runHeal(t, "audit", "-lake", lake)
	runHeal(t, "status", "-lake", lake)
	if after := snapshot(t, lake); after != before {
		t.Error("audit or status changed the lake")
	}
}

func snapshot(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			b.WriteString(p + "\n")
		}
		return nil
	})
	return b.String()
}

func TestReport(t *testing.T) {
	lake := fixtureLake(t)
	out := filepath.Join(t.TempDir(), "r.html")
	code, stdout, errs := runHeal(t, "report", "-lake", lake, "-o", out, "-tz", "America/New_York", "-price", "source-month=50")
	if code != exitOK {
		t.Fatalf("exit %d; %s", code, errs)
	}
	if !strings.Contains(stdout, "wrote "+out+": 2 dataset(s)") {
		t.Errorf("stdout %q", stdout)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	page := string(b)
	for _, want := range []string{"<h2>ticks</h2>", "ticks_hourly", "times in America/New_York", "source $50.00 a month"} {
		if !strings.Contains(page, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	code, stdout, _ = runHeal(t, "report", "-lake", lake, "-o", "-", "-dataset", "ticks")
	if code != exitOK || !strings.HasPrefix(stdout, "<!DOCTYPE html>") {
		t.Errorf("report -o -: exit %d, %.40q", code, stdout)
	}
}

func TestCompact(t *testing.T) {
	// On a copy: compaction writes.
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS(fixtureLake(t))); err != nil {
		t.Fatal(err)
	}
	code, out, errs := runHeal(t, "compact", "-lake", dir)
	if code != exitOK {
		t.Fatalf("exit %d; %s", code, errs)
	}
	if !strings.Contains(out, "ticks: ") || !strings.Contains(out, "ticks_hourly: ") {
		t.Errorf("compact output %q", out)
	}
	// Every partition is now one file, and the data is whole.
	lake, err := sink.OpenDir(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = lake.Inventory(context.Background(), reporttest.Ticks(), heal.Query{}, func(p heal.PartitionInfo) error {
		if p.Files != 1 || p.Duplicates() != 0 {
			t.Errorf("%s: %d files, %d duplicates after compact", p.Partition, p.Files, p.Duplicates())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if code, out, _ := runHeal(t, "compact", "-lake", dir); code != exitOK || !strings.Contains(out, "ticks: 0 partition(s)") {
		t.Errorf("second compact: exit %d, %q", code, out)
	}
	if code, out, _ := runHeal(t, "status", "-lake", dir, "-dataset", "ticks"); code != exitOK || !strings.Contains(out, "99.3% now") {
		t.Errorf("status after compact: exit %d\n%s", code, out)
	}
}

func TestUsageErrors(t *testing.T) {
	lake := fixtureLake(t)
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no command", nil, exitUsage, "no command"},
		{"unknown command", []string{"frobnicate"}, exitUsage, `unknown command "frobnicate"`},
		{"no lake", []string{"status"}, exitUsage, "-lake is required"},
		{"bad flag", []string{"status", "-lake", lake, "-nope"}, exitUsage, "flag provided but not defined: -nope"},
		{"bad rule", []string{"audit", "-lake", lake, "-rule", "lse"}, exitUsage, `unknown rule "lse"`},
		{"bad threshold", []string{"status", "-lake", lake, "-min-completeness", "99"}, exitUsage, "want a share between 0 and 1"},
		{"bad time", []string{"status", "-lake", lake, "-from", "yesterday"}, exitUsage, "want a time"},
		{"to before from", []string{"status", "-lake", lake, "-from", "2024-03-05", "-to", "2024-03-04"}, exitUsage, "-to must be after -from"},
		{"stray argument", []string{"status", "-lake", lake, "extra"}, exitUsage, `unexpected argument "extra"`},
		{"bad price", []string{"report", "-lake", lake, "-price", "gold=1"}, exitUsage, `unknown price "gold"`},
		{"flag of another command", []string{"compact", "-lake", lake, "-json"}, exitUsage, "not defined: -json"},
		{"missing lake", []string{"status", "-lake", filepath.Join(lake, "nope")}, exitError, "no such file or directory"},
		{"not a lake", []string{"status", "-lake", t.TempDir()}, exitError, "no dataset is recorded"},
		{"unknown dataset", []string{"status", "-lake", lake, "-dataset", "nope"}, exitError, `no dataset "nope"`},
		{"bad url", []string{"status", "-lake", "gs://bucket/x"}, exitUsage, "want a directory or s3://"},
		{"help", []string{"help"}, exitOK, "Exit codes"},
		{"command help", []string{"status", "-h"}, exitOK, "-min-completeness"},
		{"help command", []string{"help", "report"}, exitOK, `file to write the report to`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errs := runHeal(t, tc.args...)
			if code != tc.code || !strings.Contains(errs, tc.want) {
				t.Errorf("exit %d (want %d), stderr:\n%s\nwant it to hold %q", code, tc.code, errs, tc.want)
			}
		})
	}
}

// TestS3 reads a lake on S3 (gofakes3, in-process) through the standard
// AWS configuration, pointed at the server by AWS_ENDPOINT_URL_S3.
func TestS3(t *testing.T) {
	client, bucket := awstest.GoFakeS3(t)
	if _, err := reporttest.BuildStore(context.Background(), sink.NewS3Store(client, bucket, "lakes/ticks", nil)); err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{
		"AWS_ENDPOINT_URL_S3": aws.ToString(client.Options().BaseEndpoint), "AWS_REGION": awstest.Region,
		"AWS_ACCESS_KEY_ID": "heal-test", "AWS_SECRET_ACCESS_KEY": "heal-test-not-a-secret", "AWS_SESSION_TOKEN": "",
		"AWS_PROFILE": "", "AWS_CONFIG_FILE": os.DevNull, "AWS_SHARED_CREDENTIALS_FILE": os.DevNull, "AWS_EC2_METADATA_DISABLED": "true",
	} {
		t.Setenv(k, v)
	}
	url := "s3://" + bucket + "/lakes/ticks?use_path_style=true"
	code, out, errs := runHeal(t, "status", "-lake", url, "-dataset", "ticks")
	if code != exitOK || !strings.Contains(squash(out), "complete: 96.4% before repair, 99.3% now") {
		t.Fatalf("status on S3: exit %d\n%s\n%s", code, out, errs)
	}
	if code, _, errs := runHeal(t, "status", "-lake", "s3://"+bucket+"/elsewhere?use_path_style=true"); code != exitError || !strings.Contains(errs, "no dataset is recorded") {
		t.Errorf("an empty prefix: exit %d, %s", code, errs)
	}
}

// TestBinary builds the command and runs it as a user would, to check the
// exit codes reach the shell.
func TestBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	lake := fixtureLake(t)
	bin := filepath.Join(t.TempDir(), "heal")
	build := exec.Command("go", "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	for _, tc := range []struct {
		args []string
		code int
	}{
		{[]string{"status", "-lake", lake}, 0},
		{[]string{"status", "-lake", lake, "-min-completeness", "0.999"}, 3},
		{[]string{"status"}, 2},
		{[]string{"status", "-lake", filepath.Join(lake, "nope")}, 1},
	} {
		cmd := exec.Command(bin, tc.args...)
		cmd.Env = append(os.Environ(), "HEAL_LAKE=")
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != tc.code {
			t.Errorf("heal %s: exit %d, want %d", strings.Join(tc.args, " "), code, tc.code)
		}
	}
}
