package ratelimit

import (
	"context"
	"sync"
	"testing"
	"time"
)

// fakeClock advances only when someone waits on it, so the test is exact.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	c.t = c.t.Add(d)
	t := c.t
	c.mu.Unlock()
	ch := make(chan time.Time, 1)
	ch <- t
	return ch
}

// TestNoWindowExceeded makes many concurrent calls and checks every window
// of each limit's length, aligned or not, holds at most N calls.
func TestNoWindowExceeded(t *testing.T) {
	c := &fakeClock{t: time.Date(2024, 1, 2, 9, 30, 17, 0, time.UTC)}
	l := New(c.Now, c.After, Limit{N: 60, D: time.Minute}, Limit{N: 30, D: time.Second})
	var mu sync.Mutex
	var calls []time.Time
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 40; i++ {
				at, err := l.Take(context.Background())
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock() // the time the limiter granted, not a later reading of the shared clock
				calls = append(calls, at)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(calls) != 320 {
		t.Fatalf("%d calls made, want 320", len(calls))
	}
	for _, lim := range []Limit{{60, time.Minute}, {30, time.Second}} {
		for _, s := range calls {
			n := 0
			for _, u := range calls {
				if !u.Before(s) && u.Before(s.Add(lim.D)) {
					n++
				}
			}
			if n > lim.N {
				t.Fatalf("%d calls in the %s window from %s, limit %d", n, lim.D, s, lim.N)
			}
		}
	}
	// 320 calls at 60/min need at least 5 full minutes.
	first, last := calls[0], calls[0]
	for _, c := range calls {
		if c.Before(first) {
			first = c
		}
		if c.After(last) {
			last = c
		}
	}
	if span := last.Sub(first); span < 5*time.Minute {
		t.Errorf("320 calls took %s of clock time; the limit allows no less than 5m", span)
	}
}

func TestWaitHonoursContext(t *testing.T) {
	l := New(time.Now, time.After, Limit{N: 1, D: time.Hour})
	if err := l.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := l.Wait(ctx); err != context.DeadlineExceeded {
		t.Fatalf("Wait = %v, want DeadlineExceeded", err)
	}
}
