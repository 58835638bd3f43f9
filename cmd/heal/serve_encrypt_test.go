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

// TestServeEncryptedLocalKey: serve reads the latest row of every key,
// encrypted columns included, with -local-key.
func TestServeEncryptedLocalKey(t *testing.T) {
	path, _, kek := keyFile(t)
	dir := encryptedLake(t, kek)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	var errb strings.Builder
	exit := make(chan int, 1)
	go func() {
		exit <- run(ctx, []string{"serve", "-lake", dir, "-addr", "127.0.0.1:0", "-local-key", path}, pw, &errb)
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
	resp, err := http.Get(strings.Fields(first[i:])[0] + "/v1/datasets/meters/latest")
	if err != nil {
		t.Fatal(err)
	}
	var st view.State
	err = json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || len(st.Keys) != 2 {
		t.Fatalf("latest: %d %+v %v", resp.StatusCode, st, err)
	}
	for _, l := range st.Keys {
		var row struct {
			KWh  float64
			Note string
		}
		if err := json.Unmarshal(l.Row, &row); err != nil {
			t.Fatal(err)
		}
		if row.KWh != plantedValue || row.Note != plantedNote {
			t.Errorf("key %s: the encrypted columns were not read: %s", l.Key, l.Row)
		}
	}
	cancel()
	if code := <-exit; code != exitOK {
		t.Errorf("exit %d after cancel; stderr %s", code, errb.String())
	}
}
