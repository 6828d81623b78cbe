package admin_test

// Helpers of the console's browser tests: one headless Chromium for the
// package (a tab per test), broker nodes started in process with the
// console mounted as cmd/broker mounts it, and the screenshots.

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tidings-io/tidings/internal/browsertest"
	"github.com/tidings-io/tidings/session"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
	"github.com/tidings-io/tidings/admin"
	"github.com/tidings-io/tidings/auth"
	"github.com/tidings-io/tidings/broker"
	"github.com/tidings-io/tidings/control"
	ctlnode "github.com/tidings-io/tidings/control/node"
	"github.com/tidings-io/tidings/store/memory"
	"github.com/tidings-io/tidings/transport/httpapi"
	"github.com/tidings-io/tidings/transport/ws"
	"github.com/tidings-io/tidings/web"
)

// screenshots is where the tests write the console's screenshots; empty:
// a temporary directory. `go test ./admin/ -admin.screenshots ../docs`
// (or TIDINGS_ADMIN_SCREENSHOTS=docs) regenerates docs/admin-*.png.
var screenshots = flag.String("admin.screenshots", os.Getenv("TIDINGS_ADMIN_SCREENSHOTS"), "write the console's screenshots (admin-*.png) to this directory")

// browser is the package's Chromium, stopped by TestMain.
var browser browsertest.Browser

func TestMain(m *testing.M) { browsertest.Main(m, &browser) }

// page is a browser tab on the console.
type page struct {
	t   *testing.T
	ctx context.Context
}

// openConsole opens base/admin in a new tab (its own storage), light or
// dark.
func openConsole(t *testing.T, base string, dark bool) *page {
	t.Helper()
	return openURL(t, base+"/admin", dark)
}

// openURL opens url in a new tab (its own storage), light or dark.
func openURL(t *testing.T, url string, dark bool) *page {
	t.Helper()
	ctx := browser.Tab(t)
	scheme := "light"
	if dark {
		scheme = "dark"
	}
	p := &page{t: t, ctx: ctx}
	p.run(chromedp.EmulateViewport(1280, 900), emulateScheme(scheme), chromedp.Navigate(url))
	return p
}

func (p *page) run(actions ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	if err := chromedp.Do(p.ctx, actions...); err != nil {
		p.t.Fatalf("%v\npage: %s", err, p.text())
	}
}

// eval runs js (promises awaited) and decodes its value into out.
func (p *page) eval(js string, out any) {
	p.t.Helper()
	if err := browsertest.Eval(p.ctx, js, out); err != nil {
		p.t.Fatalf("eval %s: %v", js, err)
	}
}

// wait polls expr until it is truthy; an expression that throws (an
// element not there yet) counts as false.
func (p *page) wait(expr string, timeout time.Duration) {
	p.t.Helper()
	safe := "(() => { try { return !!(" + expr + "); } catch (e) { return false; } })()"
	if err := browsertest.Poll(p.ctx, safe, 50*time.Millisecond, timeout); err != nil {
		p.t.Fatalf("waiting for %s: %v\npage: %s", expr, err, p.text())
	}
}

// text is the page's visible text, for failure messages.
func (p *page) text() string {
	return browsertest.Text(p.ctx, `document.body ? document.body.innerText : ""`)
}

// screenshot saves the viewport as admin-NAME.png in the screenshots
// directory (a temporary one unless -admin.screenshots is given).
func (p *page) screenshot(name string) {
	p.t.Helper()
	dir := *screenshots
	if dir == "" {
		dir = p.t.TempDir()
	}
	p.eval(`window.scrollTo(0, 0), true`, nil)
	png, err := chromedp.Run(p.ctx, chromedp.CaptureScreenshot())
	if err != nil {
		p.t.Fatal(err)
	}
	path := filepath.Join(dir, "admin-"+name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		p.t.Fatal(err)
	}
	if len(png) < 1000 || string(png[1:4]) != "PNG" {
		p.t.Fatalf("screenshot %s is not a PNG (%d bytes)", name, len(png))
	}
	p.t.Logf("screenshot %s", path)
}

// emulateScheme sets prefers-color-scheme: "light" or "dark".
func emulateScheme(scheme string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := cdp.Call(ctx, t, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
			Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: scheme}},
		})
		return err
	})
}

// nodeConfig is what a test node differs by.
type nodeConfig struct {
	id     string
	store  interface{ Close() error }
	keys   []auth.APIKey
	tokens *auth.Verifier
}

// node is one broker node with the console, on a loopback httptest server.
type node struct {
	URL string
	b   *broker.Broker
	ctl *ctlnode.Node
	ws  *ws.Server
}

// startNode starts a node on cfg.store (nil: its own memory store),
// which it closes when the test ends, with its routes as cmd/broker
// mounts them.
func startNode(t *testing.T, cfg nodeConfig) *node {
	t.Helper()
	if cfg.store == nil {
		cfg.store = memory.New(memory.Config{})
	}
	if cfg.id == "" {
		cfg.id = "node-1"
	}
	backend := cfg.store.(control.Backend)
	b := broker.New(broker.Config{}, cfg.store.(broker.Store), ws.Encoder{})
	ctl := ctlnode.New(ctlnode.Config{Broker: b, Backend: backend, ID: cfg.id, Version: "test", Presence: true})
	if err := ctl.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	wcfg := ws.Config{NodeID: cfg.id, CloseTimeout: 2 * time.Second, Services: session.Services{Registry: ctl, Presence: ctl}}
	var tokens httpapi.TokenVerifier
	if cfg.tokens != nil {
		wcfg.Tokens, tokens = cfg.tokens, cfg.tokens
	}
	wsrv := ws.New(wcfg, b)
	api := httpapi.New(httpapi.Config{APIKeys: cfg.keys, Control: ctl, Tokens: tokens}, b, wsrv)
	mux := http.NewServeMux()
	mux.Handle("/", api)
	mux.Handle("/v1/client.js", web.ClientHandler())
	mux.Handle("/admin", admin.Handler())
	mux.Handle("/admin/", admin.Handler())
	srv := httptest.NewServer(mux)
	t.Cleanup(func() {
		api.BeginShutdown()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = wsrv.Shutdown(ctx)
		srv.CloseClientConnections()
		srv.Close()
		ctl.Close()
		_ = cfg.store.Close()
	})
	return &node{URL: srv.URL, b: b, ctl: ctl, ws: wsrv}
}

// wsURL is the node's WebSocket endpoint with query.
func (n *node) wsURL(query string) string {
	u := "ws" + strings.TrimPrefix(n.URL, "http") + "/v1/ws"
	if query != "" {
		u += "?" + query
	}
	return u
}

// publishing publishes to topic every 10 ms until the test ends.
func (n *node) publishing(t *testing.T, topic string) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			_, _ = n.b.Publish(ctx, []broker.Publication{{Topic: topic, Data: json.RawMessage(fmt.Sprintf(`{"n":%d}`, i))}})
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
}

// submit submits the form of the element sel as a user does (submit
// event, constraint validation), which chromedp.Submit does not.
func (p *page) submit(sel string) {
	p.t.Helper()
	p.eval(fmt.Sprintf(`document.querySelector(%q).form.requestSubmit(), true`, sel), nil)
}

// setValue sets the value of the element sel and fires its input event,
// as typing does.
func (p *page) setValue(sel, value string) {
	p.t.Helper()
	p.eval(fmt.Sprintf(`(e => { e.value = %q; e.dispatchEvent(new Event("input", {bubbles: true})); return true })(document.querySelector(%q))`, value, sel), nil)
}
