package crypt_test

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/selfheal/heal/crypt"
	"github.com/selfheal/heal/healtest"
	"github.com/selfheal/heal/internal/fakekms"
)

func TestCacheConformance(t *testing.T) {
	localConformance(t, func(p crypt.KeyProvider) crypt.KeyProvider { return crypt.Cache(p, nil) })
}

// TestCacheSavesKMSCalls: against KMS (the real SDK client on the
// in-process fake), reading one data key many times unwraps it once per
// TTL; LRU eviction, expiry and Purge send the next read to KMS again; a
// refusal is not cached; callers get copies they may wipe.
func TestCacheSavesKMSCalls(t *testing.T) {
	ctx := context.Background()
	srv := fakekms.New(t)
	srv.CreateKey("heal")
	clk := healtest.NewManualClock(time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC))
	c := crypt.Cache(crypt.NewKMS(srv.Client(), "alias/heal"), &crypt.CacheOptions{TTL: time.Minute, MaxKeys: 2, Now: clk.Now})
	dk1, err := c.GenerateDataKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	dk2, _ := c.GenerateDataKey(ctx)
	dk3, _ := c.GenerateDataKey(ctx)
	base := srv.Calls()
	read := func(dk *crypt.DataKey) {
		t.Helper()
		k, err := c.Decrypt(ctx, dk.Wrapped, dk.KeyID)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(k, dk.Plaintext) {
			t.Fatal("Decrypt returned another key")
		}
		crypt.Wipe(k) // the caller's copy: the cache keeps its own
	}
	calls := func() int64 { return srv.Calls() - base }
	for i := 0; i < 20; i++ {
		read(dk1)
	}
	if n := calls(); n != 1 {
		t.Fatalf("20 reads of one key made %d KMS calls, want 1", n)
	}
	read(dk2)
	read(dk3) // evicts dk1, the least recently used
	read(dk1)
	if n := calls(); n != 4 {
		t.Fatalf("after an eviction: %d KMS calls, want 4", n)
	}
	clk.Add(time.Minute)
	read(dk1)
	if n := calls(); n != 5 {
		t.Fatalf("after the TTL: %d KMS calls, want 5", n)
	}
	c.Purge()
	if cached, _ := c.Stats(); cached != 0 {
		t.Fatalf("%d keys cached after Purge", cached)
	}
	srv.Deny("Decrypt", true)
	for i := 0; i < 2; i++ {
		if _, err := c.Decrypt(ctx, dk2.Wrapped, dk2.KeyID); !errors.Is(err, crypt.ErrKeyUnavailable) {
			t.Fatalf("Decrypt with the right revoked: %v", err)
		}
	}
	if n := calls(); n != 7 {
		t.Fatalf("two refused reads made %d KMS calls in all, want 7 (refusals are not cached)", n)
	}
	if _, hits := c.Stats(); hits != 19 {
		t.Fatalf("%d reads served from memory, want 19", hits)
	}
}
