//go:build !unix

package cost

import "time"

// processCPU is unavailable here: CPU is not counted.
func processCPU() (time.Duration, bool) { return 0, false }
