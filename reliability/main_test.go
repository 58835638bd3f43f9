package reliability

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/apache/arrow/go/v17/arrow/memory"

	"github.com/selfheal/heal"
	"github.com/selfheal/heal/sink"
)

// The crash and concurrency tests run engines in child processes: this
// test binary, re-executed with childEnv set. TestMain sends such a run to
// runChild instead of the tests.
const childEnv = "HEAL_RELIABILITY_CHILD"

var (
	flagKills = flag.Int("kills", 0, "crash test: kill points (0: $HEAL_KILLS, else 50)")
	flagSeed  = flag.Uint64("crashseed", 0, "crash test: seed of the kill points (0: $HEAL_CRASH_SEED, else 1)")
)

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		os.Exit(runChild())
	}
	os.Exit(m.Run())
}

// childKeys are the keys the child engines keep whole.
var childKeys = []string{"A", "B", "C"}

// childOptions are the engine options of a child, and of the engine that
// heals after it: every maintenance path (compaction, resynthesis, repair,
// the ledger) is exercised every few simulated minutes.
func childOptions(clock heal.Clock, mem memory.Allocator, lease time.Duration) *heal.Options {
	return &heal.Options{
		Keys:         childKeys,
		Transformers: []heal.Transformer{hourly{mem}},
		Clock:        clock,
		Allocator:    mem,
		Concurrency:  2,
		AuditEvery:   15 * time.Minute,
		Lookback:     2 * time.Hour,
		Settle:       2 * time.Minute,
		CompactEvery: 5,
		LeaseTTL:     lease,
		Retry:        heal.RetryPolicy{InitialInterval: time.Second, MaxAttempts: 3},
	}
}

// runChild is the body of a child process. It reads its orders from the
// environment, runs an engine on the lake until killed (or, with a stop
// time, until the clock reaches it, then heals once more and exits), and
// reports on stdout:
//
//	ready                      the engine is about to start
//	T <unix>                   the live slot landed
//	F <keys> <from> <to>       a historical request was made
//	B <id> <kind> <name>, E <id>   a store operation began, ended (probeStore)
//	done                       a stopping child finished
func runChild() int {
	out := &lineWriter{w: os.Stdout}
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 2
	}
	dir := os.Getenv("HEAL_CHILD_DIR")
	start, err := time.Parse(time.RFC3339Nano, os.Getenv("HEAL_CHILD_START"))
	if err != nil {
		return fail(err)
	}
	lease, err := time.ParseDuration(os.Getenv("HEAL_CHILD_LEASE"))
	if err != nil {
		return fail(err)
	}
	var stop time.Time
	if s := os.Getenv("HEAL_CHILD_STOP"); s != "" {
		if stop, err = time.Parse(time.RFC3339Nano, s); err != nil {
			return fail(err)
		}
	}
	store, err := sink.NewDirStore(dir)
	if err != nil {
		return fail(err)
	}
	mem := memory.DefaultAllocator
	lake := sink.NewLake(&probeStore{Store: store, out: out}, &sink.Options{Allocator: mem, Concurrency: 2})
	clock := newStepClock(start, 30000) // a simulated minute every 2ms of waiting
	src := newSynth(mem)
	src.onFetch = func(req heal.Request) {
		out.printf("F %s %d %d", strings.Join(req.Keys, ","), req.Window.Start.Unix(), req.Window.End.Unix())
	}
	opts := childOptions(clock, mem, lease)
	opts.Observer = heal.ObserverFunc(func(ev heal.Event) {
		if ev.Kind == heal.EventWrite && ev.Live && ev.Dataset == "ticks" {
			out.printf("T %d", ev.Window.Start.Unix())
		}
	})
	eng, err := heal.New(ticks(), src, lake, opts)
	if err != nil {
		return fail(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if !stop.IsZero() {
		go func() {
			for clock.Now().Before(stop) {
				time.Sleep(time.Millisecond)
			}
			cancel()
		}()
	}
	out.printf("ready")
	err = eng.Run(ctx)
	if stop.IsZero() || !errors.Is(err, context.Canceled) {
		return fail(fmt.Errorf("Run returned %v", err))
	}
	// A stopping child heals what it polled, waiting for the other engine's
	// lease if it must, as a cron job's last pass would.
	w := heal.Window{Start: start, End: stop}
	for i := 0; ; i++ {
		clock.Set(stop.Add(5 * time.Minute))
		rep, err := eng.Heal(context.Background(), w)
		if err != nil {
			return fail(err)
		}
		if rep.LeaseHeldBy == "" {
			break
		}
		if i == 2000 {
			return fail(errors.New("the lease never came free"))
		}
		time.Sleep(5 * time.Millisecond)
	}
	out.printf("done")
	return 0
}

// child is a running child process and what it has said.
type child struct {
	cmd    *exec.Cmd
	lines  chan string // closed at EOF
	stderr *lockedBuffer

	mu       sync.Mutex
	begun    map[int64]string // id → "kind name" of store operations in flight
	kinds    map[string]int   // store operations begun, by kind
	reached  time.Time        // latest live slot landed
	requests []heal.Request   // historical requests
}

type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// startChild starts a child engine on dir at simulated time start.
func startChild(dir string, start, stop time.Time, lease time.Duration) (*child, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=1", "HEAL_CHILD_DIR="+dir,
		"HEAL_CHILD_START="+start.Format(time.RFC3339Nano), "HEAL_CHILD_LEASE="+lease.String())
	if !stop.IsZero() {
		cmd.Env = append(cmd.Env, "HEAL_CHILD_STOP="+stop.Format(time.RFC3339Nano))
	}
	c := &child{cmd: cmd, lines: make(chan string, 1024), stderr: &lockedBuffer{},
		begun: map[int64]string{}, kinds: map[string]int{}}
	cmd.Stderr = c.stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go c.read(stdout)
	return c, nil
}

// read parses the child's reports and forwards every line.
func (c *child) read(r io.Reader) {
	defer close(c.lines)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		f := strings.Fields(line)
		c.mu.Lock()
		switch {
		case len(f) == 4 && f[0] == "B":
			id, _ := strconv.ParseInt(f[1], 10, 64)
			c.begun[id] = f[2] + " " + f[3]
			c.kinds[f[2]]++
		case len(f) == 3 && f[0] == "E":
			id, _ := strconv.ParseInt(f[1], 10, 64)
			delete(c.begun, id)
		case len(f) == 2 && f[0] == "T":
			s, _ := strconv.ParseInt(f[1], 10, 64)
			if t := time.Unix(s, 0).UTC(); t.After(c.reached) {
				c.reached = t
			}
		case len(f) == 4 && f[0] == "F":
			from, _ := strconv.ParseInt(f[2], 10, 64)
			to, _ := strconv.ParseInt(f[3], 10, 64)
			c.requests = append(c.requests, heal.Request{Keys: strings.Split(f[1], ","),
				Window: heal.NewWindow(time.Unix(from, 0), time.Unix(to, 0))})
		}
		c.mu.Unlock()
		c.lines <- line
	}
}

// kill sends SIGKILL, waits for the process, reads what it said before
// dying, and returns the store operations that were in flight when it died.
func (c *child) kill() ([]string, error) {
	c.cmd.Process.Signal(syscall.SIGKILL)
	for range c.lines { // drain to EOF: every line written before death
	}
	c.cmd.Wait()
	if err := c.childFailed(); err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, op := range c.begun {
		out = append(out, op)
	}
	return out, nil
}

// wait waits for a stopping child to exit.
func (c *child) wait(timeout time.Duration) error {
	done := make(chan error, 1)
	go func() {
		for range c.lines {
		}
		done <- c.cmd.Wait()
	}()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("child: %v; stderr:\n%s", err, c.stderr.String())
		}
		return c.childFailed()
	case <-time.After(timeout):
		c.cmd.Process.Signal(syscall.SIGKILL)
		<-done
		return fmt.Errorf("child did not finish in %s; stderr:\n%s", timeout, c.stderr.String())
	}
}

// childFailed reports a data race or panic the child printed before dying.
func (c *child) childFailed() error {
	s := c.stderr.String()
	if strings.Contains(s, "DATA RACE") || strings.Contains(s, "panic:") || strings.Contains(s, "child:") {
		return fmt.Errorf("child process failed:\n%s", s)
	}
	return nil
}

func (c *child) lastSlot() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reached
}

func (c *child) historical() []heal.Request {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]heal.Request(nil), c.requests...)
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}
