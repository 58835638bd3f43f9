package sink

import (
	"context"
	"errors"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/selfheal/heal"
)

// awsStatus returns the HTTP status of an AWS SDK error, or 0 when the
// request never got a response (a network error, a canceled context, a
// client-side validation error).
func awsStatus(err error) int {
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}

// awsCode returns the API error code of an AWS SDK error ("NoSuchKey",
// "SlowDown", ...), or "".
func awsCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// awsRetryable reports whether an AWS SDK error is worth retrying:
// throttling, 5xx, request timeouts and network errors are; a 4xx that
// reports bad input, missing resources or refused credentials is not.
func awsRetryable(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return true // the caller's ctx ended: not the operation's fault
	}
	var inv smithy.InvalidParamsError
	if errors.As(err, &inv) {
		return false
	}
	code := awsCode(err)
	if _, ok := retry.DefaultThrottleErrorCodes[code]; ok {
		return true
	}
	if _, ok := retry.DefaultRetryableErrorCodes[code]; ok {
		return true
	}
	switch code {
	case "InternalError", "InternalFailure", "ServiceUnavailable", "KMS.ThrottlingException":
		return true
	}
	status := awsStatus(err)
	switch {
	case status == 0:
		// No response: a connection reset, a DNS failure, a timeout, or
		// a failure to sign (credentials not retrievable yet). Retry.
		return true
	case status == 408 || status == 429 || status >= 500:
		return true
	case status >= 400:
		// Some services report throttling with a 400 and a code the
		// lists above do not hold.
		return strings.Contains(strings.ToLower(code), "throttl")
	}
	return true
}

// classifyAWS marks err with heal.Permanent when retrying cannot help. A
// context error is returned as it is.
func classifyAWS(err error) error {
	if err == nil || heal.IsPermanent(err) || awsRetryable(err) {
		return err
	}
	return heal.Permanent(err)
}
