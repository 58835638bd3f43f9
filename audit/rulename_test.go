package audit

import (
	"fmt"
	"testing"
	"time"

	"github.com/selfheal/heal"
)

func TestParseRuleRoundTrip(t *testing.T) {
	for _, r := range []heal.CompletenessRule{Continuous(), USEquities()} {
		name := r.(fmt.Stringer).String()
		got, err := ParseRule(name)
		if err != nil {
			t.Fatalf("ParseRule(%q): %v", name, err)
		}
		if got.(fmt.Stringer).String() != name {
			t.Errorf("ParseRule(%q) is %q", name, got)
		}
		// The parsed rule expects the same slots.
		w := heal.Window{Start: time.Date(2024, 7, 3, 0, 0, 0, 0, time.UTC), End: time.Date(2024, 7, 6, 0, 0, 0, 0, time.UTC)}
		a, b := r.Expected("X", w, time.Minute), got.Expected("X", w, time.Minute)
		if fmt.Sprint(a) != fmt.Sprint(b) {
			t.Errorf("%s: expected %v, parsed rule expects %v", name, a, b)
		}
	}
	for _, alias := range []string{" US-Equities ", "nyse", "CONTINUOUS"} {
		if _, err := ParseRule(alias); err != nil {
			t.Errorf("ParseRule(%q): %v", alias, err)
		}
	}
}

func TestParseRuleUnknown(t *testing.T) {
	for _, name := range []string{"", "lse", "session:LSE"} {
		if _, err := ParseRule(name); err == nil {
			t.Errorf("ParseRule(%q) = nil error", name)
		}
	}
}

func TestSessionString(t *testing.T) {
	us := USEquities()
	if s := us.String(); s != RuleUSEquities {
		t.Errorf("USEquities().String() = %q", s)
	}
	changed := USEquities()
	changed.Close = 13 * time.Hour
	if s := changed.String(); s != "session:NYSE" {
		t.Errorf("a changed NYSE session is %q, want session:NYSE", s)
	}
	custom := &Session{Name: "LSE", Open: 8 * time.Hour, Close: 16*time.Hour + 30*time.Minute}
	if s := custom.String(); s != "session:LSE" {
		t.Errorf("custom session is %q", s)
	}
	if s := fmt.Sprint(Continuous()); s != RuleContinuous {
		t.Errorf("Continuous() prints %q", s)
	}
}
