package heal

import (
	"context"
	"log/slog"
	"sync/atomic"
)

// Stats are an engine's counters since it was created.
type Stats struct {
	LiveCalls     int64 // live source calls
	RepairCalls   int64 // historical source calls, retries included
	FetchErrors   int64 // source calls that failed (no-data answers excluded)
	RowsWritten   int64 // rows landed, live and repaired
	Gaps          int64 // missing slots found by audits (a slot found twice counts twice)
	Repaired      int64 // slots filled by repair
	Empty         int64 // slots the source confirmed empty
	Unrepairable  int64 // slots given up on
	Resynthesized int64 // derived windows recomputed
	Compacted     int64 // partitions compacted
	Alarms        int64 // alarms raised
	Resolved      int64 // resolved notices sent
}

type stats struct {
	LiveCalls, RepairCalls, FetchErrors, RowsWritten, Gaps, Repaired, Empty,
	Unrepairable, Resynthesized, Compacted, Alarms, Resolved atomic.Int64
}

func (s *stats) add(c *atomic.Int64, n int) { c.Add(int64(n)) }

// Stats returns a snapshot of the engine's counters.
func (e *Engine) Stats() Stats {
	s := &e.stats
	return Stats{
		LiveCalls: s.LiveCalls.Load(), RepairCalls: s.RepairCalls.Load(), FetchErrors: s.FetchErrors.Load(),
		RowsWritten: s.RowsWritten.Load(), Gaps: s.Gaps.Load(), Repaired: s.Repaired.Load(), Empty: s.Empty.Load(),
		Unrepairable: s.Unrepairable.Load(), Resynthesized: s.Resynthesized.Load(), Compacted: s.Compacted.Load(),
		Alarms: s.Alarms.Load(), Resolved: s.Resolved.Load(),
	}
}

// LogAlarmer returns the default [Alarmer]: it logs each alarm at level
// Error, and each resolved notice at level Info, with stable keys.
func LogAlarmer(l *slog.Logger) Alarmer {
	if l == nil {
		l = slog.Default()
	}
	return AlarmerFunc(func(ctx context.Context, a Alarm) error {
		attrs := []any{"dataset", a.Dataset, "key", a.Key, "window", a.Window.String(), "stage", string(a.Stage), "attempts", a.Attempts}
		if a.Resolved {
			l.InfoContext(ctx, "heal: resolved", attrs...)
			return nil
		}
		l.ErrorContext(ctx, "heal: alarm", append(attrs, "last_error", a.LastError)...)
		return nil
	})
}

// MultiAlarmer sends every alarm to each of as, in order, and joins their
// errors.
func MultiAlarmer(as ...Alarmer) Alarmer {
	return AlarmerFunc(func(ctx context.Context, a Alarm) error {
		var errs []error
		for _, x := range as {
			if err := x.Alarm(ctx, a); err != nil {
				errs = append(errs, err)
			}
		}
		return joinErrs(errs)
	})
}
