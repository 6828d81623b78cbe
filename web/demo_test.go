package web_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/tidings-io/tidings/internal/demo"
)

// TestDemoPage opens /demo with the demo publisher running, checks that
// the board ticks, drops the connection with the page's button, checks
// that every topic resumed without a gap, and saves a full-page
// screenshot (also copied to /tmp/tidings-demo.png).
func TestDemoPage(t *testing.T) {
	t.Parallel()
	n := startNode(t, nodeConfig{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- demo.Run(ctx, n.b, 100*time.Millisecond) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("demo.Run: %v", err)
		}
	})

	p := &page{t: t, ctx: tab(t)}
	if err := chromedp.Do(p.ctx, chromedp.Navigate(n.URL+"/demo")); err != nil {
		t.Fatalf("navigate: %v", err)
	}
	p.wait(`document.querySelectorAll('#prices tbody tr').length === 6 && document.querySelectorAll('#feed li').length >= 1 && document.getElementById('state').dataset.state === 'open'`, 15*time.Second)

	const board = `[...document.querySelectorAll('#prices tbody tr')].map((r) => r.cells[0].textContent + ' ' + r.cells[1].textContent + ' #' + r.cells[3].textContent).join(', ')`
	var first string
	p.eval(board, &first)
	p.wait(board+` !== `+jsString(first), 10*time.Second)
	var second string
	p.eval(board, &second)
	t.Logf("board: %s\nthen:  %s", first, second)

	// Drop the connection: the client reconnects and resumes every topic.
	if err := chromedp.Do(p.ctx, chromedp.Click(`#drop`)); err != nil {
		t.Fatalf("click: %v", err)
	}
	p.wait(`[...document.querySelectorAll('#log li')].some((li) => li.textContent.includes('replayed')) && document.getElementById('state').dataset.state === 'open'`, 15*time.Second)
	var afterDrop string
	p.eval(board, &afterDrop)
	p.wait(board+` !== `+jsString(afterDrop), 10*time.Second)
	var gaps []string
	p.eval(`[...document.querySelectorAll('#topics tbody tr')].map((r) => r.cells[0].textContent + '=' + r.cells[3].textContent)`, &gaps)
	if len(gaps) < 7 {
		t.Errorf("topics table %v, want the six pairs and the chat", gaps)
	}
	for _, g := range gaps {
		if g[len(g)-2:] != "=0" {
			t.Errorf("a topic has gaps after the drop: %v", gaps)
			break
		}
	}

	png, err := chromedp.Run(p.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	name := filepath.Join(t.TempDir(), "demo.png")
	if err := os.WriteFile(name, png, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(os.TempDir(), "tidings-demo.png"), png, 0o644); err != nil {
		t.Logf("copying the screenshot to %s: %v", os.TempDir(), err)
	}
	if len(png) < 10_000 {
		t.Errorf("the screenshot is only %d bytes", len(png))
	}
}

// jsString quotes s as a JavaScript string literal.
func jsString(s string) string {
	b := []byte{'"'}
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b = append(b, '\\', byte(r))
		case r < 0x20:
			b = append(b, []byte(`\u00`)...)
			b = append(b, "0123456789abcdef"[r>>4], "0123456789abcdef"[r&15])
		default:
			b = append(b, string(r)...)
		}
	}
	return string(append(b, '"'))
}
