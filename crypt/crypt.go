// Package crypt holds the key providers of heal's client-side envelope
// encryption at rest (see sink.Encryption): each data file is encrypted
// with a fresh data key, and the data key is stored only wrapped
// (encrypted) by a key-encryption key (KEK) that a [KeyProvider] holds:
// AWS KMS ([NewKMS]) or a key in the process ([NewLocal], for tests and
// embedded use).
//
// Plaintext data keys are handed to the caller, who wipes them after use
// ([Wipe]). Keys never appear in errors, in String() or in logs written by
// this package: a [DataKey] formats as its KEK id only.
package crypt

import (
	"context"
	"errors"
	"fmt"
)

// DataKeySize is the length in bytes of a data key: AES-256.
const DataKeySize = 32

// ErrKeyUnavailable says a data key cannot be unwrapped here: the provider
// refuses (no decrypt rights), holds another key-encryption key than the
// one that wrapped it, or the wrapped key is damaged. Retrying does not
// help. Check with errors.Is.
var ErrKeyUnavailable = errors.New("key unavailable")

// KeyProvider wraps and unwraps data keys with a key-encryption key. Its
// methods may be called concurrently. ctx bounds the call and is not kept.
// Returned slices belong to the caller, who should [Wipe] plaintext keys
// after use; arguments are not retained.
//
// A provider that cannot unwrap a key for good (access denied, a KEK it
// does not hold, a wrapped key that does not authenticate) returns an error
// for which errors.Is(err, [ErrKeyUnavailable]); other errors (network,
// throttling) may be retried. Errors never hold key material.
//
// healtest.RunKeyProviderTests checks an implementation.
type KeyProvider interface {
	// GenerateDataKey returns a fresh random data key of DataKeySize
	// bytes, in plaintext and wrapped, with the id of the KEK that wrapped
	// it.
	GenerateDataKey(ctx context.Context) (*DataKey, error)
	// Decrypt unwraps wrapped, which the KEK keyID wrapped, and returns the
	// plaintext data key.
	Decrypt(ctx context.Context, wrapped []byte, keyID string) ([]byte, error)
	// Encrypt wraps an existing data key with the provider's KEK, for key
	// rotation: it returns the wrapped key and the KEK's id.
	Encrypt(ctx context.Context, plaintext []byte) (wrapped []byte, keyID string, err error)
}

// DataKey is a data key as [KeyProvider.GenerateDataKey] returns it.
// Formatting it with fmt shows the KEK id only.
type DataKey struct {
	Plaintext []byte // the key itself; wipe it with Wipe once used
	Wrapped   []byte // Plaintext wrapped by the KEK KeyID; safe to store
	KeyID     string // the id of the KEK, to pass to Decrypt
}

// Wipe zeroes the plaintext key.
func (k *DataKey) Wipe() { Wipe(k.Plaintext) }

// String describes k without its plaintext.
func (k *DataKey) String() string {
	if k == nil {
		return "crypt.DataKey(nil)"
	}
	return fmt.Sprintf("crypt.DataKey{KeyID: %q, Plaintext: <redacted>, Wrapped: %d bytes}", k.KeyID, len(k.Wrapped))
}

// GoString is String, so that %#v does not show the key either.
func (k *DataKey) GoString() string { return k.String() }

// Format implements fmt.Formatter, so that every verb shows String.
func (k *DataKey) Format(f fmt.State, _ rune) { fmt.Fprint(f, k.String()) }

// Wipe zeroes b. Go may have copied a key elsewhere (the garbage collector
// moves nothing, but string conversions copy), so this narrows the
// window a key spends in memory rather than closing it.
func Wipe(b []byte) { clear(b) }
