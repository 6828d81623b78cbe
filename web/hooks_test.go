package web_test

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/tidings-io/tidings/hooks"
)

// The Node.js example backend (examples/hooks-backend) decides a real
// Chromium page's session through the hooks: after logging in, the page's
// user may subscribe to news.* and her inbox, not to admin.*, with the
// backend's own message.
func TestExampleBackendDecidesInChromium(t *testing.T) {
	t.Parallel()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("node is needed for the example backend: make deps installs nodejs")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	backendPort := ln.Addr().(*net.TCPAddr).Port
	backendURL := fmt.Sprintf("http://127.0.0.1:%d", backendPort)
	hk, err := hooks.New(hooks.Config{Connect: backendURL + "/connect", Subscribe: backendURL + "/subscribe", ForwardCookies: []string{"sid"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(hk.Close)
	n := startNode(t, nodeConfig{hooks: hk, origins: []string{backendURL}, unstarted: true})
	n.startOn("127.0.0.1:0")
	_ = ln.Close() // the backend takes the port

	cmd := exec.Command(node, "../examples/hooks-backend/backend.mjs", fmt.Sprint(backendPort), n.URL)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	listening := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "listening") {
				close(listening)
			}
		}
	}()
	select {
	case <-listening:
	case <-time.After(20 * time.Second):
		t.Fatal("the example backend did not start")
	}

	p := &page{t: t, ctx: tab(t)}
	if err := chromedp.Do(p.ctx, chromedp.Navigate(backendURL+"/login?user=ann")); err != nil {
		t.Fatal(err)
	}
	p.wait(`window.done === true`, 20*time.Second)
	var got struct {
		User    string
		Results map[string]string
	}
	p.eval(`({User: window.user, Results: window.results})`, &got)
	want := map[string]string{"news.today": "ok", "inbox.ann": "ok", "admin.audit": "forbidden: ann may not read admin.audit"}
	if got.User != "ann" || fmt.Sprint(got.Results) != fmt.Sprint(want) {
		t.Fatalf("page: user %q results %v, want ann and %v", got.User, got.Results, want)
	}
	// The README runs the same backend with the same settings.
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"node examples/hooks-backend/backend.mjs 3000 http://localhost:8080", "-hook-connect http://localhost:3000/connect",
		"-hook-subscribe http://localhost:3000/subscribe -hook-forward-cookies sid", "-allowed-origins http://localhost:3000",
		"http://localhost:3000/login?user=ann", "forbidden: ann may\nnot read admin.audit"} {
		if !strings.Contains(string(readme), s) {
			t.Errorf("README.md's Backend hooks section no longer says %q", s)
		}
	}
}
