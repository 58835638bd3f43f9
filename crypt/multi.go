package crypt

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// Multi returns a provider that generates and wraps data keys with primary
// and unwraps with the first of primary and others that can: for readers
// during a KEK rotation (Multi(newKEK, oldKEK) reads the key records
// sink.Lake.Rewrap has re-wrapped and those it has not reached yet), and
// for data kept under several KEKs.
//
// Decrypt fails with ErrKeyUnavailable only when every provider does; when
// one failed otherwise (a network error) and none succeeded, it returns
// that error, which a retry may clear.
func Multi(primary KeyProvider, others ...KeyProvider) KeyProvider {
	return &multi{ps: append([]KeyProvider{primary}, others...)}
}

type multi struct{ ps []KeyProvider }

func (m *multi) String() string {
	names := make([]string, len(m.ps))
	for i, p := range m.ps {
		names[i] = fmt.Sprint(p)
	}
	return "multi(" + strings.Join(names, ", ") + ")"
}

func (m *multi) GenerateDataKey(ctx context.Context) (*DataKey, error) {
	return m.ps[0].GenerateDataKey(ctx)
}

func (m *multi) Encrypt(ctx context.Context, plaintext []byte) ([]byte, string, error) {
	return m.ps[0].Encrypt(ctx, plaintext)
}

func (m *multi) Decrypt(ctx context.Context, wrapped []byte, keyID string) ([]byte, error) {
	var unavailable []error
	var other error
	for _, p := range m.ps {
		k, err := p.Decrypt(ctx, wrapped, keyID)
		if err == nil {
			return k, nil
		}
		if errors.Is(err, ErrKeyUnavailable) {
			unavailable = append(unavailable, err)
		} else if other == nil {
			other = err
		}
	}
	if other != nil {
		return nil, other
	}
	return nil, errors.Join(unavailable...)
}
