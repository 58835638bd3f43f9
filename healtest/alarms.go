package healtest

import (
	"context"
	"sync"

	"github.com/selfheal/heal"
)

// Alarms is a [heal.Alarmer] that records what it is told, for tests. Its
// zero value is ready to use.
type Alarms struct {
	mu  sync.Mutex
	got []heal.Alarm
}

// Alarm records a.
func (r *Alarms) Alarm(_ context.Context, a heal.Alarm) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, a)
	return nil
}

// List returns the alarms recorded so far, in order.
func (r *Alarms) List() []heal.Alarm {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]heal.Alarm(nil), r.got...)
}

// Count is the number of alarms (resolved false) or resolved notices
// (resolved true) recorded.
func (r *Alarms) Count(resolved bool) int { return r.CountStage("", resolved) }

// CountStage is Count for one stage ("": every stage).
func (r *Alarms) CountStage(stage heal.Stage, resolved bool) int {
	n := 0
	for _, a := range r.List() {
		if a.Resolved == resolved && (stage == "" || a.Stage == stage) {
			n++
		}
	}
	return n
}
