package main

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/selfheal/heal/view"
)

// TestServeEncryptedLocalKey: serve reads the latest row of every key,
// encrypted columns included, with -local-key.
func TestServeEncryptedLocalKey(t *testing.T) {
	path, _, kek := keyFile(t)
	base, _, stop := startServe(t, "-lake", encryptedLake(t, kek), "-local-key", path)
	resp, err := http.Get(base + "/v1/datasets/meters/latest")
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
	stop()
}
