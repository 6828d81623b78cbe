// Package browsertest runs the headless Chromium of a package's browser
// tests (chromedp): started by the first test that needs it, a tab of its
// own per test, stopped by the package's TestMain.
package browsertest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"go.uber.org/goleak"
)

// Browser is one Chromium shared by a package's tests. The zero value is
// ready; Close it in TestMain.
type Browser struct {
	once   sync.Once
	ctx    context.Context
	err    error
	cancel func()
}

// Path finds Debian's chromium (make test installs it).
func Path() (string, error) {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	return "", errors.New("chromium is not installed (make test installs it: apt-get install chromium)")
}

func (b *Browser) start() {
	path, err := Path()
	if err != nil {
		b.err = err
		return
	}
	dir, err := os.MkdirTemp("", "tidings-chromium-")
	if err != nil {
		b.err = err
		return
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.UserDataDir(dir),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-sync", true),
		chromedp.WindowSize(1280, 900),
	)
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	bctx, bcancel := chromedp.NewContext(actx)
	// Start the browser now, outside any test's context.
	if err := chromedp.Do(bctx); err != nil {
		bcancel()
		acancel()
		_ = os.RemoveAll(dir)
		b.err = fmt.Errorf("starting %s: %w", path, err)
		return
	}
	b.ctx = bctx
	b.cancel = func() {
		cctx, cancel := context.WithTimeout(bctx, 10*time.Second)
		_ = chromedp.Cancel(cctx)
		cancel()
		bcancel()
		acancel()
		_ = os.RemoveAll(dir)
	}
}

// Tab opens a tab in a browser context of its own (no shared storage or
// cache), starting the browser first if needed; it closes at t's
// cleanup.
func (b *Browser) Tab(t testing.TB) context.Context {
	t.Helper()
	b.once.Do(b.start)
	if b.err != nil {
		t.Fatal(b.err)
	}
	ctx, cancel := chromedp.NewContext(b.ctx, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	return ctx
}

// Close stops the browser, if it was started.
func (b *Browser) Close() {
	if b.cancel != nil {
		b.cancel()
	}
}

// Eval evaluates the expression js in the tab of ctx, awaiting it if it
// is a promise, and decodes its value into out unless out is nil.
func Eval(ctx context.Context, js string, out any) error {
	raw, err := chromedp.Run(ctx, chromedp.Evaluate[[]byte](js, chromedp.EvalAwaitPromise))
	if err != nil {
		return err
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return fmt.Errorf("decoding %s: %w", raw, err)
		}
	}
	return nil
}

// Poll evaluates expr in the tab of ctx every interval until its value is
// truthy, and fails with an error if it is not within timeout.
func Poll(ctx context.Context, expr string, interval, timeout time.Duration) error {
	_, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](expr,
		chromedp.WithPollingInterval(interval), chromedp.WithPollingTimeout(timeout)))
	return err
}

// Text evaluates js, an expression whose value is a string, in the tab
// of ctx, giving it three seconds: it is for failure messages, so an
// error comes back as the text "(unavailable: …)".
func Text(ctx context.Context, js string) string {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](js))
	if err != nil {
		return fmt.Sprintf("(unavailable: %v)", err)
	}
	return s
}

// Main runs a package's tests, then stops b and, when they passed, checks
// that no goroutine leaked; it exits with their status. A package's
// TestMain calls it with its shared Browser.
func Main(m *testing.M, b *Browser) {
	code := m.Run()
	b.Close()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}
