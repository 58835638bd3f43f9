package report_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"image/color"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// chromiumFlags are the launch flags that work on a root CI machine
// without a display, a D-Bus or the internet.
var chromiumFlags = []string{
	"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
	"--disable-background-networking", "--disable-component-update", "--disable-sync",
	"--hide-scrollbars", "--mute-audio", "--remote-debugging-pipe",
}

// findChromium returns Debian's chromium, or skips the test when it is
// missing, unless CI is set: there it fails, so CI cannot go green by
// skipping the only check that the page really renders.
func findChromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("chromium is not installed: run .ci/chromium.sh (apt-get install -y chromium)")
	}
	t.Skip("chromium is not installed (.ci/chromium.sh installs it); set CI to make this a failure")
	return ""
}

// page is what loading one page in Chromium gave.
type page struct {
	PNG    []byte
	Errors []string // console errors, uncaught exceptions and error log entries (failed loads)
}

// render loads the file in headless Chromium through the DevTools protocol
// over --remote-debugging-pipe, collects every console error, uncaught
// exception and error-level log entry (a resource that failed to load),
// and screenshots the whole page at the given width.
func render(ctx context.Context, t *testing.T, bin, file string, width int) (*page, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	toChrome, ourEnd, err := os.Pipe() // chromium reads fd 3
	if err != nil {
		return nil, err
	}
	fromChrome, chromeEnd, err := os.Pipe() // chromium writes fd 4
	if err != nil {
		return nil, err
	}
	defer ourEnd.Close()
	defer fromChrome.Close()
	cmd := exec.CommandContext(ctx, bin, append(chromiumFlags, "--user-data-dir="+t.TempDir())...)
	cmd.ExtraFiles = []*os.File{toChrome, chromeEnd}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	toChrome.Close()
	chromeEnd.Close()
	defer func() {
		if cmd.Process != nil {
			cmd.Process.Kill()
		}
		cmd.Wait()
	}()
	if dl, ok := ctx.Deadline(); ok {
		fromChrome.SetReadDeadline(dl)
	}
	c := &cdp{w: ourEnd, r: bufio.NewReader(fromChrome)}
	res, err := c.call("", "Target.createTarget", map[string]any{"url": "about:blank"})
	if err != nil {
		return nil, fmt.Errorf("%w; chromium said:\n%s", err, tail(stderr.String()))
	}
	var target struct{ TargetID string }
	json.Unmarshal(res, &target)
	res, err = c.call("", "Target.attachToTarget", map[string]any{"targetId": target.TargetID, "flatten": true})
	if err != nil {
		return nil, err
	}
	var sess struct{ SessionID string }
	json.Unmarshal(res, &sess)
	s := sess.SessionID
	for _, m := range []string{"Page.enable", "Runtime.enable", "Log.enable"} {
		if _, err := c.call(s, m, map[string]any{}); err != nil {
			return nil, err
		}
	}
	metrics := map[string]any{"width": width, "height": 1000, "deviceScaleFactor": 1, "mobile": false}
	if _, err := c.call(s, "Emulation.setDeviceMetricsOverride", metrics); err != nil {
		return nil, err
	}
	url := "file://" + file
	if _, err := c.call(s, "Page.navigate", map[string]any{"url": url}); err != nil {
		return nil, err
	}
	for !c.loaded {
		if _, err := c.next(); err != nil {
			return nil, fmt.Errorf("waiting for the load event: %w", err)
		}
	}
	res, err = c.call(s, "Page.getLayoutMetrics", map[string]any{})
	if err != nil {
		return nil, err
	}
	var lm struct {
		CSSContentSize struct{ Height float64 } `json:"cssContentSize"`
	}
	json.Unmarshal(res, &lm)
	metrics["height"] = min(max(int(lm.CSSContentSize.Height), 200), 8000)
	if _, err := c.call(s, "Emulation.setDeviceMetricsOverride", metrics); err != nil {
		return nil, err
	}
	res, err = c.call(s, "Page.captureScreenshot", map[string]any{"format": "png"})
	if err != nil {
		return nil, err
	}
	var shot struct{ Data string }
	json.Unmarshal(res, &shot)
	p := &page{Errors: c.errs}
	if p.PNG, err = base64.StdEncoding.DecodeString(shot.Data); err != nil {
		return nil, err
	}
	c.call("", "Browser.close", map[string]any{})
	return p, nil
}

func tail(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-10):], "\n")
}

// cdp is a minimal DevTools protocol client: NUL-terminated JSON messages,
// one command at a time, events handled as they pass.
type cdp struct {
	w      *os.File
	r      *bufio.Reader
	id     int
	errs   []string
	loaded bool
}

type cdpMessage struct {
	ID     int             `json:"id"`
	Method string          `json:"method"`
	Params json.RawMessage `json:"params"`
	Result json.RawMessage `json:"result"`
	Error  *struct {
		Message string `json:"message"`
	} `json:"error"`
}

func (c *cdp) call(session, method string, params any) (json.RawMessage, error) {
	c.id++
	msg := map[string]any{"id": c.id, "method": method, "params": params}
	if session != "" {
		msg["sessionId"] = session
	}
	b, err := json.Marshal(msg)
	if err != nil {
		return nil, err
	}
	if _, err := c.w.Write(append(b, 0)); err != nil {
		return nil, fmt.Errorf("%s: %w", method, err)
	}
	for {
		m, err := c.next()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", method, err)
		}
		if m.ID == c.id {
			if m.Error != nil {
				return nil, fmt.Errorf("%s: %s", method, m.Error.Message)
			}
			return m.Result, nil
		}
	}
}

func (c *cdp) next() (*cdpMessage, error) {
	b, err := c.r.ReadBytes(0)
	if err != nil {
		return nil, err
	}
	var m cdpMessage
	if err := json.Unmarshal(b[:len(b)-1], &m); err != nil {
		return nil, err
	}
	switch m.Method {
	case "Page.loadEventFired":
		c.loaded = true
	case "Runtime.consoleAPICalled":
		var p struct {
			Type string
			Args []struct {
				Value       any
				Description string
			}
		}
		json.Unmarshal(m.Params, &p)
		if p.Type == "error" || p.Type == "assert" {
			var parts []string
			for _, a := range p.Args {
				parts = append(parts, fmt.Sprint(a.Value, a.Description))
			}
			c.errs = append(c.errs, "console."+p.Type+": "+strings.Join(parts, " "))
		}
	case "Runtime.exceptionThrown":
		var p struct {
			ExceptionDetails struct {
				Text      string
				Exception struct{ Description string }
			}
		}
		json.Unmarshal(m.Params, &p)
		c.errs = append(c.errs, "exception: "+p.ExceptionDetails.Text+" "+p.ExceptionDetails.Exception.Description)
	case "Log.entryAdded":
		var p struct {
			Entry struct{ Level, Text, URL string }
		}
		json.Unmarshal(m.Params, &p)
		if p.Entry.Level == "error" {
			c.errs = append(c.errs, "log: "+p.Entry.Text+" "+p.Entry.URL)
		}
	}
	return &m, nil
}

// pixels summarizes a screenshot.
type pixels struct {
	W, H     int
	Colours  int
	NonWhite float64 // share of pixels that are not (near) white
	Count    map[color.RGBA]int
}

func inspect(b []byte) (*pixels, error) {
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	bd := img.Bounds()
	p := &pixels{W: bd.Dx(), H: bd.Dy(), Count: map[color.RGBA]int{}}
	nonWhite := 0
	for y := bd.Min.Y; y < bd.Max.Y; y++ {
		for x := bd.Min.X; x < bd.Max.X; x++ {
			r, g, b, _ := img.At(x, y).RGBA()
			c := color.RGBA{uint8(r >> 8), uint8(g >> 8), uint8(b >> 8), 255}
			p.Count[c]++
			if c.R < 240 || c.G < 240 || c.B < 240 {
				nonWhite++
			}
		}
	}
	p.Colours = len(p.Count)
	p.NonWhite = float64(nonWhite) / float64(p.W*p.H)
	return p, nil
}

// TestRenderChromium renders the report of a real engine's lake in
// headless Chromium: the page must log no error, and its screenshot must
// show the heatmaps' colours, not a blank page.
func TestRenderChromium(t *testing.T) {
	bin := findChromium(t)
	ctx := context.Background()
	dir := t.TempDir()

	// First, the check must be able to fail: a page with a console error,
	// an uncaught exception and an image that does not load.
	bad := filepath.Join(dir, "bad.html")
	os.WriteFile(bad, []byte(`<!DOCTYPE html><html><head><link rel="icon" href="data:,"></head><body><p>bad</p>
<img src="missing.png"><script>console.error("boom"); console.log("fine"); null.x;</script></body></html>`), 0o644)
	pb, err := render(ctx, t, bin, bad, 400)
	if err != nil {
		t.Fatal(err)
	}
	if len(pb.Errors) < 2 || !strings.Contains(strings.Join(pb.Errors, "\n"), "boom") {
		t.Fatalf("the checker missed the bad page's errors: %q", pb.Errors)
	}

	var buf bytes.Buffer
	if err := build(t).WriteHTML(&buf); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "report.html")
	if err := os.WriteFile(file, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := render(ctx, t, bin, file, 1400)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Errors) > 0 {
		t.Errorf("the report logged errors:\n%s", strings.Join(p.Errors, "\n"))
	}
	if out := os.Getenv("HEAL_REPORT_PNG"); out != "" {
		if err := os.WriteFile(out, p.PNG, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	px, err := inspect(p.PNG)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot %dx%d, %d colours, %.1f%% not white", px.W, px.H, px.Colours, 100*px.NonWhite)
	if px.W != 1400 || px.H < 1000 {
		t.Errorf("screenshot is %dx%d, want 1400 wide and the whole page", px.W, px.H)
	}
	// A blank page is one colour; this one is mostly white panels on a
	// near-white background, with some 5–10% of text, tables and charts.
	if px.Colours < 50 || px.NonWhite < 0.03 {
		t.Errorf("the screenshot looks blank: %d colours, %.1f%% not white", px.Colours, 100*px.NonWhite)
	}
	// The heatmaps are drawn: full green cells (complete hours) and the
	// orange-red of C's unrepairable hour in both maps, the background grey.
	green := color.RGBA{0x1a, 0x98, 0x50, 255}
	if n := px.Count[green]; n < 20*cellArea {
		t.Errorf("%d pixels of the heatmap's green, want at least 20 cells' worth", n)
	}
	if px.Count[color.RGBA{0xf6, 0xf7, 0xf9, 255}] == 0 {
		t.Error("no pixel of the page's background colour")
	}
}

const cellArea = 14 * 14 // a 16px cell with its rounded corners, roughly
