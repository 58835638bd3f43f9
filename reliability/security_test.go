package reliability

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/memory"

	"github.com/selfheal/heal"
	"github.com/selfheal/heal/alarm"
	"github.com/selfheal/heal/audit"
	"github.com/selfheal/heal/examples/finnhub/finnhub"
	"github.com/selfheal/heal/examples/finnhub/finnhubtest"
	"github.com/selfheal/heal/healtest"
	"github.com/selfheal/heal/sink"
)

// TestTokenNeverLeaks runs the Finnhub pipeline (the example's components:
// its Client and Source, the hourly bars, the US calendar, the engine with
// a logging alarmer, a DirStore lake), with every log at Debug level, while
// a hostile proxy echoes the API token wherever a server could: in error
// bodies the client quotes, in HTML and in malformed JSON it excerpts, in a
// redirect URL, and in a 401 that ends in an alarm. Then it searches every
// log line, every error and alarm, and every byte of every file in the
// lake for the token: zero hits.
func TestTokenNeverLeaks(t *testing.T) {
	var b [8]byte
	rand.Read(b[:])
	token := "sk-fake-" + hex.EncodeToString(b[:])

	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	clock := newStepClock(fhOpen.Add(-time.Minute), 1e12)
	fake := finnhubtest.NewServer(&finnhubtest.Options{Clock: clock, Seed: 5, Symbols: []string{"AAPL", "MSFT"}, Tokens: []string{token}})
	defer fake.Close()
	echoes := map[string]int{}
	var n atomic.Int64
	hostile := http.NewServeMux()
	proxy := newFaultProxy(t, fake, clock, 3)
	hostile.HandleFunc("/leak", func(w http.ResponseWriter, r *http.Request) {
		// the end of a redirect whose URL carries the token: reset
		if conn, _, err := w.(http.Hijacker).Hijack(); err == nil {
			conn.Close()
		}
	})
	hostile.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		sym := r.URL.Query().Get("symbol")
		switch i := n.Add(1); {
		case sym == "MSFT" && strings.HasSuffix(r.URL.Path, "/stock/candle"):
			echoes["401-json"]++
			w.WriteHeader(http.StatusUnauthorized) // permanent: MSFT's gaps alarm
			fmt.Fprintf(w, `{"error":"Invalid API key %s"}`, r.Header.Get("X-Finnhub-Token"))
		case i%7 == 0:
			echoes["502-html"]++
			w.WriteHeader(http.StatusBadGateway)
			fmt.Fprintf(w, "<html><body>upstream said: token=%s</body></html>", r.Header.Get("X-Finnhub-Token"))
		case i%7 == 3:
			echoes["200-malformed"]++
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"c":%q`, r.Header.Get("X-Finnhub-Token"))
		case i%7 == 5:
			echoes["redirect-url"]++
			http.Redirect(w, r, "/leak?token="+r.Header.Get("X-Finnhub-Token"), http.StatusTemporaryRedirect)
		case i%7 == 6:
			echoes["429-json"]++
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
			fmt.Fprintf(w, `{"error":"limit reached for %s"}`, r.Header.Get("X-Finnhub-Token"))
		default:
			proxy.ServeHTTP(w, r)
		}
	})
	srv := httptest.NewServer(hostile)
	defer srv.Close()

	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	client, err := finnhub.NewClient(&finnhub.Options{BaseURL: srv.URL + "/api/v1", Token: token, Clock: clock, Logger: logger, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	lake, err := sink.OpenDir(dir, &sink.Options{Allocator: mem, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	rule := audit.USEquities()
	al := &healtest.Alarms{}
	keys := []string{"AAPL", "MSFT"}
	eng, err := heal.New(finnhub.Quotes(), finnhub.NewSource(client, &finnhub.SourceOptions{Allocator: mem}), lake, &heal.Options{
		Keys: keys, Rule: rule, Transformers: []heal.Transformer{finnhub.NewBars(rule, mem)},
		Clock: clock, Allocator: mem, Logger: logger, Alarmer: heal.MultiAlarmer(heal.LogAlarmer(logger), al),
		Concurrency: 1, Settle: 2 * time.Minute, Retry: heal.RetryPolicy{MaxAttempts: 3},
	})
	if err != nil {
		t.Fatal(err)
	}
	var errs []error
	for m := 0; m < 45; m++ {
		slot := fhOpen.Add(time.Duration(m) * time.Minute)
		if clock.Now().Before(slot.Add(5 * time.Second)) {
			clock.Set(slot.Add(5 * time.Second))
		}
		if _, err := eng.Acquire(context.Background(), slot); err != nil {
			errs = append(errs, err)
		}
		if (m+1)%15 == 0 {
			rep, err := eng.Heal(context.Background(), heal.Window{Start: fhOpen, End: slot})
			if err != nil {
				errs = append(errs, err)
			}
			fmt.Fprintf(&logs, "%+v\n", rep)
		}
	}
	// What a user sees: errors, alarms (as sent and as the ledger keeps
	// them), statistics, status.
	var seen bytes.Buffer
	for _, err := range errs {
		fmt.Fprintln(&seen, err)
	}
	for _, a := range al.List() {
		fmt.Fprintf(&seen, "%+v\n", a)
	}
	kept, err := eng.Alarms(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(&seen, "%+v\n%+v\n", kept, eng.Stats())
	if len(al.List()) == 0 {
		t.Error("no alarm was raised: the 401 path was not exercised")
	}
	for kind, k := range echoes {
		if k == 0 {
			t.Errorf("the proxy never echoed the token in a %s", kind)
		}
	}
	// The echoes reached the error paths, where the client scrubbed them:
	// the test would see a leak.
	scrubbed := bytes.Count(logs.Bytes(), []byte("[token]")) + bytes.Count(seen.Bytes(), []byte("[token]"))
	if scrubbed == 0 {
		t.Error("no scrubbed token in the logs or errors: the echoes never reached an error message")
	}
	hits, files := 0, 0
	for name, text := range map[string][]byte{"logs": logs.Bytes(), "errors, alarms, stats": seen.Bytes()} {
		if c := bytes.Count(text, []byte(token)); c > 0 {
			hits += c
			t.Errorf("the token appears %d times in the %s:\n%s", c, name, lineWith(text, token))
		}
	}
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		files++
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if c := bytes.Count(b, []byte(token)); c > 0 {
			hits += c
			t.Errorf("the token is in %s", p)
		}
		return nil
	})
	if c := fake.Counters(); c.TokenInQuery != 0 {
		t.Errorf("%d requests carried the token in the URL", c.TokenInQuery)
	}
	t.Logf("reliability: token-leak: echoes=%v scrubbed-in-messages=%d log-bytes=%d errors=%d alarms=%d lake-files=%d hits=%d",
		echoes, scrubbed, logs.Len(), len(errs), len(al.List()), files, hits)
}

func lineWith(text []byte, s string) string {
	for _, l := range strings.Split(string(text), "\n") {
		if strings.Contains(l, s) {
			return l
		}
	}
	return ""
}

// TestExampleNeverPrintsToken builds the example command and runs its
// simulation, its own wiring from flags to report, with -v (every log to
// stderr), a free plan (candles answer 403: repairs alarm) and injected 5xx,
// then searches its output and its lake for the fake token it uses.
func TestExampleNeverPrintsToken(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the example")
	}
	gobin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(gobin); err != nil {
		t.Skipf("no go command to build the example: %v", err)
	}
	exe := filepath.Join(t.TempDir(), "finnhub")
	if out, err := exec.Command(gobin, "build", "-o", exe, "github.com/selfheal/heal/examples/finnhub").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	lakeDir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, exe, "-day", "2025-03-04", "-until", "11:00", "-speed", "20000", "-symbols", "AAPL,MSFT,TSLA",
		"-free-plan", "-fault-rate", "0.2", "-lake", lakeDir, "-v")
	cmd.Env = append(os.Environ(), "FINNHUB_TOKEN=") // simulate, never the real API
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the example failed: %v\n%s", err, out)
	}
	hits := 0
	for _, tok := range []string{finnhubtest.Token, finnhubtest.FreeToken} {
		if c := bytes.Count(out, []byte(tok)); c > 0 {
			hits += c
			t.Errorf("the example printed the token %q: %s", tok, lineWith(out, tok))
		}
	}
	files := 0
	filepath.WalkDir(lakeDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		files++
		b, _ := os.ReadFile(p)
		for _, tok := range []string{finnhubtest.Token, finnhubtest.FreeToken} {
			if bytes.Contains(b, []byte(tok)) {
				hits++
				t.Errorf("the token is in %s", p)
			}
		}
		return nil
	})
	if !bytes.Contains(out, []byte("403")) {
		t.Errorf("the run shows no 403 alarm, so the error path was not exercised:\n%s", out)
	}
	t.Logf("reliability: example-token: output-bytes=%d lake-files=%d hits=%d", len(out), files, hits)
}

// TestHostilePartitionValues writes keys taken from data ("../../etc",
// "a/b", empty, NUL, very long, ...) into a DirStore lake inside a watched
// parent directory, through Lake.Write, through an engine's Options.Keys,
// and through rows a Source returns, and asks the store itself for hostile
// names. Each is refused or escaped into one directory under the dataset;
// nothing is ever created outside the lake's root; what is stored reads
// back under the same key.
func TestHostilePartitionValues(t *testing.T) {
	parent := t.TempDir()
	root := filepath.Join(parent, "lake")
	sentinel := filepath.Join(parent, "outside")
	if err := os.Mkdir(sentinel, 0o755); err != nil {
		t.Fatal(err)
	}
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	store, err := sink.NewDirStore(root)
	if err != nil {
		t.Fatal(err)
	}
	lake := sink.NewLake(store, &sink.Options{Allocator: mem})
	ctx := context.Background()
	ds := ticks()
	hostile := []string{
		"../../etc", "../outside/x", "a/b", "/etc/passwd", "..", ".", "", "\x00", "a\x00b", "a\\..\\b", `C:\Windows`,
		"%2e%2e", "%2F", "symbol=X/date=2024-01-01", "_heal", "_quarantine", ".tmp-x", ".hidden", "a\nb", "\u202eevil",
		"\xff\xfe", "日本", strings.Repeat("x", 248), strings.Repeat("x", 249), strings.Repeat("x", 256), strings.Repeat("x", 4096),
		strings.Repeat("../", 80), strings.Repeat("é", 40),
	}
	tried, refused, stored := 0, 0, 0
	for i, k := range hostile {
		tried++
		b := array.NewRecordBuilder(mem, ds.Schema)
		b.Field(0).(*array.StringBuilder).Append(k)
		b.Field(1).(*array.TimestampBuilder).Append(arrow.Timestamp(origin.Add(time.Duration(i) * time.Minute).UnixMilli()))
		b.Field(2).(*array.Float64Builder).Append(float64(i))
		rec := b.NewRecord()
		b.Release()
		err := lake.Write(ctx, ds, rec)
		rec.Release()
		if err != nil {
			if !errors.As(err, new(*heal.InputError)) {
				t.Errorf("key %q: refused with %v, want an InputError", k, err)
			}
			refused++
			continue
		}
		stored++
		rd, err := lake.Scan(ctx, ds, heal.Query{Keys: []string{k}})
		if err != nil {
			t.Fatal(err)
		}
		rows := 0
		for rd.Next() {
			r := rd.Record()
			for j := 0; j < int(r.NumRows()); j++ {
				rows++
				if got := r.Column(0).(*array.String).Value(j); got != k {
					t.Errorf("key %q read back as %q", k, got)
				}
			}
		}
		if rd.Err() != nil || rows != 1 {
			t.Errorf("key %q: %d rows read back, %v", k, rows, rd.Err())
		}
		rd.Release()
	}

	// The engine: hostile keys in its options, and a source answering
	// rows of keys it was not asked for.
	for _, k := range hostile {
		tried++
		if _, err := heal.New(ds, newSynth(mem), lake, &heal.Options{Keys: []string{k}}); err != nil {
			refused++
		}
	}
	clock := newStepClock(origin.Add(3*time.Hour), 1e12)
	src := &hostileSource{synth: newSynth(mem), extra: hostile}
	eng, err := heal.New(ds, src, lake, &heal.Options{Keys: []string{"A", "../../etc", "a/b"}, Clock: clock, Allocator: mem})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := eng.Acquire(ctx, origin.Add(3*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := eng.Heal(ctx, heal.Window{Start: origin.Add(2 * time.Hour), End: origin.Add(3 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	tried += len(hostile) * 2
	if err := scan(ctx, lake, ds, func(_ arrow.Record, _ int, k slotKey) {
		if !k.time().Before(origin.Add(2*time.Hour)) && k.key != "A" && k.key != "../../etc" && k.key != "a/b" {
			t.Errorf("the engine stored a row of %q, a key it was not asked for", k.key)
		}
	}); err != nil {
		t.Fatal(err)
	}

	// The store itself refuses names that leave the root.
	for _, name := range []string{"../x", "../../outside/x", "/tmp/x", "a/../../x", "a/./b", "a//b", "a\x00b", `a\..\..\x`, "", ".", "..", "_heal/../../x"} {
		tried++
		if err := store.Put(ctx, name, []byte("x"), true); err == nil {
			t.Errorf("DirStore.Put(%q) accepted", name)
		} else {
			refused++
		}
		if _, err := store.Open(ctx, name); err == nil {
			t.Errorf("DirStore.Open(%q) accepted", name)
		}
		if err := store.Delete(ctx, name); err == nil {
			t.Errorf("DirStore.Delete(%q) accepted", name)
		}
		if err := lake.PutMeta(ctx, name, []byte("x")); err == nil {
			t.Errorf("PutMeta(%q) accepted", name)
		}
	}

	// Nothing outside the root; everything inside where the layout says.
	filepath.WalkDir(parent, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(parent, p)
		if rel == "." || rel == "lake" || rel == "outside" {
			return nil
		}
		if !strings.HasPrefix(rel, "lake"+string(filepath.Separator)) {
			t.Errorf("%s was created outside the lake's root", p)
			return nil
		}
		in := strings.TrimPrefix(filepath.ToSlash(rel), "lake/")
		top := strings.SplitN(in, "/", 2)[0]
		if top != "ticks" && top != "_heal" {
			t.Errorf("%s: unexpected top-level entry %q", in, top)
		}
		if parts := strings.Split(in, "/"); top == "ticks" && len(parts) >= 2 && !strings.HasPrefix(parts[1], "symbol=") {
			t.Errorf("%s: a key escaped its symbol= directory", in)
		}
		if len(d.Name()) > 255 {
			t.Errorf("%s: a name of %d bytes", in, len(d.Name()))
		}
		return nil
	})
	t.Logf("reliability: hostile-partition-values: inputs-tried=%d refused=%d stored-escaped=%d files-outside-root=0", tried, refused, stored)
}

// hostileSource answers every request with its own rows and, besides,
// rows for hostile keys it was not asked about.
type hostileSource struct {
	*synth
	extra []string
}

func (h *hostileSource) Fetch(ctx context.Context, req heal.Request) (arrow.Record, error) {
	req.Keys = append(append([]string(nil), req.Keys...), h.extra...)
	var keys []string
	for _, k := range req.Keys {
		if heal.ValidKey(k) == nil {
			keys = append(keys, k) // the builder needs strings; the engine must drop the extras
		}
	}
	req.Keys = keys
	return h.synth.Fetch(ctx, req)
}

// TestHTTPBounds: every outbound HTTP call ends within its timeout, even
// against a server that never answers or trickles its body, and a huge
// body is read only up to the limit: the Finnhub client (with its own
// http.Client, and with a caller's that has no timeout) and the webhook
// alarmer.
func TestHTTPBounds(t *testing.T) {
	var written atomic.Int64
	handler := http.NewServeMux()
	block := make(chan struct{}) // closed when the test ends, before the server
	handler.HandleFunc("/silent/", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-block:
		case <-r.Context().Done():
		case <-time.After(time.Minute):
		}
	})
	handler.HandleFunc("/trickle/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		io.WriteString(w, `{"c":`)
		for {
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				return
			case <-block:
				return
			case <-time.After(50 * time.Millisecond):
				io.WriteString(w, " ")
			}
		}
	})
	handler.HandleFunc("/huge/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		chunk := bytes.Repeat([]byte(" "), 64<<10)
		for {
			n, err := w.Write(chunk)
			written.Add(int64(n))
			if err != nil || written.Load() > 1<<30 {
				return
			}
		}
	})
	srv := httptest.NewServer(handler)
	defer srv.Close()
	defer close(block)

	const timeout = 300 * time.Millisecond
	const maxBody = 1 << 20
	for _, hc := range []struct {
		name string
		c    *http.Client
	}{{"own-client", nil}, {"caller-client-without-timeout", &http.Client{}}} {
		for _, path := range []string{"silent", "trickle", "huge"} {
			t.Run(hc.name+"/"+path, func(t *testing.T) {
				written.Store(0)
				c, err := finnhub.NewClient(&finnhub.Options{BaseURL: srv.URL + "/" + path, Token: "tok-123456", HTTPClient: hc.c, Timeout: timeout, MaxBody: maxBody})
				if err != nil {
					t.Fatal(err)
				}
				start := time.Now()
				_, err = c.Quote(context.Background(), "AAPL")
				took := time.Since(start)
				if err == nil {
					t.Fatal("a quote from a broken server")
				}
				if took > timeout+2*time.Second {
					t.Errorf("the call took %s; timeout %s", took, timeout)
				}
				if heal.IsPermanent(err) {
					t.Errorf("%v is permanent; a timeout or oversized answer is worth retrying", err)
				}
				if path == "huge" {
					if !errors.Is(err, finnhub.ErrMalformed) {
						t.Errorf("huge body: %v, want ErrMalformed", err)
					}
					// The client stops reading after MaxBody: what the server
					// managed to write is MaxBody plus what the kernel's
					// socket buffers took.
					time.Sleep(50 * time.Millisecond)
					if w := written.Load(); w > maxBody+16<<20 {
						t.Errorf("the server wrote %d bytes before the client hung up; the limit is %d", w, maxBody)
					}
				}
				t.Logf("%s: %s after %s", path, err, took.Round(time.Millisecond))
			})
		}
	}
	t.Run("webhook-alarmer", func(t *testing.T) {
		for _, path := range []string{"silent", "huge"} {
			wh := alarm.Webhook(srv.URL+"/"+path+"/hook", &alarm.WebhookOptions{Timeout: timeout, Attempts: 2, Backoff: 10 * time.Millisecond})
			start := time.Now()
			err := wh.Alarm(context.Background(), heal.Alarm{Dataset: "ticks", Key: "A", Stage: heal.StageRepair})
			if took := time.Since(start); took > 2*timeout+2*time.Second {
				t.Errorf("%s: the webhook took %s for 2 attempts of %s", path, took, timeout)
			}
			if path == "silent" && err == nil {
				t.Error("a webhook that never answers succeeded")
			}
		}
	})
	t.Logf("reliability: http-bounds: finnhub silent/trickle/huge with its own and a caller's client, webhook silent/huge: all bounded by %s, bodies by %d bytes", timeout, maxBody)
}
