package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/selfheal/heal/view"
)

// startServe runs `heal serve` with args (and -addr 127.0.0.1:0) until the
// test ends or stop is called, and returns its base URL, the line it
// announced itself with, and stop, which ends it and checks it exited 0.
func startServe(t *testing.T, args ...string) (base, first string, stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	pr, pw := io.Pipe()
	var errb strings.Builder
	exit := make(chan int, 1)
	go func() {
		exit <- run(ctx, append(append([]string{"serve"}, args...), "-addr", "127.0.0.1:0"), pw, &errb)
		pw.Close()
	}()
	first, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatalf("no address announced: %v; exit %d, stderr %s", err, <-exit, errb.String())
	}
	go io.Copy(io.Discard, pr)
	i := strings.Index(first, "http://")
	if i < 0 {
		t.Fatalf("no address in %q", first)
	}
	return strings.Fields(first[i:])[0], first, func() {
		t.Helper()
		cancel()
		if code := <-exit; code != exitOK {
			t.Errorf("exit %d after cancel; stderr %s", code, errb.String())
		}
	}
}

// TestServe starts heal serve on the fixture lake, on a free port, and
// reads the latest rows and the health over HTTP.
func TestServe(t *testing.T) {
	base, first, stop := startServe(t, "-lake", fixtureLake(t))
	if !strings.Contains(first, "serving 2 dataset(s)") {
		t.Errorf("announcement: %q", first)
	}

	getJSON := func(path string, out any) int {
		t.Helper()
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		return resp.StatusCode
	}
	var st view.State
	if code := getJSON("/v1/datasets/ticks/latest", &st); code != http.StatusOK {
		t.Fatalf("latest: %d", code)
	}
	if len(st.Keys) != 4 || st.Completeness == nil {
		t.Fatalf("latest: %+v", st)
	}
	for _, l := range st.Keys {
		// The fixture's day ends at 17:00 UTC, every key's last minute held.
		var row struct{ Symbol, TS string }
		if err := json.Unmarshal(l.Row, &row); err != nil {
			t.Fatal(err)
		}
		if l.Time == nil || l.Time.Format("15:04") != "16:59" || row.Symbol != l.Key || row.TS != "2024-03-04T16:59:00Z" {
			t.Errorf("key %s: %v %s", l.Key, l.Time, l.Row)
		}
	}
	var h view.Health
	// The fixture is from 2024: every key is stale against the wall clock.
	if code := getJSON("/v1/health", &h); code != http.StatusServiceUnavailable || h.Status != "degraded" || len(h.Datasets) != 2 {
		t.Errorf("health: %d %+v", code, h)
	}
	var e struct{ Error struct{ Status int } }
	if code := getJSON("/v1/datasets/nope/latest", &e); code != http.StatusNotFound || e.Error.Status != 404 {
		t.Errorf("unknown dataset: %d %+v", code, e)
	}
	stop()
}

func TestServeUsage(t *testing.T) {
	lake := fixtureLake(t)
	code, _, errs := runHeal(t, "serve", "-lake", lake, "-since", "1h")
	if code != exitUsage || !strings.Contains(errs, "-since") {
		t.Errorf("serve -since: exit %d, stderr %s", code, errs)
	}
	code, _, errs = runHeal(t, "serve", "-lake", lake, "-refresh", "0s")
	if code != exitUsage || !strings.Contains(errs, "-refresh") {
		t.Errorf("serve -refresh 0: exit %d, stderr %s", code, errs)
	}
}
