// Package secret provides API tokens without putting them in code, flags or
// logs: from an environment variable ([Env]) or from AWS Secrets Manager
// ([SecretsManager]), where the original pipeline kept its Finnhub token as
// {"token_finnhub": "..."}.
//
// A [Provider] is asked for the token on every use and may cache it. Values
// never appear in errors, in String() or in logs written by this package.
package secret

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/selfheal/heal"
)

// Provider returns a secret value, typically an API token. Token may be
// called concurrently; it may serve a cached value.
type Provider interface {
	Token(ctx context.Context) (string, error)
}

// ProviderFunc adapts a function to a [Provider].
type ProviderFunc func(ctx context.Context) (string, error)

// Token calls f.
func (f ProviderFunc) Token(ctx context.Context) (string, error) { return f(ctx) }

// Env returns a Provider reading the environment variable name on every
// call. An unset or empty variable is a permanent error naming the
// variable.
func Env(name string) Provider { return envProvider(name) }

type envProvider string

func (e envProvider) Token(context.Context) (string, error) {
	v := strings.TrimSpace(os.Getenv(string(e)))
	if v == "" {
		return "", heal.Permanent(fmt.Errorf("heal/secret: environment variable %s is not set", string(e)))
	}
	return v, nil
}

func (e envProvider) String() string { return "env:" + string(e) }
