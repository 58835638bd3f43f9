// Package ratelimit enforces "at most N calls in any window of length D",
// for several (N, D) at once, on an injectable clock.
//
// It keeps the times of the last N calls for each limit (a sliding log), so
// unlike a token bucket it never lets 2N calls straddle a fixed window: a
// server counting per calendar minute never sees more than N.
package ratelimit

import (
	"context"
	"sync"
	"time"
)

// Limit is N calls per D.
type Limit struct {
	N int
	D time.Duration
}

// Limiter is safe for concurrent use. The zero Limiter allows everything.
type Limiter struct {
	mu     sync.Mutex
	now    func() time.Time
	after  func(time.Duration) <-chan time.Time
	limits []Limit
	logs   [][]time.Time // per limit: ring of the last N call times
	next   []int
}

// New returns a limiter over the given limits; limits with N<=0 or D<=0 are
// ignored. now and after come from the caller's clock.
func New(now func() time.Time, after func(time.Duration) <-chan time.Time, limits ...Limit) *Limiter {
	l := &Limiter{now: now, after: after}
	for _, lim := range limits {
		if lim.N > 0 && lim.D > 0 {
			l.limits = append(l.limits, lim)
			l.logs = append(l.logs, make([]time.Time, 0, lim.N))
			l.next = append(l.next, 0)
		}
	}
	return l
}

// Wait blocks until one more call is allowed under every limit, then
// records it. It returns ctx.Err() if ctx ends first, recording nothing.
func (l *Limiter) Wait(ctx context.Context) error {
	_, err := l.Take(ctx)
	return err
}

// Take is Wait that also returns the time it recorded the call at.
func (l *Limiter) Take(ctx context.Context) (time.Time, error) {
	return l.take(ctx, nil)
}

// TakeBelow is Take for work that can wait: it records a call only while,
// for each limit i, the window holds fewer than N - reserve[i] calls, so
// the last reserve[i] calls of every window stay free for Take (an
// engine's live polls, which must not queue behind its repairs). A missing
// or non-positive reserve is none; a reserve is capped at N-1 so the work
// always gets one call per window.
func (l *Limiter) TakeBelow(ctx context.Context, reserve []int) (time.Time, error) {
	return l.take(ctx, reserve)
}

func (l *Limiter) take(ctx context.Context, reserve []int) (time.Time, error) {
	if l == nil || len(l.limits) == 0 {
		return time.Time{}, ctx.Err()
	}
	for {
		l.mu.Lock()
		now := l.now()
		var wait time.Duration
		for i, lim := range l.limits {
			log := l.logs[i]
			r := 0
			if i < len(reserve) {
				r = min(max(reserve[i], 0), lim.N-1)
			}
			// At most N-r-1 calls may be in the window before this one:
			// the call that many places from the newest must have left it.
			k := len(log) - (lim.N - r)
			if k < 0 {
				continue
			}
			start := 0
			if len(log) == lim.N {
				start = l.next[i]
			}
			if d := log[(start+k)%lim.N].Add(lim.D).Sub(now); d > wait {
				wait = d
			}
		}
		if wait <= 0 {
			for i, lim := range l.limits {
				if len(l.logs[i]) < lim.N {
					l.logs[i] = append(l.logs[i], now)
				} else {
					l.logs[i][l.next[i]] = now
					l.next[i] = (l.next[i] + 1) % lim.N
				}
			}
			l.mu.Unlock()
			return now, nil
		}
		l.mu.Unlock()
		select {
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		case <-l.after(wait):
		}
	}
}
