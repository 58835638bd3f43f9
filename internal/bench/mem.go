package bench

import (
	"bufio"
	"bytes"
	"os"
	"runtime/metrics"
	"strconv"
	"sync"
	"time"
)

// peakMeter measures the peak memory of the part of a step that is timed:
// the resident set's high-water mark (VmHWM, reset through clear_refs when
// the kernel allows, so that setup does not count) and the Go heap, sampled.
type peakMeter struct {
	stop     chan struct{}
	done     sync.WaitGroup
	mu       sync.Mutex
	heap     uint64
	rssReset bool
}

// startPeak resets the high-water mark and starts sampling the heap.
func startPeak() *peakMeter {
	m := &peakMeter{stop: make(chan struct{})}
	// Writing 5 to clear_refs resets VmHWM to the current RSS (Linux 4.0+).
	m.rssReset = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) == nil
	m.done.Add(1)
	go func() {
		defer m.done.Done()
		s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
		t := time.NewTicker(2 * time.Millisecond)
		defer t.Stop()
		for {
			metrics.Read(s)
			m.mu.Lock()
			m.heap = max(m.heap, s[0].Value.Uint64())
			m.mu.Unlock()
			select {
			case <-m.stop:
				return
			case <-t.C:
			}
		}
	}()
	return m
}

// finish stops sampling and returns the peaks, in bytes.
func (m *peakMeter) finish() (rss, heap int64) {
	close(m.stop)
	m.done.Wait()
	return procStatus("VmHWM"), int64(m.heap)
}

// procStatus returns a field of /proc/self/status in bytes, 0 if unknown.
func procStatus(field string) int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Text()
		if v, ok := bytes.CutPrefix([]byte(line), []byte(field+":")); ok {
			f := bytes.Fields(v)
			if len(f) == 0 {
				return 0
			}
			n, _ := strconv.ParseInt(string(f[0]), 10, 64)
			return n * 1024 // kB
		}
	}
	return 0
}
