package awstest

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// SecretsManager is NOT an emulator: no Secrets Manager server can be
// installed on this project's machines (none on the Go proxy, npm or
// Debian), so this in-process httptest server speaks just enough of the
// awsJson1_1 protocol (X-Amz-Target: secretsmanager.GetSecretValue, JSON
// in and out, errors as {"__type": ...}) for the real secretsmanager client
// to talk to it over real HTTP. It exercises our requests, the SDK's
// decoding and our error mapping; it cannot vouch for AWS's behaviour.
type SecretsManager struct {
	// URL is the server's endpoint, for o.BaseEndpoint or
	// AWS_ENDPOINT_URL_SECRETS_MANAGER.
	URL string

	mu      sync.Mutex
	secrets map[string]string
	fail    string // when set, every call fails with this __type
	calls   atomic.Int32
}

// NewSecretsManager starts a fake holding secrets (id -> SecretString),
// stopped when t ends.
func NewSecretsManager(t testing.TB, secrets map[string]string) *SecretsManager {
	f := &SecretsManager{secrets: map[string]string{}}
	for k, v := range secrets {
		f.secrets[k] = v
	}
	ts := httptest.NewServer(f)
	t.Cleanup(ts.Close)
	f.URL = ts.URL
	return f
}

// Set stores (or replaces) a secret's string.
func (f *SecretsManager) Set(id, v string) {
	f.mu.Lock()
	f.secrets[id] = v
	f.mu.Unlock()
}

// FailWith makes every call fail with the error type typ
// ("InternalServiceError" answers 500, others 400); "" stops failing.
func (f *SecretsManager) FailWith(typ string) {
	f.mu.Lock()
	f.fail = typ
	f.mu.Unlock()
}

// Calls is the number of requests served.
func (f *SecretsManager) Calls() int { return int(f.calls.Load()) }

func (f *SecretsManager) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.calls.Add(1)
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	fail := func(status int, typ, msg string) {
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(map[string]string{"__type": typ, "message": msg})
	}
	if r.Method != http.MethodPost || r.Header.Get("X-Amz-Target") != "secretsmanager.GetSecretValue" ||
		!strings.HasPrefix(r.Header.Get("Authorization"), "AWS4-HMAC-SHA256 ") {
		fail(400, "InvalidRequestException", "unexpected request "+r.Header.Get("X-Amz-Target"))
		return
	}
	var in struct{ SecretId, VersionStage string }
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		fail(400, "InvalidParameterException", err.Error())
		return
	}
	f.mu.Lock()
	v, ok := f.secrets[in.SecretId]
	failWith := f.fail
	f.mu.Unlock()
	switch {
	case failWith == "InternalServiceError":
		fail(500, failWith, "try again")
		return
	case failWith != "":
		fail(400, failWith, "refused")
		return
	case !ok:
		fail(400, "ResourceNotFoundException", "Secrets Manager can't find the specified secret.")
		return
	}
	_ = json.NewEncoder(w).Encode(map[string]any{
		"ARN":           "arn:aws:secretsmanager:us-east-1:000000000000:secret:" + in.SecretId + "-AbCdEf",
		"Name":          in.SecretId,
		"SecretString":  v,
		"VersionId":     "00000000-0000-0000-0000-000000000001",
		"VersionStages": []string{"AWSCURRENT"},
		"CreatedDate":   1.7e9,
	})
}
