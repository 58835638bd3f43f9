package alarm

import (
	"context"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/sns"

	"github.com/selfheal/heal"
)

// Open returns the alarmer a URL names, for command-line flags:
//
//	sns://arn:aws:sns:REGION:ACCOUNT:TOPIC   [SNS], with the standard AWS
//	                                         configuration (config.LoadDefaultConfig;
//	                                         region from the ARN; AWS_ENDPOINT_URL_SNS
//	                                         for a local server)
//	https://hooks.slack.com/services/...     [Webhook] with default options
//
// Several URLs separated by commas give a [Multi] of them. Errors never
// repeat a webhook url.
func Open(ctx context.Context, rawURL string) (heal.Alarmer, error) {
	if strings.Contains(rawURL, ",") {
		var as []heal.Alarmer
		for _, u := range strings.Split(rawURL, ",") {
			a, err := Open(ctx, strings.TrimSpace(u))
			if err != nil {
				return nil, err
			}
			as = append(as, a)
		}
		return Multi(as...), nil
	}
	switch {
	case strings.HasPrefix(rawURL, "sns://"):
		arn := strings.TrimPrefix(rawURL, "sns://")
		parts := strings.SplitN(arn, ":", 6)
		if len(parts) != 6 || parts[0] != "arn" || parts[2] != "sns" {
			return nil, fmt.Errorf("heal/alarm: %q: want sns://arn:aws:sns:REGION:ACCOUNT:TOPIC", rawURL)
		}
		cfg, err := config.LoadDefaultConfig(ctx, config.WithRegion(parts[3]))
		if err != nil {
			return nil, fmt.Errorf("heal/alarm: sns: load aws config: %w", err)
		}
		return SNS(sns.NewFromConfig(cfg), arn), nil
	case strings.HasPrefix(rawURL, "https://"), strings.HasPrefix(rawURL, "http://"):
		return Webhook(rawURL, nil), nil
	}
	scheme, _, _ := strings.Cut(rawURL, "://")
	return nil, fmt.Errorf("heal/alarm: unknown alarm scheme %q: want sns:// or https://", scheme)
}
