package web_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// ChromiumEnv names the variable with the path of the Chromium to test
// with; without it the test looks for Debian's chromium on the PATH.
const ChromiumEnv = "CLOUDIMAGES_CHROMIUM"

// ArtifactsEnv names the directory where browser tests keep screenshots;
// without it they go to the test's temp dir (and the path is logged).
const ArtifactsEnv = "CLOUDIMAGES_ARTIFACTS"

// browser is a headless Chromium driven by chromedp for one test. It
// records the page's console errors and uncaught exceptions; the test
// fails on any of them when it ends. It also records the page's requests.
type browser struct {
	t     *testing.T
	ctx   context.Context
	dir   string // screenshots
	start time.Time

	mu   sync.Mutex
	errs []string
	reqs map[network.RequestID]*request
}

// request is what the browser's network events told of one request. They
// come as it happens, unlike the page's Resource Timing entries, which
// list a fetch only once its body has ended (and stop at 250).
type request struct {
	url      string
	status   int64
	mimeType string
	chunks   int // pieces of the body received so far
	finished bool
}

func chromiumPath(t *testing.T) string {
	t.Helper()
	if p := os.Getenv(ChromiumEnv); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatalf("no Chromium found: run `make web-test-deps` (apt-get install chromium) or set %s", ChromiumEnv)
	return ""
}

// newBrowser starts Chromium with a fresh profile and a window of the given
// size, and stops it when the test ends.
func newBrowser(t *testing.T, width, height int) *browser {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(width, height),
	}
	b := &browser{t: t, dir: artifactsDir(t), start: time.Now(), reqs: map[network.RequestID]*request{}}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx, chromedp.WithErrorf(t.Logf), chromedp.WithListener(b.listen))
	b.ctx = ctx
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		cancelCtx()
		cancelAlloc()
		t.Fatalf("start Chromium: %v", err)
	}
	t.Cleanup(func() {
		cancelCtx()
		cancelAlloc()
		b.mu.Lock()
		defer b.mu.Unlock()
		for _, e := range b.errs {
			t.Errorf("browser console: %s", e)
		}
	})
	return b
}

func artifactsDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "screenshots")
	if base := os.Getenv(ArtifactsEnv); base != "" {
		dir = filepath.Join(base, regexp.MustCompile(`[^A-Za-z0-9_.-]+`).ReplaceAllString(t.Name(), "_"))
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("artifacts dir: %v", err)
	}
	t.Logf("screenshots in %s", dir)
	return dir
}

// listen records console errors, uncaught exceptions and browser log
// errors. Failed requests (source "network") are left out: the API answers
// 4xx on purpose in some tests, and the page shows those errors itself.
func (b *browser) listen(ev any) {
	if b.record(ev) {
		return
	}
	var msg string
	switch ev := ev.(type) {
	case *runtime.EventConsoleAPICalled:
		if ev.Type != runtime.ConsoleAPICalledTypeError && ev.Type != runtime.ConsoleAPICalledTypeAssert {
			return
		}
		var args []string
		for _, a := range ev.Args {
			if len(a.Value) > 0 {
				args = append(args, string(a.Value))
			} else {
				args = append(args, a.Description)
			}
		}
		msg = "console." + string(ev.Type) + ": " + strings.Join(args, " ")
	case *runtime.EventExceptionThrown:
		msg = "exception: " + ev.ExceptionDetails.Text
		if ev.ExceptionDetails.Exception != nil {
			msg += " " + ev.ExceptionDetails.Exception.Description
		}
	case *log.EventEntryAdded:
		if ev.Entry.Level != log.EntryLevelError || ev.Entry.Source == log.EntrySourceNetwork {
			return
		}
		msg = fmt.Sprintf("log %s: %s (%s)", ev.Entry.Source, ev.Entry.Text, ev.Entry.URL)
	default:
		return
	}
	b.mu.Lock()
	b.errs = append(b.errs, msg)
	b.mu.Unlock()
}

// record keeps what a network event tells of a request; it reports
// whether ev was one.
func (b *browser) record(ev any) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch ev := ev.(type) {
	case *network.EventRequestWillBeSent:
		b.reqs[ev.RequestID] = &request{url: ev.Request.URL}
	case *network.EventResponseReceived:
		if r := b.reqs[ev.RequestID]; r != nil {
			r.status, r.mimeType = ev.Response.Status, ev.Response.MimeType
		}
	case *network.EventDataReceived:
		if r := b.reqs[ev.RequestID]; r != nil {
			r.chunks++
		}
	case *network.EventLoadingFinished:
		if r := b.reqs[ev.RequestID]; r != nil {
			r.finished = true
		}
	default:
		return false
	}
	return true
}

// requests returns copies of the requests whose URL ends with suffix.
func (b *browser) requests(suffix string) []request {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []request
	for _, r := range b.reqs {
		if strings.HasSuffix(r.url, suffix) {
			out = append(out, *r)
		}
	}
	return out
}

// waitForStream waits until the page has followed the events stream at
// path to its end: a request answered 200 text/event-stream that brought
// at least two pieces (the snapshot at once and a later one, so it was
// read while the image changed) and then ended. The stream ends a moment
// after the image turns terminal, so this polls rather than looks once.
func (b *browser) waitForStream(path string, timeout time.Duration) {
	b.t.Helper()
	followed := func(r request) bool {
		return r.status == 200 && r.mimeType == "text/event-stream" && r.chunks >= 2 && r.finished
	}
	deadline := time.Now().Add(timeout)
	for {
		seen := b.requests(path)
		if slices.ContainsFunc(seen, followed) {
			return
		}
		if time.Now().After(deadline) {
			b.t.Errorf("the page never followed GET %s to its end within %v; requests seen: %+v", path, timeout, seen)
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// run runs steps with a time limit, failing the test on error.
func (b *browser) run(what string, timeout time.Duration, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, timeout)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.screenshot("failed-" + regexp.MustCompile(`[^A-Za-z0-9]+`).ReplaceAllString(what, "-"))
		b.t.Fatalf("%s: %v", what, err)
	}
}

// waitFor polls a JavaScript expression until it is truthy.
func (b *browser) waitFor(what, expr string, timeout time.Duration) {
	b.t.Helper()
	b.run("wait until "+what, timeout+5*time.Second, chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := chromedp.Poll[any](expr, chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(timeout))(ctx, t)
		return err
	}))
}

// eval returns the value of a JavaScript expression.
func eval[T any](b *browser, expr string) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		b.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// choose selects the option with value in the <select> with this id, as a
// user would (the page gets a change event).
func (b *browser) choose(id, value string) {
	b.t.Helper()
	js := fmt.Sprintf(`(s => { s.value = %q; s.dispatchEvent(new Event('change', {bubbles: true})); return s.value; })(document.getElementById(%q))`, value, id)
	if got := eval[string](b, js); got != value {
		b.t.Fatalf("choose %q in #%s: the select holds %q", value, id, got)
	}
}

// text returns the text of the first element matching a CSS selector, or "".
func (b *browser) text(selector string) string {
	b.t.Helper()
	return eval[string](b, fmt.Sprintf(`(document.querySelector(%q) || {}).textContent || ""`, selector))
}

// screenshot saves a full-page PNG named name.png in the artifacts dir.
func (b *browser) screenshot(name string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Logf("screenshot %s: %v", name, err)
		return
	}
	p := filepath.Join(b.dir, name+".png")
	if err := os.WriteFile(p, png, 0o644); err != nil {
		b.t.Logf("screenshot %s: %v", name, err)
		return
	}
	b.t.Logf("%5.1fs screenshot: %s", time.Since(b.start).Seconds(), p)
}
