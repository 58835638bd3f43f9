package heal

import "time"

// Clock tells the engine what time it is and how to wait. Inject one to run
// a trading day in seconds (see [ScaledClock]) with the same code path as
// real time. Implementations must be safe for concurrent use.
type Clock interface {
	Now() time.Time
	// After waits d of the clock's time, then sends the clock's time.
	After(d time.Duration) <-chan time.Time
}

// SystemClock is the wall clock.
type SystemClock struct{}

// Now returns time.Now().
func (SystemClock) Now() time.Time { return time.Now() }

// After is time.After.
func (SystemClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// ScaledClock is a clock that starts at a given instant and runs speed times
// faster than the wall clock: with speed 1200 a trading minute lasts 50 ms.
type ScaledClock struct {
	origin time.Time // wall time at creation
	start  time.Time // clock time at creation
	speed  float64
}

// NewScaledClock returns a clock reading start now and running speed times
// faster than the wall clock. speed <= 0 means 1.
func NewScaledClock(start time.Time, speed float64) *ScaledClock {
	if speed <= 0 {
		speed = 1
	}
	return &ScaledClock{origin: time.Now(), start: start, speed: speed}
}

// Now returns the scaled time.
func (c *ScaledClock) Now() time.Time {
	return c.start.Add(time.Duration(float64(time.Since(c.origin)) * c.speed))
}

// After waits d of scaled time.
func (c *ScaledClock) After(d time.Duration) <-chan time.Time {
	out := make(chan time.Time, 1)
	real := time.Duration(float64(d) / c.speed)
	time.AfterFunc(real, func() { out <- c.Now() })
	return out
}
