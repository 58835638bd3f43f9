package crypt

import (
	"context"
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/smithy-go"

	"github.com/selfheal/heal"
)

// KMS is a [KeyProvider] over an AWS KMS symmetric key: data keys come
// from GenerateDataKey (AES_256) and are unwrapped by Decrypt, so a
// plaintext KEK never leaves KMS. Rights are KMS's: a process allowed
// kms:GenerateDataKey but not kms:Decrypt can write an encrypted lake and
// audit it, and cannot read its sensitive columns.
type KMS struct {
	client *kms.Client
	keyID  string
}

var _ KeyProvider = (*KMS)(nil)

// NewKMS returns a provider wrapping data keys with the KMS key keyID (a
// key id, ARN, alias name or alias ARN), through client, the caller's
// (config.LoadDefaultConfig and kms.NewFromConfig: credentials come from
// the standard chain). The KEK id it records is the key ARN KMS returns.
func NewKMS(client *kms.Client, keyID string) *KMS {
	return &KMS{client: client, keyID: keyID}
}

// String names the KMS key.
func (k *KMS) String() string { return "kms:" + k.keyID }

// GenerateDataKey implements [KeyProvider].
func (k *KMS) GenerateDataKey(ctx context.Context) (*DataKey, error) {
	out, err := k.client.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{
		KeyId:   aws.String(k.keyID),
		KeySpec: types.DataKeySpecAes256,
	})
	if err != nil {
		return nil, k.err("generate data key", err)
	}
	if len(out.Plaintext) != DataKeySize || len(out.CiphertextBlob) == 0 || aws.ToString(out.KeyId) == "" {
		Wipe(out.Plaintext)
		return nil, fmt.Errorf("heal/crypt: %s: generate data key: KMS answered a %d-byte key, %d wrapped bytes, key id %q", k, len(out.Plaintext), len(out.CiphertextBlob), aws.ToString(out.KeyId))
	}
	return &DataKey{Plaintext: out.Plaintext, Wrapped: out.CiphertextBlob, KeyID: aws.ToString(out.KeyId)}, nil
}

// Encrypt implements [KeyProvider].
func (k *KMS) Encrypt(ctx context.Context, plaintext []byte) ([]byte, string, error) {
	out, err := k.client.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(k.keyID), Plaintext: plaintext})
	if err != nil {
		return nil, "", k.err("wrap data key", err)
	}
	return out.CiphertextBlob, aws.ToString(out.KeyId), nil
}

// Decrypt implements [KeyProvider]. It names the provider's own KMS key in
// the request (AWS's advice), so KMS refuses a key wrapped by any other
// (IncorrectKeyException), even one the caller may use: a provider unwraps
// what its key wrapped, as [Local] does, and a lake never silently depends
// on a second key. keyID, the KEK id recorded beside the wrapped key,
// names it in errors only.
func (k *KMS) Decrypt(ctx context.Context, wrapped []byte, keyID string) ([]byte, error) {
	out, err := k.client.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: wrapped, KeyId: aws.String(k.keyID)})
	if err != nil {
		return nil, k.err("unwrap data key wrapped by "+keyID, err)
	}
	if len(out.Plaintext) != DataKeySize {
		Wipe(out.Plaintext)
		return nil, fmt.Errorf("heal/crypt: %s: unwrap data key: KMS answered a %d-byte key: %w", k, len(out.Plaintext), ErrKeyUnavailable)
	}
	return out.Plaintext, nil
}

// err classifies a KMS error: refusals that retrying cannot change are
// ErrKeyUnavailable and heal.Permanent; throttling and server errors are
// left retryable. AWS's messages hold no key material.
func (k *KMS) err(op string, err error) error {
	err = fmt.Errorf("heal/crypt: %s: %s: %w", k, op, err)
	var ae smithy.APIError
	if errors.As(err, &ae) {
		switch ae.ErrorCode() {
		case "AccessDeniedException", "IncorrectKeyException", "InvalidCiphertextException",
			"NotFoundException", "DisabledException", "KMSInvalidStateException",
			"InvalidKeyUsageException", "InvalidGrantTokenException", "UnrecognizedClientException",
			"KMSInvalidMacException", "DryRunOperationException":
			return heal.Permanent(fmt.Errorf("%w (%w)", ErrKeyUnavailable, err))
		}
	}
	return err
}
