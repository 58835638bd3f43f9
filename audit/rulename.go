package audit

import (
	"fmt"
	"reflect"
	"strings"
	"time"

	"github.com/selfheal/heal"
)

// The names of the ready rules, as [ParseRule] reads them and their String
// methods write them. An engine records its rule's name in the dataset's
// descriptor, so the heal command audits a lake with the rule it was built
// with.
const (
	RuleContinuous = "continuous"  // [Continuous]
	RuleUSEquities = "us-equities" // [USEquities]
)

// RuleNames returns the names [ParseRule] accepts, sorted.
func RuleNames() []string { return []string{RuleContinuous, RuleUSEquities} }

// ParseRule returns the rule a name stands for: "continuous" for
// [Continuous], "us-equities" (or "nyse") for [USEquities]. Case and
// surrounding spaces are ignored. An unknown name, including a custom
// [Session]'s String, is an error naming the accepted ones.
func ParseRule(name string) (heal.CompletenessRule, error) {
	switch strings.ToLower(strings.TrimSpace(name)) {
	case RuleContinuous:
		return Continuous(), nil
	case RuleUSEquities, "nyse":
		return USEquities(), nil
	}
	return nil, fmt.Errorf("heal/audit: unknown rule %q: want one of %s", name, strings.Join(RuleNames(), ", "))
}

// String returns "continuous", the rule's name for [ParseRule].
func (continuous) String() string { return RuleContinuous }

// String returns the session's name for [ParseRule]: "us-equities" for the
// calendar [USEquities] returns, left unchanged. Any other session has no
// name ParseRule knows; it is described as "session:" followed by its Name
// (so tools reading a descriptor ask for a rule instead of guessing).
func (s *Session) String() string {
	if s.isUSEquities() {
		return RuleUSEquities
	}
	return "session:" + s.Name
}

func (s *Session) isUSEquities() bool {
	return s.Name == "NYSE" && s.Location != nil && s.Location.String() == "America/New_York" &&
		s.Open == 9*time.Hour+30*time.Minute && s.Close == 16*time.Hour && s.Weekdays == nil &&
		sameFunc(s.Holidays, NYSEHolidays) && sameFunc(s.EarlyCloses, NYSEEarlyCloses)
}

func sameFunc(a, b any) bool {
	va, vb := reflect.ValueOf(a), reflect.ValueOf(b)
	return !va.IsNil() && va.Pointer() == vb.Pointer()
}
