//go:build unix

package bench

import "syscall"

// settle flushes every dirty page to disk, so that a write step does not
// pay for the writeback (or the deletions) of the step before it.
func settle() { syscall.Sync() }
