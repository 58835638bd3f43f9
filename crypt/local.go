package crypt

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
)

// Local is a [KeyProvider] whose KEK is an AES-256 key held in the process
// (read from a file or an environment variable, say): for tests, and for an
// embedded lake with no KMS. A data key is wrapped with AES-256-GCM, a
// random 96-bit nonce and the KEK's id as additional data:
// nonce || ciphertext || tag.
//
// Its KEK id is "local:" and 16 hex digits of a SHA-256 of the KEK, which
// tells KEKs apart without revealing them.
type Local struct {
	id   string
	aead cipher.AEAD
}

var _ KeyProvider = (*Local)(nil)

// NewLocal returns a provider over kek, 32 bytes, which it copies (the
// caller may wipe kek afterwards).
func NewLocal(kek []byte) (*Local, error) {
	if len(kek) != DataKeySize {
		return nil, fmt.Errorf("heal/crypt: local key-encryption key is %d bytes, want %d", len(kek), DataKeySize)
	}
	block, err := aes.NewCipher(kek) // copies the key schedule
	if err != nil {
		return nil, fmt.Errorf("heal/crypt: local key-encryption key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("heal/crypt: local key-encryption key: %w", err)
	}
	h := sha256.New()
	h.Write([]byte("heal/crypt local kek id\x00"))
	h.Write(kek)
	return &Local{id: "local:" + hex.EncodeToString(h.Sum(nil)[:8]), aead: aead}, nil
}

// ParseKey decodes a 32-byte key written as 64 hex digits or in standard
// base64 (as `openssl rand -base64 32` prints it), ignoring surrounding
// space. Errors never quote s.
func ParseKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if k, err := hex.DecodeString(s); err == nil && len(k) == DataKeySize {
		return k, nil
	}
	if k, err := base64.StdEncoding.DecodeString(s); err == nil && len(k) == DataKeySize {
		return k, nil
	}
	return nil, fmt.Errorf("heal/crypt: a key is %d bytes as 64 hex digits or base64; got %d characters of neither", DataKeySize, len(s))
}

// LocalFromEnv returns a provider over the key in the environment variable
// name (see [ParseKey]).
func LocalFromEnv(name string) (*Local, error) {
	v := os.Getenv(name)
	if v == "" {
		return nil, fmt.Errorf("heal/crypt: environment variable %s is not set", name)
	}
	k, err := ParseKey(v)
	if err != nil {
		return nil, fmt.Errorf("heal/crypt: environment variable %s: %w", name, err)
	}
	defer Wipe(k)
	return NewLocal(k)
}

// LocalFromFile returns a provider over the key in the file path (see
// [ParseKey]).
func LocalFromFile(path string) (*Local, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("heal/crypt: key file: %w", err)
	}
	defer Wipe(b)
	k, err := ParseKey(string(b))
	if err != nil {
		return nil, fmt.Errorf("heal/crypt: key file %s: %w", path, err)
	}
	defer Wipe(k)
	return NewLocal(k)
}

// KeyID returns the KEK's id.
func (l *Local) KeyID() string { return l.id }

// String returns the KEK's id.
func (l *Local) String() string { return l.id }

// GenerateDataKey implements [KeyProvider].
func (l *Local) GenerateDataKey(ctx context.Context) (*DataKey, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("heal/crypt: %s: generate data key: %w", l.id, err)
	}
	k := make([]byte, DataKeySize)
	rand.Read(k) // never fails (crypto/rand, Go 1.24+)
	w, id, err := l.Encrypt(ctx, k)
	if err != nil {
		Wipe(k)
		return nil, err
	}
	return &DataKey{Plaintext: k, Wrapped: w, KeyID: id}, nil
}

// Encrypt implements [KeyProvider].
func (l *Local) Encrypt(ctx context.Context, plaintext []byte) ([]byte, string, error) {
	if err := ctx.Err(); err != nil {
		return nil, "", fmt.Errorf("heal/crypt: %s: wrap data key: %w", l.id, err)
	}
	if len(plaintext) == 0 {
		return nil, "", fmt.Errorf("heal/crypt: %s: wrap data key: empty key", l.id)
	}
	nonce := make([]byte, l.aead.NonceSize(), l.aead.NonceSize()+len(plaintext)+l.aead.Overhead())
	rand.Read(nonce)
	return l.aead.Seal(nonce, nonce, plaintext, []byte(l.id)), l.id, nil
}

// Decrypt implements [KeyProvider]. A key wrapped by another KEK, or
// damaged, gives an error for which errors.Is(err, ErrKeyUnavailable).
func (l *Local) Decrypt(ctx context.Context, wrapped []byte, keyID string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("heal/crypt: %s: unwrap data key: %w", l.id, err)
	}
	if keyID != l.id {
		return nil, fmt.Errorf("heal/crypt: %s: unwrap data key: it was wrapped by %q, another key-encryption key: %w", l.id, keyID, ErrKeyUnavailable)
	}
	ns := l.aead.NonceSize()
	if len(wrapped) < ns+l.aead.Overhead() {
		return nil, fmt.Errorf("heal/crypt: %s: unwrap data key: wrapped key of %d bytes is too short: %w", l.id, len(wrapped), ErrKeyUnavailable)
	}
	k, err := l.aead.Open(nil, wrapped[:ns], wrapped[ns:], []byte(l.id))
	if err != nil {
		return nil, fmt.Errorf("heal/crypt: %s: unwrap data key: the wrapped key does not authenticate (damaged, or a wrong key-encryption key): %w", l.id, ErrKeyUnavailable)
	}
	return k, nil
}
