package sink

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"

	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/selfheal/heal"
)

// apiErr builds the error the SDK returns for an HTTP answer with an API
// error code.
func apiErr(status int, code string) error {
	return &smithy.OperationError{ServiceID: "S3", OperationName: "PutObject", Err: &smithyhttp.ResponseError{
		Response: &smithyhttp.Response{Response: &http.Response{StatusCode: status}},
		Err:      &smithy.GenericAPIError{Code: code, Message: "m"},
	}}
}

func TestClassifyAWS(t *testing.T) {
	for _, tc := range []struct {
		err       error
		permanent bool
	}{
		{apiErr(503, "SlowDown"), false},
		{apiErr(500, "InternalError"), false},
		{apiErr(400, "ThrottlingException"), false},
		{apiErr(400, "RequestTimeout"), false},
		{apiErr(429, "TooManyRequests"), false},
		{apiErr(408, ""), false},
		{apiErr(502, ""), false},
		{apiErr(403, "AccessDenied"), true},
		{apiErr(403, "InvalidAccessKeyId"), true},
		{apiErr(403, "SignatureDoesNotMatch"), true},
		{apiErr(404, "NoSuchBucket"), true},
		{apiErr(400, "InvalidArgument"), true},
		{apiErr(400, "KMS.NotFoundException"), true},
		{&smithy.OperationError{Err: errors.New("dial tcp: connection refused")}, false},
		{fmt.Errorf("wrapped: %w", context.DeadlineExceeded), false},
		{smithy.InvalidParamsError{Context: "PutObjectInput"}, true},
	} {
		err := classifyAWS(tc.err)
		if heal.IsPermanent(err) != tc.permanent {
			t.Errorf("classifyAWS(%v): permanent = %v, want %v", tc.err, heal.IsPermanent(err), tc.permanent)
		}
		if _, ok := tc.err.(smithy.InvalidParamsError); !ok && !errors.Is(err, tc.err) {
			t.Errorf("classifyAWS(%v) lost the cause", tc.err)
		}
	}
	if classifyAWS(nil) != nil {
		t.Error("classifyAWS(nil) != nil")
	}
}

func TestConditionFailed(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{apiErr(412, "PreconditionFailed"), true},
		{apiErr(409, "ConditionalRequestConflict"), true},
		{apiErr(412, ""), true},
		{apiErr(409, "BucketAlreadyExists"), false},
		{apiErr(403, "AccessDenied"), false},
	} {
		if got := isConditionFailed(tc.err); got != tc.want {
			t.Errorf("isConditionFailed(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}
