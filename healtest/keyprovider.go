package healtest

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/selfheal/heal/crypt"
)

// KeyProviderMaker returns the provider under test and another over a
// different key-encryption key, whose data keys the first must refuse.
// Providers made by separate calls of one test must share their KEKs (the
// same KMS key, the same local key), so that a key one wraps another
// unwraps.
type KeyProviderMaker func(t *testing.T) (p, other crypt.KeyProvider)

// RunKeyProviderTests checks that a [crypt.KeyProvider] keeps its
// contract: fresh, distinct data keys of crypt.DataKeySize bytes; wrapped
// keys that do not hold the plaintext and unwrap to it, also from a
// second provider over the same KEK; Encrypt (for rotation) round trips;
// a key wrapped by another KEK, or damaged, fails with
// crypt.ErrKeyUnavailable; a canceled ctx fails; concurrent use; and no
// key material in errors or in the formatting of a data key.
func RunKeyProviderTests(t *testing.T, newProviders KeyProviderMaker) {
	t.Helper()
	ctx := context.Background()
	t.Run("GenerateDataKey", func(t *testing.T) {
		p, _ := newProviders(t)
		a, err := p.GenerateDataKey(ctx)
		if err != nil {
			t.Fatalf("GenerateDataKey: %v", err)
		}
		b, err := p.GenerateDataKey(ctx)
		if err != nil {
			t.Fatalf("GenerateDataKey: %v", err)
		}
		if len(a.Plaintext) != crypt.DataKeySize || len(b.Plaintext) != crypt.DataKeySize {
			t.Fatalf("data keys of %d and %d bytes, want %d", len(a.Plaintext), len(b.Plaintext), crypt.DataKeySize)
		}
		if bytes.Equal(a.Plaintext, b.Plaintext) || bytes.Equal(a.Wrapped, b.Wrapped) {
			t.Error("two data keys are equal")
		}
		if a.KeyID == "" || len(a.Wrapped) == 0 {
			t.Errorf("data key without KEK id (%q) or wrapped key (%d bytes)", a.KeyID, len(a.Wrapped))
		}
		if bytes.Contains(a.Wrapped, a.Plaintext) {
			t.Error("the wrapped key holds the plaintext key")
		}
		if bytes.Equal(a.Plaintext, make([]byte, crypt.DataKeySize)) {
			t.Error("the data key is all zeros")
		}
		checkNoKey(t, a.Plaintext, fmt.Sprint(a), fmt.Sprintf("%v %+v %#v %s %q", a, a, a, a, a))
	})
	t.Run("Decrypt", func(t *testing.T) {
		p, _ := newProviders(t)
		dk, err := p.GenerateDataKey(ctx)
		if err != nil {
			t.Fatalf("GenerateDataKey: %v", err)
		}
		got, err := p.Decrypt(ctx, dk.Wrapped, dk.KeyID)
		if err != nil || !bytes.Equal(got, dk.Plaintext) {
			t.Fatalf("Decrypt = %d bytes, %v; want the data key", len(got), err)
		}
		// Another provider over the same KEK: a lake reopened later.
		q, _ := newProviders(t)
		got, err = q.Decrypt(ctx, dk.Wrapped, dk.KeyID)
		if err != nil || !bytes.Equal(got, dk.Plaintext) {
			t.Fatalf("Decrypt by a second provider over the same KEK = %d bytes, %v; want the data key", len(got), err)
		}
	})
	t.Run("Encrypt", func(t *testing.T) {
		p, _ := newProviders(t)
		key := bytes.Repeat([]byte{0x5a}, crypt.DataKeySize)
		w, id, err := p.Encrypt(ctx, key)
		if err != nil {
			t.Fatalf("Encrypt: %v", err)
		}
		if id == "" || bytes.Contains(w, key) {
			t.Fatalf("Encrypt: KEK id %q, wrapped key holding the plaintext: %v", id, bytes.Contains(w, key))
		}
		got, err := p.Decrypt(ctx, w, id)
		if err != nil || !bytes.Equal(got, key) {
			t.Fatalf("Decrypt(Encrypt(k)) = %d bytes, %v; want k", len(got), err)
		}
	})
	t.Run("OtherKEKRefused", func(t *testing.T) {
		p, other := newProviders(t)
		dk, err := other.GenerateDataKey(ctx)
		if err != nil {
			t.Fatalf("other GenerateDataKey: %v", err)
		}
		mine, err := p.GenerateDataKey(ctx)
		if err != nil {
			t.Fatalf("GenerateDataKey: %v", err)
		}
		if dk.KeyID == mine.KeyID {
			t.Fatalf("two KEKs have one id %q", dk.KeyID)
		}
		got, err := p.Decrypt(ctx, dk.Wrapped, dk.KeyID)
		if !errors.Is(err, crypt.ErrKeyUnavailable) {
			t.Fatalf("Decrypt of a key wrapped by another KEK = %d bytes, %v; want ErrKeyUnavailable", len(got), err)
		}
		checkNoKey(t, dk.Plaintext, err.Error())
		// The other KEK's wrapped key presented as one of ours.
		got, err = p.Decrypt(ctx, dk.Wrapped, mine.KeyID)
		if !errors.Is(err, crypt.ErrKeyUnavailable) {
			t.Fatalf("Decrypt of a foreign wrapped key under our KEK id = %d bytes, %v; want ErrKeyUnavailable", len(got), err)
		}
	})
	t.Run("DamagedRefused", func(t *testing.T) {
		p, _ := newProviders(t)
		dk, err := p.GenerateDataKey(ctx)
		if err != nil {
			t.Fatalf("GenerateDataKey: %v", err)
		}
		for _, i := range []int{0, len(dk.Wrapped) / 2, len(dk.Wrapped) - 1} {
			bad := bytes.Clone(dk.Wrapped)
			bad[i] ^= 0x01
			got, err := p.Decrypt(ctx, bad, dk.KeyID)
			if !errors.Is(err, crypt.ErrKeyUnavailable) {
				t.Errorf("Decrypt of a wrapped key with byte %d flipped = %d bytes, %v; want ErrKeyUnavailable", i, len(got), err)
				continue
			}
			checkNoKey(t, dk.Plaintext, err.Error())
		}
		if got, err := p.Decrypt(ctx, dk.Wrapped[:len(dk.Wrapped)/2], dk.KeyID); !errors.Is(err, crypt.ErrKeyUnavailable) {
			t.Errorf("Decrypt of a truncated wrapped key = %d bytes, %v; want ErrKeyUnavailable", len(got), err)
		}
	})
	t.Run("Canceled", func(t *testing.T) {
		p, _ := newProviders(t)
		dk, err := p.GenerateDataKey(ctx)
		if err != nil {
			t.Fatalf("GenerateDataKey: %v", err)
		}
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if _, err := p.GenerateDataKey(cctx); !errors.Is(err, context.Canceled) {
			t.Errorf("GenerateDataKey after cancel: %v, want context.Canceled", err)
		}
		if _, err := p.Decrypt(cctx, dk.Wrapped, dk.KeyID); !errors.Is(err, context.Canceled) {
			t.Errorf("Decrypt after cancel: %v, want context.Canceled", err)
		}
		if _, _, err := p.Encrypt(cctx, dk.Plaintext); !errors.Is(err, context.Canceled) {
			t.Errorf("Encrypt after cancel: %v, want context.Canceled", err)
		}
	})
	t.Run("Concurrent", func(t *testing.T) {
		p, _ := newProviders(t)
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				dk, err := p.GenerateDataKey(ctx)
				if err != nil {
					errs <- err
					return
				}
				got, err := p.Decrypt(ctx, dk.Wrapped, dk.KeyID)
				if err == nil && !bytes.Equal(got, dk.Plaintext) {
					err = errors.New("a concurrent Decrypt returned another key")
				}
				if err != nil {
					errs <- err
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	})
}

// checkNoKey reports any of texts holding key, raw, in hex or in base64.
func checkNoKey(t *testing.T, key []byte, texts ...string) {
	t.Helper()
	forms := []string{string(key), hex.EncodeToString(key), base64.StdEncoding.EncodeToString(key), fmt.Sprint(key)}
	for _, s := range texts {
		for _, f := range forms {
			if bytes.Contains([]byte(s), []byte(f)) {
				t.Errorf("key material in %q", s)
			}
		}
	}
}
