// Package fakekms is an in-process stand-in for AWS KMS, for tests.
//
// It is NOT an emulator: no KMS emulator can be installed on this
// project's machines (the Go module proxy refuses the known ones, and there
// is none on Debian or npm), so this httptest server speaks just enough of
// KMS's awsJson1_1 protocol (POST /, X-Amz-Target: TrentService.<Op>, JSON
// in and out with blobs in base64, errors as {"__type": ...}) for the real
// aws-sdk-go-v2 kms client to talk to it over real HTTP: GenerateDataKey,
// Encrypt and Decrypt on symmetric keys, with aliases and a switch that
// denies Decrypt the way an IAM policy would. It exercises our requests,
// the SDK's encoding and decoding and our error mapping; it cannot vouch
// for AWS's behaviour.
package fakekms

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"

	"github.com/selfheal/heal/internal/awstest"
)

// Server is a fake KMS. Its zero value is not usable: use [New].
type Server struct {
	URL string

	mu      sync.Mutex
	keys    map[string]cipher.AEAD // key ARN → its key material
	aliases map[string]string      // "alias/x" → key ARN
	deny    map[string]bool        // operation → refused with AccessDeniedException
	calls   atomic.Int64
}

// New starts a fake KMS for the test, closed at its end.
func New(t testing.TB) *Server {
	s := &Server{keys: map[string]cipher.AEAD{}, aliases: map[string]string{}, deny: map[string]bool{}}
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)
	s.URL = ts.URL
	return s
}

// Client returns a real kms client talking to s, without retries.
func (s *Server) Client() *kms.Client {
	return kms.NewFromConfig(awstest.Config("heal-test", "heal-test-not-a-secret"), func(o *kms.Options) {
		o.BaseEndpoint = aws.String(s.URL)
		o.RetryMaxAttempts = 1
	})
}

// CreateKey makes a symmetric key reachable as alias (when not "") and
// returns its ARN.
func (s *Server) CreateKey(alias string) string {
	k := make([]byte, 32)
	rand.Read(k)
	block, _ := aes.NewCipher(k)
	aead, _ := cipher.NewGCM(block)
	id := make([]byte, 16)
	rand.Read(id)
	arn := fmt.Sprintf("arn:aws:kms:%s:000000000000:key/%x-%x-%x-%x-%x", awstest.Region, id[:4], id[4:6], id[6:8], id[8:10], id[10:])
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys[arn] = aead
	if alias != "" {
		s.aliases["alias/"+strings.TrimPrefix(alias, "alias/")] = arn
	}
	return arn
}

// Deny makes op ("Decrypt", "GenerateDataKey", "Encrypt") fail with
// AccessDeniedException, as for a principal without that right; allow
// undoes it.
func (s *Server) Deny(op string, deny bool) {
	s.mu.Lock()
	s.deny[op] = deny
	s.mu.Unlock()
}

// Calls returns the number of requests served.
func (s *Server) Calls() int64 { return s.calls.Load() }

// resolve returns the ARN of a key id, ARN or alias.
func (s *Server) resolve(id string) (string, cipher.AEAD, bool) {
	if a, ok := s.aliases[id]; ok {
		id = a
	} else if i := strings.Index(id, ":alias/"); i >= 0 {
		if a, ok := s.aliases[id[i+1:]]; ok {
			id = a
		}
	}
	for arn, aead := range s.keys {
		if arn == id || strings.HasSuffix(arn, "key/"+id) {
			return arn, aead, true
		}
	}
	return "", nil, false
}

type apiError struct {
	status   int
	typ, msg string
}

// ServeHTTP implements the protocol.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.calls.Add(1)
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	out, aerr := s.serve(r)
	if aerr != nil {
		w.WriteHeader(aerr.status)
		_ = json.NewEncoder(w).Encode(map[string]string{"__type": aerr.typ, "message": aerr.msg})
		return
	}
	_ = json.NewEncoder(w).Encode(out)
}

func (s *Server) serve(r *http.Request) (any, *apiError) {
	target := r.Header.Get("X-Amz-Target")
	op, ok := strings.CutPrefix(target, "TrentService.")
	if r.Method != http.MethodPost || !ok || !strings.HasPrefix(r.Header.Get("Authorization"), "AWS4-HMAC-SHA256 ") ||
		!strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-amz-json-1.1") {
		return nil, &apiError{400, "UnrecognizedClientException", "unexpected request " + target}
	}
	var in struct {
		KeyId          string
		KeySpec        string
		NumberOfBytes  int
		Plaintext      []byte // base64 in JSON, as the protocol's blobs
		CiphertextBlob []byte
	}
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		return nil, &apiError{400, "SerializationException", err.Error()}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.deny[op] {
		return nil, &apiError{400, "AccessDeniedException", "User: arn:aws:iam::000000000000:user/heal-test is not authorized to perform: kms:" + op}
	}
	switch op {
	case "GenerateDataKey":
		if in.KeySpec != "AES_256" && in.NumberOfBytes != 32 {
			return nil, &apiError{400, "ValidationException", "this fake serves AES_256 data keys only"}
		}
		arn, aead, ok := s.resolve(in.KeyId)
		if !ok {
			return nil, &apiError{400, "NotFoundException", "Key '" + in.KeyId + "' does not exist"}
		}
		pt := make([]byte, 32)
		rand.Read(pt)
		return map[string]any{"KeyId": arn, "Plaintext": pt, "CiphertextBlob": seal(arn, aead, pt)}, nil
	case "Encrypt":
		arn, aead, ok := s.resolve(in.KeyId)
		if !ok {
			return nil, &apiError{400, "NotFoundException", "Key '" + in.KeyId + "' does not exist"}
		}
		if len(in.Plaintext) == 0 || len(in.Plaintext) > 4096 {
			return nil, &apiError{400, "ValidationException", "plaintext of 1 to 4096 bytes"}
		}
		return map[string]any{"KeyId": arn, "CiphertextBlob": seal(arn, aead, in.Plaintext)}, nil
	case "Decrypt":
		arn, rest, ok := splitBlob(in.CiphertextBlob)
		aead := s.keys[arn]
		if !ok || aead == nil {
			return nil, &apiError{400, "InvalidCiphertextException", ""}
		}
		if in.KeyId != "" {
			if want, _, ok := s.resolve(in.KeyId); !ok || want != arn {
				return nil, &apiError{400, "IncorrectKeyException", "The key ID in the request does not identify a CMK that can perform this operation."}
			}
		}
		ns := aead.NonceSize()
		if len(rest) < ns+aead.Overhead() {
			return nil, &apiError{400, "InvalidCiphertextException", ""}
		}
		pt, err := aead.Open(nil, rest[:ns], rest[ns:], []byte(arn))
		if err != nil {
			return nil, &apiError{400, "InvalidCiphertextException", ""}
		}
		return map[string]any{"KeyId": arn, "Plaintext": pt, "EncryptionAlgorithm": "SYMMETRIC_DEFAULT"}, nil
	}
	return nil, &apiError{400, "UnknownOperationException", op}
}

// seal makes a ciphertext blob: the key's ARN (as KMS's blobs carry the
// key's identity), then nonce, ciphertext and tag.
func seal(arn string, aead cipher.AEAD, pt []byte) []byte {
	b := binary.BigEndian.AppendUint16(nil, uint16(len(arn)))
	b = append(b, arn...)
	nonce := make([]byte, aead.NonceSize())
	rand.Read(nonce)
	b = append(b, nonce...)
	return aead.Seal(b, nonce, pt, []byte(arn))
}

func splitBlob(b []byte) (arn string, rest []byte, ok bool) {
	if len(b) < 2 {
		return "", nil, false
	}
	n := int(binary.BigEndian.Uint16(b))
	if len(b) < 2+n {
		return "", nil, false
	}
	return string(b[2 : 2+n]), b[2+n:], true
}
