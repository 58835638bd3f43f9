package crypt_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/selfheal/heal"
	"github.com/selfheal/heal/crypt"
	"github.com/selfheal/heal/healtest"
	"github.com/selfheal/heal/internal/fakekms"
)

func newLocal(t *testing.T) *crypt.Local {
	t.Helper()
	k := make([]byte, crypt.DataKeySize)
	rand.Read(k)
	p, err := crypt.NewLocal(k)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLocalConformance(t *testing.T) { localConformance(t, nil) }

// localConformance runs the KeyProvider suite on local providers over one
// KEK, each wrapped by wrap (nil: as they are).
func localConformance(t *testing.T, wrap func(crypt.KeyProvider) crypt.KeyProvider) {
	kek := make([]byte, crypt.DataKeySize)
	rand.Read(kek)
	other := newLocal(t)
	healtest.RunKeyProviderTests(t, func(t *testing.T) (crypt.KeyProvider, crypt.KeyProvider) {
		var p crypt.KeyProvider
		p, err := crypt.NewLocal(kek)
		if err != nil {
			t.Fatal(err)
		}
		if wrap != nil {
			p = wrap(p)
		}
		return p, other
	})
}

// TestKMSConformance runs the real aws-sdk-go-v2 kms client against
// fakekms, an in-process server speaking KMS's JSON protocol: no KMS
// emulator can be installed here (the module proxy refuses the known ones).
func TestKMSConformance(t *testing.T) {
	srv := fakekms.New(t)
	srv.CreateKey("heal")
	srv.CreateKey("other")
	healtest.RunKeyProviderTests(t, func(t *testing.T) (crypt.KeyProvider, crypt.KeyProvider) {
		return crypt.NewKMS(srv.Client(), "alias/heal"), crypt.NewKMS(srv.Client(), "alias/other")
	})
}

func TestKMSDeniedDecryptIsPermanentKeyUnavailable(t *testing.T) {
	srv := fakekms.New(t)
	arn := srv.CreateKey("heal")
	p := crypt.NewKMS(srv.Client(), "alias/heal")
	ctx := context.Background()
	dk, err := p.GenerateDataKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if dk.KeyID != arn {
		t.Errorf("KEK id %q, want the key's ARN %q", dk.KeyID, arn)
	}
	srv.Deny("Decrypt", true)
	_, err = p.Decrypt(ctx, dk.Wrapped, dk.KeyID)
	if !errors.Is(err, crypt.ErrKeyUnavailable) || !heal.IsPermanent(err) || !strings.Contains(err.Error(), "AccessDenied") {
		t.Fatalf("Decrypt without the right: %v; want a permanent ErrKeyUnavailable naming AccessDenied", err)
	}
	// Writing stays possible without the right to read.
	if _, err := p.GenerateDataKey(ctx); err != nil {
		t.Fatalf("GenerateDataKey while Decrypt is denied: %v", err)
	}
	srv.Deny("Decrypt", false)
	if got, err := p.Decrypt(ctx, dk.Wrapped, dk.KeyID); err != nil || !bytes.Equal(got, dk.Plaintext) {
		t.Fatalf("Decrypt once allowed again: %v", err)
	}
}

func TestKMSMissingKey(t *testing.T) {
	srv := fakekms.New(t)
	_, err := crypt.NewKMS(srv.Client(), "alias/nope").GenerateDataKey(context.Background())
	if !errors.Is(err, crypt.ErrKeyUnavailable) || !heal.IsPermanent(err) {
		t.Fatalf("GenerateDataKey with a missing key: %v; want permanent ErrKeyUnavailable", err)
	}
}

func TestLocalFromEnvAndFile(t *testing.T) {
	kek := make([]byte, crypt.DataKeySize)
	rand.Read(kek)
	want, _ := crypt.NewLocal(kek)
	t.Setenv("HEAL_TEST_KEK", " "+base64.StdEncoding.EncodeToString(kek)+"\n")
	fromEnv, err := crypt.LocalFromEnv("HEAL_TEST_KEK")
	if err != nil || fromEnv.KeyID() != want.KeyID() {
		t.Fatalf("LocalFromEnv = %v, %v; want %s", fromEnv, err, want)
	}
	path := filepath.Join(t.TempDir(), "kek")
	if err := os.WriteFile(path, []byte(fmt.Sprintf("%x\n", kek)), 0o600); err != nil {
		t.Fatal(err)
	}
	fromFile, err := crypt.LocalFromFile(path)
	if err != nil || fromFile.KeyID() != want.KeyID() {
		t.Fatalf("LocalFromFile = %v, %v; want %s", fromFile, err, want)
	}
	short := base64.StdEncoding.EncodeToString(kek[:16])
	t.Setenv("HEAL_TEST_KEK", short)
	if _, err := crypt.LocalFromEnv("HEAL_TEST_KEK"); err == nil || strings.Contains(err.Error(), short) {
		t.Fatalf("a 16-byte key: %v; want an error that does not quote it", err)
	}
	if _, err := crypt.NewLocal(kek[:16]); err == nil {
		t.Fatal("NewLocal accepted a 16-byte KEK")
	}
}

func TestMultiConformance(t *testing.T) {
	a, b := make([]byte, crypt.DataKeySize), make([]byte, crypt.DataKeySize)
	rand.Read(a)
	rand.Read(b)
	other := newLocal(t)
	healtest.RunKeyProviderTests(t, func(t *testing.T) (crypt.KeyProvider, crypt.KeyProvider) {
		pa, _ := crypt.NewLocal(a)
		pb, _ := crypt.NewLocal(b)
		return crypt.Multi(pa, pb), other
	})
}

// TestMultiReadsBothKEKs: during a rotation, Multi(new, old) unwraps keys
// of either, and wraps new ones with new.
func TestMultiReadsBothKEKs(t *testing.T) {
	ctx := context.Background()
	oldKEK, newKEK := newLocal(t), newLocal(t)
	m := crypt.Multi(newKEK, oldKEK)
	for _, p := range []*crypt.Local{oldKEK, newKEK} {
		dk, err := p.GenerateDataKey(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := m.Decrypt(ctx, dk.Wrapped, dk.KeyID); err != nil || !bytes.Equal(got, dk.Plaintext) {
			t.Errorf("Multi did not unwrap a key of %s: %v", p, err)
		}
	}
	dk, err := m.GenerateDataKey(ctx)
	if err != nil || dk.KeyID != newKEK.KeyID() {
		t.Errorf("Multi wrapped a new key with %v (%v), want %s", dk, err, newKEK)
	}
}
