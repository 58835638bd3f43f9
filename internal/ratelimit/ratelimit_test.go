package ratelimit

import (
	"context"
	"fmt"
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

// TestTakeBelowLeavesReserve: work taken with TakeBelow fills a window only
// up to N minus the reserve; Take still gets the reserved calls at once,
// and no window ever holds more than N calls.
func TestTakeBelowLeavesReserve(t *testing.T) {
	t0 := time.Date(2024, 1, 2, 9, 30, 0, 0, time.UTC)
	ctx := context.Background()
	offsets := func(l *Limiter, c *fakeClock, n int, below bool) []time.Duration {
		var out []time.Duration
		for i := 0; i < n; i++ {
			var at time.Time
			var err error
			if below {
				at, err = l.TakeBelow(ctx, []int{3})
			} else {
				at, err = l.Take(ctx)
			}
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, at.Sub(t0))
		}
		return out
	}
	c := &fakeClock{t: t0}
	l := New(c.Now, c.After, Limit{N: 10, D: time.Minute})
	if got := offsets(l, c, 8, true); fmt.Sprint(got) != "[0s 0s 0s 0s 0s 0s 0s 1m0s]" {
		t.Fatalf("TakeBelow with 3 of 10 reserved: calls at %v; want 7 at once, the 8th once the first left the minute", got)
	}
	c = &fakeClock{t: t0}
	l = New(c.Now, c.After, Limit{N: 10, D: time.Minute})
	offsets(l, c, 7, true)
	if got := offsets(l, c, 4, false); fmt.Sprint(got) != "[0s 0s 0s 1m0s]" {
		t.Fatalf("Take after 7 TakeBelow: calls at %v; want the 3 reserved at once, then a wait (10 a minute)", got)
	}
	// A reserve of N or more still lets the work through, one a window.
	c = &fakeClock{t: t0}
	l = New(c.Now, c.After, Limit{N: 2, D: time.Minute})
	got := []time.Duration{}
	for i := 0; i < 3; i++ {
		at, err := l.TakeBelow(ctx, []int{5})
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, at.Sub(t0))
	}
	if fmt.Sprint(got) != "[0s 1m0s 2m0s]" {
		t.Fatalf("TakeBelow with the whole limit reserved: %v; want one call a minute", got)
	}
}
