package dispatch_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/memory"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/selfheal/heal"
	"github.com/selfheal/heal/dispatch"
	"github.com/selfheal/heal/healtest"
	"github.com/selfheal/heal/internal/awstest"
	"github.com/selfheal/heal/sink"
)

// The worker processes of the scale-out test are this test binary,
// started again with these variables set.
const (
	envWorker  = "HEAL_SCALEOUT_WORKER" // the worker's number
	envBucket  = "HEAL_SCALEOUT_BUCKET"
	envPrefix  = "HEAL_SCALEOUT_PREFIX"
	envQueue   = "HEAL_SCALEOUT_QUEUE"
	envLatency = "HEAL_SCALEOUT_LATENCY"
)

func TestMain(m *testing.M) {
	if os.Getenv(envWorker) != "" {
		os.Exit(workerMain())
	}
	os.Exit(m.Run())
}

// workerMain is a worker process: the lake on the S3 server, the synthetic
// source, an engine to run jobs and a worker on the queue, until SIGTERM.
// It logs one JSON line per job event to stdout.
func workerMain() int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	log := slog.New(slog.NewJSONHandler(os.Stdout, nil))
	latency, _ := time.ParseDuration(os.Getenv(envLatency))
	s3c := awstest.S3Client(awstest.Config(os.Getenv(awstest.EnvS3AccessKey), os.Getenv(awstest.EnvS3SecretKey)), os.Getenv(awstest.EnvS3Endpoint))
	lake := sink.NewLake(sink.NewS3Store(s3c, os.Getenv(envBucket), os.Getenv(envPrefix), nil), nil)
	e, err := heal.New(healtest.QuotesDataset(), &slowSource{latency: latency}, lake, nil)
	if err != nil {
		log.Error("engine", "err", err)
		return 1
	}
	w := dispatch.NewWorker(sqsClient(), os.Getenv(envQueue), e, &dispatch.WorkerOptions{
		VisibilityTimeout: 3 * time.Second, WaitTime: time.Second, Logger: log,
	})
	log.Info("worker ready")
	if err := w.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
		log.Error("worker", "err", err)
		return 1
	}
	return 0
}

func sqsClient() *sqs.Client {
	return sqs.NewFromConfig(awstest.Config("heal-test", "heal-test-not-a-secret"), func(o *sqs.Options) {
		o.BaseEndpoint = aws.String(os.Getenv(awstest.EnvSQSEndpoint))
	})
}

// slowSource has a price for every key and minute, and answers after a
// fixed latency, as a remote API would: what makes more workers faster.
type slowSource struct{ latency time.Duration }

func price(key string, t time.Time) float64 {
	h := fnv.New32a()
	h.Write([]byte(key))
	return float64(h.Sum32()%500) + float64(t.Unix()/60%1000)/100
}

func (s *slowSource) Limits() heal.Limits { return heal.Limits{} }

func (s *slowSource) Fetch(ctx context.Context, req heal.Request) (arrow.Record, error) {
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(s.latency):
	}
	var rows []healtest.Row
	for _, k := range req.Keys {
		for t := req.Window.Start; t.Before(req.Window.End); t = t.Add(time.Minute) {
			rows = append(rows, healtest.Row{Key: k, Time: t, Price: price(k, t)})
		}
	}
	return healtest.Records(memory.DefaultAllocator, healtest.QuotesDataset(), rows...), nil
}

// event is one line a worker logged.
type event struct {
	Worker  int
	Msg     string `json:"msg"`
	Job     string `json:"job"`
	Receive int    `json:"receive"`
}

// fleet is a set of worker processes and what they logged.
type fleet struct {
	t       testing.TB
	procs   []*exec.Cmd
	readers sync.WaitGroup
	notify  chan struct{}

	mu     sync.Mutex
	events []event
}

// startFleet starts n worker processes on the lake at bucket/prefix and
// the queue, worker i with a source answering after latency(i), and waits
// until each is ready.
func startFleet(t testing.TB, n int, bucket, prefix, queue string, latency func(i int) time.Duration) *fleet {
	t.Helper()
	f := &fleet{t: t, notify: make(chan struct{}, 1)}
	for i := range n {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), envWorker+"="+strconv.Itoa(i), envBucket+"="+bucket, envPrefix+"="+prefix,
			envQueue+"="+queue, envLatency+"="+latency(i).String())
		cmd.Stderr = os.Stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatalf("start worker %d: %v", i, err)
		}
		f.procs = append(f.procs, cmd)
		f.readers.Add(1)
		go func() {
			defer f.readers.Done()
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				var ev event
				if json.Unmarshal(sc.Bytes(), &ev) != nil {
					continue
				}
				ev.Worker = i
				f.mu.Lock()
				f.events = append(f.events, ev)
				f.mu.Unlock()
				select {
				case f.notify <- struct{}{}:
				default:
				}
			}
		}()
	}
	t.Cleanup(f.stop)
	f.wait(30*time.Second, "every worker ready", func(evs []event) bool { return count(evs, "worker ready", -1) == n })
	return f
}

func count(evs []event, msg string, worker int) int {
	n := 0
	for _, e := range evs {
		if e.Msg == msg && (worker < 0 || e.Worker == worker) {
			n++
		}
	}
	return n
}

// wait blocks until cond holds over the events logged so far, failing the
// test after timeout.
func (f *fleet) wait(timeout time.Duration, what string, cond func([]event) bool) {
	f.t.Helper()
	deadline := time.After(timeout)
	for {
		f.mu.Lock()
		ok := cond(f.events)
		f.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-f.notify:
		case <-time.After(100 * time.Millisecond):
		case <-deadline:
			f.t.Fatalf("waited %s for %s", timeout, what)
		}
	}
}

func (f *fleet) snapshot() []event {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]event(nil), f.events...)
}

// stop asks every worker still running to stop, and waits for them.
func (f *fleet) stop() {
	for _, p := range f.procs {
		if p.ProcessState == nil {
			_ = p.Process.Signal(syscall.SIGTERM)
		}
	}
	for _, p := range f.procs {
		if p.ProcessState == nil {
			_ = p.Wait()
		}
	}
	f.readers.Wait()
}

// dayWindow is the simulated day: one trading session of 390 minutes.
var dayWindow = heal.Window{Start: day, End: day.Add(390 * time.Minute)}

func symbols(n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("S%03d", i)
	}
	return keys
}

// seed writes what a live path with glitches would have stored: every
// key misses every fifth minute and one half-hour stretch.
func seed(t testing.TB, lake heal.Lake, keys []string) (missing int) {
	t.Helper()
	ds := healtest.QuotesDataset()
	var rows []healtest.Row
	for i, k := range keys {
		out := 100 + i%200
		for m := range 390 {
			if (m+i)%5 == 0 || (m >= out && m < out+30) {
				missing++
				continue
			}
			at := day.Add(time.Duration(m) * time.Minute)
			rows = append(rows, healtest.Row{Key: k, Time: at, Price: price(k, at)})
		}
	}
	rec := healtest.Records(memory.DefaultAllocator, ds, rows...)
	defer rec.Release()
	if err := lake.Write(context.Background(), ds, rec); err != nil {
		t.Fatalf("seed the lake: %v", err)
	}
	return missing
}

// recording dispatches to q and remembers the IDs of the jobs it sent.
type recording struct {
	q   *dispatch.Queue
	mu  sync.Mutex
	ids []string
}

func (r *recording) Dispatch(ctx context.Context, jobs []heal.Job) error {
	r.mu.Lock()
	for _, j := range jobs {
		r.ids = append(r.ids, j.ID())
	}
	r.mu.Unlock()
	return r.q.Dispatch(ctx, jobs)
}

// TestScaleOut is issue 8's proof: an engine (this process) audits a lake
// of 200 symbols x one simulated day on the S3 server and dispatches the
// repairs through SQS to three worker processes; one worker is killed with
// SIGKILL in the middle of a job. The lake must end complete, with the
// right values and no duplicates, every job must have run to completion at
// least once, and the killed worker's job must have been redelivered and
// finished by another worker.
func TestScaleOut(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three worker processes")
	}
	ctx := context.Background()
	s3c, bucket := awstest.ExternalS3(t)
	c := awstest.SQS(t)
	queue := newQueue(t, c, "heal-scaleout")
	lake := sink.NewLake(sink.NewS3Store(s3c, bucket, "lake", nil), nil)
	keys := symbols(200)
	missing := seed(t, lake, keys)

	// Worker 0, the one to be killed, has a slow source, so that it is
	// surely in the middle of a job when the kill lands.
	f := startFleet(t, 3, bucket, "lake", queue, func(i int) time.Duration {
		if i == 0 {
			return time.Second
		}
		return 150 * time.Millisecond
	})
	rec := &recording{q: dispatch.NewQueue(c, queue)}
	ds := healtest.QuotesDataset()
	e, err := heal.New(ds, &slowSource{}, lake, &heal.Options{Keys: keys, Dispatcher: rec})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	rep, err := e.Heal(ctx, dayWindow)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Missing != missing || rep.Dispatched != len(keys) || rep.Calls != 0 {
		t.Fatalf("engine cycle: %d missing, %d jobs dispatched, %d calls; want %d, one per key, none", rep.Missing, rep.Dispatched, rep.Calls, missing)
	}

	// Kill worker 0 in the middle of its second job: it has logged the
	// start and is waiting on the source.
	f.wait(60*time.Second, "worker 0's second job", func(evs []event) bool { return count(evs, "job start", 0) >= 2 })
	if err := f.procs[0].Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = f.procs[0].Wait()
	var killed event
	for _, ev := range f.snapshot() {
		if ev.Worker == 0 && ev.Msg == "job start" {
			killed = ev
		}
	}
	for _, ev := range f.snapshot() {
		if ev.Worker == 0 && ev.Msg == "job done" && ev.Job == killed.Job {
			t.Fatalf("worker 0 finished job %s before it was killed; the test killed no job mid-way", killed.Job)
		}
	}
	t.Logf("killed worker 0 during job %s", killed.Job)

	done := func(evs []event) map[string]bool {
		d := map[string]bool{}
		for _, ev := range evs {
			if ev.Msg == "job done" {
				d[ev.Job] = true
			}
		}
		return d
	}
	f.wait(120*time.Second, "every job done", func(evs []event) bool { return len(done(evs)) >= len(rec.ids) })
	elapsed := time.Since(start)
	f.stop()
	evs := f.snapshot()
	d := done(evs)
	for _, id := range rec.ids {
		if !d[id] {
			t.Errorf("job %s never ran to completion", id)
		}
	}
	redelivered := false
	for _, ev := range evs {
		if ev.Msg == "job done" && ev.Job == killed.Job && ev.Worker != 0 && ev.Receive >= 2 {
			redelivered = true
		}
	}
	if !redelivered {
		t.Errorf("the killed worker's job %s was not redelivered and finished by another worker", killed.Job)
	}
	t.Logf("%d jobs in %s with 3 workers (one killed): %.1f jobs/s; %d starts, %d completions",
		len(rec.ids), elapsed.Round(time.Millisecond), float64(len(rec.ids))/elapsed.Seconds(), count(evs, "job start", -1), count(evs, "job done", -1))

	// No two runs wrote the same slot: no duplicates before any compaction.
	check := func(when string, files bool) {
		t.Helper()
		parts := 0
		if err := lake.Inventory(ctx, ds, heal.Query{Window: dayWindow}, func(p heal.PartitionInfo) error {
			parts++
			if p.Present.Count() != 390 || p.Duplicates() != 0 || (files && p.Files != 1) {
				t.Errorf("%s: %s holds %d of 390 slots, %d duplicates, %d files", when, p.Partition.Key, p.Present.Count(), p.Duplicates(), p.Files)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if parts != len(keys) {
			t.Errorf("%s: %d partitions; want %d", when, parts, len(keys))
		}
	}
	check("after the workers", false)

	// A last embedded cycle finds nothing to do but compact.
	final, err := heal.New(ds, &slowSource{}, lake, &heal.Options{Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	rep, err = final.Heal(ctx, dayWindow)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Missing != 0 || rep.Calls != 0 || rep.Duplicates != 0 {
		t.Errorf("final cycle: %+v; want nothing missing, no calls, no duplicates", rep)
	}
	check("after the final cycle", true)
	rows, _, err := healtest.ScanRows(ctx, lake, ds, heal.Query{Window: dayWindow})
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != len(keys)*390 {
		t.Errorf("scan: %d rows; want %d", len(rows), len(keys)*390)
	}
	for _, r := range rows {
		if r.Price != price(r.Key, r.Time) {
			t.Errorf("row %s; want price %g", r, price(r.Key, r.Time))
			break
		}
	}
	if v, fl := depth(t, c, queue); v != 0 || fl != 0 {
		t.Errorf("queue holds %d visible and %d in-flight messages; want none", v, fl)
	}
}
