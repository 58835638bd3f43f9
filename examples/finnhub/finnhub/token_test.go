package finnhub_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/selfheal/heal"
	"github.com/selfheal/heal/examples/finnhub/finnhub"
	"github.com/selfheal/heal/examples/finnhub/finnhubtest"
)

// rotating is a token provider whose secret was rotated: it serves a stale
// token until Invalidate makes it fetch again.
type rotating struct {
	mu          sync.Mutex
	stale       bool
	fetches     int
	invalidated int
	err         error
}

func (r *rotating) Token(context.Context) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return "", r.err
	}
	if r.stale {
		return "stale-token-value", nil
	}
	r.fetches++
	return finnhubtest.Token, nil
}

func (r *rotating) Invalidate() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stale = false
	r.invalidated++
}

// TestTokenProvider: the client asks its provider for the token on each
// request; a 401 invalidates the provider's cache so the next request uses
// the rotated secret; a provider failure is reported, classified, without
// any token in the message.
func TestTokenProvider(t *testing.T) {
	srv := finnhubtest.NewServer(&finnhubtest.Options{Clock: &clock{t: tuesday}})
	defer srv.Close()
	p := &rotating{stale: true}
	c, err := finnhub.NewClient(&finnhub.Options{BaseURL: srv.URL, TokenProvider: p, Clock: &clock{t: tuesday}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	_, err = c.Quote(ctx, "AAPL")
	if !errors.Is(err, finnhub.ErrUnauthorized) || !heal.IsPermanent(err) {
		t.Fatalf("with the stale token: %v; want a permanent ErrUnauthorized", err)
	}
	if strings.Contains(err.Error(), "stale-token-value") {
		t.Fatalf("the error shows the token: %v", err)
	}
	if p.invalidated != 1 {
		t.Fatalf("Invalidate called %d times after the 401, want 1", p.invalidated)
	}
	if _, err := c.Quote(ctx, "AAPL"); err != nil {
		t.Fatalf("after the rotation: %v", err)
	}
	if p.fetches != 1 {
		t.Fatalf("provider asked %d times after the rotation, want 1", p.fetches)
	}

	p.err = heal.Permanent(errors.New("heal/secret: secret prod/finnhub: access denied"))
	_, err = c.Quote(ctx, "MSFT")
	if err == nil || !heal.IsPermanent(err) || !strings.Contains(err.Error(), "api token") || !strings.Contains(err.Error(), "prod/finnhub") {
		t.Fatalf("with a failing provider: %v; want a permanent error about the api token naming the secret", err)
	}
	if n := srv.Counters().Calls["/quote"]; n != 2 {
		t.Fatalf("the server saw %d quote calls, want 2 (none without a token)", n)
	}
}
