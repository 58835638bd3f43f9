package secret

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/selfheal/heal"
)

// Options configures [SecretsManager]. A nil *Options, or any zero field,
// means the default written beside the field.
type Options struct {
	// Key names a field of a secret stored as a JSON object, e.g.
	// "token_finnhub" for {"token_finnhub": "..."}. "": the whole secret
	// string is the value.
	Key string
	// Refresh is how long a fetched value is served before it is fetched
	// again (so a rotated secret is picked up). 0: 15 minutes.
	Refresh time.Duration
	// VersionStage selects the version. "": AWSCURRENT.
	VersionStage string
	// Now is the clock. nil: time.Now.
	Now func() time.Time
}

// SecretsManagerProvider reads one secret from AWS Secrets Manager and
// caches it. Make it with [SecretsManager].
type SecretsManagerProvider struct {
	client  *secretsmanager.Client
	id      string
	key     string
	refresh time.Duration
	stage   *string
	now     func() time.Time
	mu      sync.Mutex // held while fetching: concurrent callers share one fetch
	value   string
	fetched time.Time // zero: nothing cached
	retryAt time.Time // after a failed refresh, when to try again
	lastErr error
}

var _ Provider = (*SecretsManagerProvider)(nil)

// SecretsManager returns a Provider reading the secret secretID (its name
// or ARN) with client, the caller's (config.LoadDefaultConfig and
// secretsmanager.NewFromConfig: credentials come from the standard chain).
//
// The value is fetched on first use and again once Refresh has passed. If
// a refresh fails while a value is cached, the cached value keeps being
// served and the fetch is tried again after min(Refresh, 30s): an outage of
// Secrets Manager does not stop a pipeline whose token is still valid.
// Call [SecretsManagerProvider.Invalidate] when the token was refused (an
// HTTP 401), to fetch a rotated one on the next call.
//
// Missing secrets, refused access, a secret that is not a JSON object or
// lacks Key are permanent errors. Errors name the secret and the key,
// never the value.
func SecretsManager(client *secretsmanager.Client, secretID string, opts *Options) *SecretsManagerProvider {
	var o Options
	if opts != nil {
		o = *opts
	}
	p := &SecretsManagerProvider{client: client, id: secretID, key: o.Key, refresh: o.Refresh, now: o.Now}
	if p.refresh <= 0 {
		p.refresh = 15 * time.Minute
	}
	if o.VersionStage != "" {
		p.stage = aws.String(o.VersionStage)
	}
	if p.now == nil {
		p.now = time.Now
	}
	return p
}

// String names the secret (and key), never its value.
func (p *SecretsManagerProvider) String() string {
	if p.key != "" {
		return "secretsmanager:" + p.id + "#" + p.key
	}
	return "secretsmanager:" + p.id
}

// GoString is String, so %#v cannot print the cached value either.
func (p *SecretsManagerProvider) GoString() string { return p.String() }

// Invalidate drops the cached value: the next Token fetches.
func (p *SecretsManagerProvider) Invalidate() {
	p.mu.Lock()
	p.fetched = time.Time{}
	p.retryAt = time.Time{}
	p.mu.Unlock()
}

// Token returns the secret's value, from the cache while it is fresh.
func (p *SecretsManagerProvider) Token(ctx context.Context) (string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	if !p.fetched.IsZero() {
		if now.Sub(p.fetched) < p.refresh || now.Before(p.retryAt) {
			return p.value, nil
		}
	}
	v, err := p.fetch(ctx)
	if err != nil {
		p.lastErr = err
		if !p.fetched.IsZero() && !errors.Is(err, context.Canceled) {
			p.retryAt = now.Add(min(p.refresh, 30*time.Second))
			return p.value, nil
		}
		return "", err
	}
	p.value, p.fetched, p.retryAt, p.lastErr = v, now, time.Time{}, nil
	return v, nil
}

// LastError is the error of the last failed refresh that was covered by a
// cached value, or nil since the last successful fetch. It never holds the
// value.
func (p *SecretsManagerProvider) LastError() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lastErr
}

func (p *SecretsManagerProvider) fetch(ctx context.Context) (string, error) {
	out, err := p.client.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(p.id), VersionStage: p.stage})
	if err != nil {
		err = fmt.Errorf("heal/secret: get %s: %w", p, err)
		if permanentAWS(err) {
			return "", heal.Permanent(err)
		}
		return "", err
	}
	var raw string
	switch {
	case out.SecretString != nil:
		raw = *out.SecretString
	case out.SecretBinary != nil && utf8.Valid(out.SecretBinary):
		raw = string(out.SecretBinary)
	default:
		return "", heal.Permanent(fmt.Errorf("heal/secret: %s holds no string", p))
	}
	if p.key == "" {
		v := strings.TrimSpace(raw)
		if v == "" {
			return "", heal.Permanent(fmt.Errorf("heal/secret: %s is empty", p))
		}
		return v, nil
	}
	var fields map[string]any
	if err := json.Unmarshal([]byte(raw), &fields); err != nil {
		// json's error quotes the offending character: keep it out.
		return "", heal.Permanent(fmt.Errorf("heal/secret: %s is not a JSON object, so it has no key %q", p.id, p.key))
	}
	f, ok := fields[p.key]
	if !ok {
		return "", heal.Permanent(fmt.Errorf("heal/secret: secret %s has no key %q", p.id, p.key))
	}
	v, ok := f.(string)
	if !ok || strings.TrimSpace(v) == "" {
		return "", heal.Permanent(fmt.Errorf("heal/secret: key %q of secret %s is not a non-empty string", p.key, p.id))
	}
	return strings.TrimSpace(v), nil
}

// permanentAWS reports AWS errors retrying cannot fix: a missing secret,
// refused access, a secret being deleted, bad input.
func permanentAWS(err error) bool {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		switch ae.ErrorCode() {
		case "ResourceNotFoundException", "AccessDeniedException", "DecryptionFailure",
			"InvalidRequestException", "InvalidParameterException", "UnrecognizedClientException",
			"InvalidSignatureException", "ExpiredTokenException":
			return true
		case "InternalServiceError", "ThrottlingException":
			return false
		}
	}
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) {
		st := re.HTTPStatusCode()
		return st >= 400 && st < 500 && st != 408 && st != 429
	}
	var ip smithy.InvalidParamsError
	return errors.As(err, &ip)
}

// OpenSecretsManager returns [SecretsManager] for secretID (a name or an
// ARN) with a client made from the standard AWS configuration
// (config.LoadDefaultConfig; the region comes from the ARN when secretID
// is one; AWS_ENDPOINT_URL_SECRETS_MANAGER for a local server). For a
// command's -token-secret flag.
func OpenSecretsManager(ctx context.Context, secretID string, opts *Options) (*SecretsManagerProvider, error) {
	var loadOpts []func(*config.LoadOptions) error
	if parts := strings.SplitN(secretID, ":", 6); len(parts) == 6 && parts[0] == "arn" {
		loadOpts = append(loadOpts, config.WithRegion(parts[3]))
	}
	cfg, err := config.LoadDefaultConfig(ctx, loadOpts...)
	if err != nil {
		return nil, fmt.Errorf("heal/secret: load aws config: %w", err)
	}
	return SecretsManager(secretsmanager.NewFromConfig(cfg), secretID, opts), nil
}
