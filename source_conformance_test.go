package heal_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/apache/arrow/go/v17/arrow/memory"

	"github.com/selfheal/heal"
	"github.com/selfheal/heal/healtest"
)

// synthHarness runs the public Source suite over the synthetic source these
// tests use, so the suite itself is exercised in this repository.
type synthHarness struct{}

func (synthHarness) Dataset() *heal.Dataset { return ticks() }
func (synthHarness) Keys() []string         { return []string{"AAPL", "MSFT"} }
func (synthHarness) DataWindow() heal.Window {
	return heal.Window{Start: day.Start, End: day.Start.Add(time.Hour)}
}
func (synthHarness) EmptyWindow() heal.Window {
	return heal.Window{Start: day.Start.Add(2 * time.Hour), End: day.Start.Add(3 * time.Hour)}
}
func (synthHarness) LiveSlot() time.Time { return day.Start.Add(17 * time.Minute) }
func (synthHarness) Close()              {}

func (synthHarness) MakeSource(_ context.Context, cond healtest.Condition, mem memory.Allocator) (heal.Source, error) {
	s := newSynth(mem)
	for _, k := range []string{"AAPL", "MSFT"} {
		s.noData[k] = map[time.Time]bool{}
		for t := day.Start.Add(2 * time.Hour); t.Before(day.Start.Add(3 * time.Hour)); t = t.Add(time.Minute) {
			s.noData[k][t] = true
		}
		switch cond {
		case healtest.Unauthorized:
			s.broken[k] = heal.Permanent(errors.New("401 invalid key"))
		case healtest.Unavailable:
			s.broken[k] = errFlaky
		case healtest.RateLimited:
			s.broken[k] = heal.RetryAfter(time.Second, errors.New("429"))
		}
	}
	return s, nil
}

func TestSourceConformance(t *testing.T) {
	healtest.RunSourceTests(t, func(context.Context, *testing.T) (healtest.SourceHarness, error) {
		return synthHarness{}, nil
	})
}
