package secret_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/selfheal/heal"
	"github.com/selfheal/heal/internal/awstest"
	"github.com/selfheal/heal/secret"
)

// newFake starts awstest's Secrets Manager fake (an in-process server
// speaking its JSON protocol: no emulator can be installed here) and a real
// client for it.
func newFake(t *testing.T) (*awstest.SecretsManager, *secretsmanager.Client) {
	f := awstest.NewSecretsManager(t, nil)
	c := secretsmanager.NewFromConfig(awstest.Config("heal-test", "heal-test-not-a-secret"), func(o *secretsmanager.Options) {
		o.BaseEndpoint = aws.String(f.URL)
		o.RetryMaxAttempts = 1
	})
	return f, c
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

const tok = "sk-live-0123456789abcdef"

func TestSecretsManagerValues(t *testing.T) {
	f, c := newFake(t)
	f.Set("plain", "  "+tok+"\n")
	f.Set("finnhub", `{"token_finnhub":"`+tok+`","other":"x"}`)
	f.Set("notjson", tok)
	f.Set("numeric", `{"token_finnhub": 42}`)
	ctx := context.Background()
	for _, tc := range []struct {
		id, key   string
		want      string
		permanent bool
	}{
		{id: "plain", want: tok},
		{id: "finnhub", key: "token_finnhub", want: tok},
		{id: "finnhub", key: "missing", permanent: true},
		{id: "notjson", key: "token_finnhub", permanent: true},
		{id: "numeric", key: "token_finnhub", permanent: true},
		{id: "absent", permanent: true},
	} {
		p := secret.SecretsManager(c, tc.id, &secret.Options{Key: tc.key})
		got, err := p.Token(ctx)
		if tc.permanent {
			if !heal.IsPermanent(err) {
				t.Errorf("%s: err = %v, want permanent", p, err)
			} else if strings.Contains(err.Error(), tok) {
				t.Errorf("%s: the error holds the secret: %v", p, err)
			}
			continue
		}
		if err != nil || got != tok {
			t.Errorf("%s: Token = %q, %v", p, got, err)
		}
		for _, s := range []string{fmt.Sprint(p), fmt.Sprintf("%+v", p), fmt.Sprintf("%#v", p)} {
			if strings.Contains(s, tok) {
				t.Errorf("formatting the provider shows the secret: %s", s)
			}
		}
	}
	f.FailWith("AccessDeniedException")
	if _, err := secret.SecretsManager(c, "plain", nil).Token(ctx); !heal.IsPermanent(err) {
		t.Errorf("access denied: err = %v, want permanent", err)
	}
	f.FailWith("InternalServiceError")
	if _, err := secret.SecretsManager(c, "plain", nil).Token(ctx); err == nil || heal.IsPermanent(err) {
		t.Errorf("500: err = %v, want retryable", err)
	}
}

func TestSecretsManagerCache(t *testing.T) {
	f, c := newFake(t)
	f.Set("finnhub", `{"token_finnhub":"v1"}`)
	clk := &clock{t: time.Date(2024, 1, 2, 0, 0, 0, 0, time.UTC)}
	p := secret.SecretsManager(c, "finnhub", &secret.Options{Key: "token_finnhub", Refresh: time.Hour, Now: clk.now})
	ctx := context.Background()
	token := func() string {
		t.Helper()
		v, err := p.Token(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	// Concurrent first use: one fetch.
	var wg sync.WaitGroup
	for range 10 {
		wg.Add(1)
		go func() { defer wg.Done(); _, _ = p.Token(ctx) }()
	}
	wg.Wait()
	if f.Calls() != 1 {
		t.Fatalf("%d fetches for 10 concurrent first calls, want 1", f.Calls())
	}
	// Fresh: from the cache, even after a rotation.
	f.Set("finnhub", `{"token_finnhub":"v2"}`)
	clk.add(59 * time.Minute)
	if v := token(); v != "v1" || f.Calls() != 1 {
		t.Fatalf("within Refresh: %q after %d fetches", v, f.Calls())
	}
	// Stale: fetched again, the rotated value picked up.
	clk.add(2 * time.Minute)
	if v := token(); v != "v2" || f.Calls() != 2 {
		t.Fatalf("after Refresh: %q after %d fetches", v, f.Calls())
	}
	// A failing refresh serves the cached value, and waits 30s to retry.
	f.Set("finnhub", `{"token_finnhub":"v3"}`)
	f.FailWith("InternalServiceError")
	clk.add(2 * time.Hour)
	if v := token(); v != "v2" || p.LastError() == nil {
		t.Fatalf("failed refresh: %q, LastError %v", v, p.LastError())
	}
	calls := f.Calls()
	clk.add(10 * time.Second)
	_ = token()
	if f.Calls() != calls {
		t.Fatal("retried a failed refresh before 30s")
	}
	f.FailWith("")
	clk.add(21 * time.Second)
	if v := token(); v != "v3" || p.LastError() != nil {
		t.Fatalf("after recovery: %q, LastError %v", v, p.LastError())
	}
	// Invalidate forces a fetch.
	f.Set("finnhub", `{"token_finnhub":"v4"}`)
	p.Invalidate()
	if v := token(); v != "v4" {
		t.Fatalf("after Invalidate: %q", v)
	}
}

func TestEnv(t *testing.T) {
	t.Setenv("HEAL_TEST_TOKEN", " "+tok+" ")
	p := secret.Env("HEAL_TEST_TOKEN")
	if v, err := p.Token(context.Background()); err != nil || v != tok {
		t.Fatalf("Env = %q, %v", v, err)
	}
	if s := fmt.Sprint(p); strings.Contains(s, tok) {
		t.Fatalf("formatting shows the value: %s", s)
	}
	_, err := secret.Env("HEAL_TEST_UNSET_TOKEN").Token(context.Background())
	if !heal.IsPermanent(err) || !strings.Contains(err.Error(), "HEAL_TEST_UNSET_TOKEN") {
		t.Fatalf("unset: %v", err)
	}
}

// TestOpenSecretsManager: the standard AWS configuration, with the endpoint
// from AWS_ENDPOINT_URL_SECRETS_MANAGER, reaches the (fake) server.
func TestOpenSecretsManager(t *testing.T) {
	f := awstest.NewSecretsManager(t, map[string]string{"prod/finnhub": `{"token_finnhub":"` + tok + `"}`})
	for k, v := range map[string]string{
		"AWS_ACCESS_KEY_ID": "heal-test", "AWS_SECRET_ACCESS_KEY": "heal-test-not-a-secret", "AWS_REGION": "us-east-1",
		"AWS_ENDPOINT_URL_SECRETS_MANAGER": f.URL, "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
	} {
		t.Setenv(k, v)
	}
	p, err := secret.OpenSecretsManager(context.Background(), "prod/finnhub", &secret.Options{Key: "token_finnhub"})
	if err != nil {
		t.Fatal(err)
	}
	if v, err := p.Token(context.Background()); err != nil || v != tok {
		t.Fatalf("Token = %q, %v", v, err)
	}
}
