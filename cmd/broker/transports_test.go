package main

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	gws "github.com/gobwas/ws"
)

// sseStream is a raw reader of a /v1/sse response: every line as sent.
type sseStream struct {
	resp  *http.Response
	lines *bufio.Reader
}

func openSSE(t *testing.T, hc *http.Client, addr, query string) *sseStream {
	t.Helper()
	resp, err := hc.Get("http://" + addr + "/v1/sse?" + query)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		t.Fatalf("GET /v1/sse: %d %s", resp.StatusCode, body)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return &sseStream{resp: resp, lines: bufio.NewReader(resp.Body)}
}

// event reads up to the next event of type typ (skipping comments and
// other events) and returns its data line.
func (s *sseStream) event(t *testing.T, typ string) string {
	t.Helper()
	current := ""
	for {
		line, err := s.lines.ReadString('\n')
		if err != nil {
			t.Fatalf("reading the stream for %q: %v", typ, err)
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case strings.HasPrefix(line, "event: "):
			current = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: ") && current == typ:
			return strings.TrimPrefix(line, "data: ")
		}
	}
}

func TestSSEServedByTheNodeOutlivesTheReadTimeoutAndGetsGoingAway(t *testing.T) {
	n := startNode(t, nil, "-read-timeout", "1s")
	hc := newHTTPClient(t)
	s := openSSE(t, &http.Client{Transport: &http.Transport{}}, n.addr, "topic=a.b")
	s.event(t, "subscribed")
	// Past the read timeout, which bounds a request, not a stream: the
	// wait is what the test asserts, not a synchronisation.
	time.Sleep(1500 * time.Millisecond)
	if status, _, err := publish(hc, n.addr, "a.b", `{"x":1}`); err != nil || status != http.StatusOK {
		t.Fatalf("publish: %d %v", status, err)
	}
	if data := s.event(t, "message"); !strings.Contains(data, `"data":{"x":1}`) {
		t.Fatalf("message %s", data)
	}
	if _, err := n.stop(t, 10*time.Second); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if data := s.event(t, "close"); data != `{"code":1001,"reason":"server shutting down"}` {
		t.Fatalf("close event %s", data)
	}
}

func TestOneSessionBoundForEveryTransport(t *testing.T) {
	n := startNode(t, nil, "-max-sessions", "1")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := dialWS(ctx, n.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	resp, err := http.Get("http://" + n.addr + "/v1/sse?topic=a")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("an SSE stream beside the one WebSocket session: %d %s, want 503 with Retry-After", resp.StatusCode, body)
	}
	m, err := http.Get("http://" + n.addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(m.Body)
	m.Body.Close()
	if want := `tidings_refused_total{reason="max_sessions",transport="sse"} 1`; !strings.Contains(string(metrics), want) {
		t.Fatalf("/metrics (%d) lacks %s:\n%s", m.StatusCode, want, grepLines(metrics, "tidings_refused_total"))
	}
}

func TestHTTPStreamServedByTheNode(t *testing.T) {
	n := startNode(t, nil)
	resp, err := (&http.Client{Transport: &http.Transport{}}).Get("http://" + n.addr + "/v1/stream")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	key := resp.Header.Get("Tidings-Stream-Key")
	if resp.StatusCode != http.StatusOK || key == "" {
		t.Fatalf("GET /v1/stream: %d, key %q", resp.StatusCode, key)
	}
	body := bufio.NewReader(resp.Body)
	// next returns the next frame's opcode and payload.
	next := func() (gws.OpCode, string) {
		t.Helper()
		h, err := gws.ReadHeader(body)
		if err != nil {
			t.Fatal(err)
		}
		p := make([]byte, h.Length)
		if _, err := io.ReadFull(body, p); err != nil {
			t.Fatal(err)
		}
		return h.OpCode, string(p)
	}
	if op, p := next(); op != gws.OpText || !strings.HasPrefix(p, `{"type":"welcome"`) {
		t.Fatalf("first frame %v %s", op, p)
	}
	hc := newHTTPClient(t)
	post, err := hc.Post("http://"+n.addr+"/v1/stream/"+key, "text/plain", strings.NewReader(`{"op":"subscribe","topic":"a.b","ref":"1"}`))
	if err != nil {
		t.Fatal(err)
	}
	post.Body.Close()
	if post.StatusCode != http.StatusNoContent {
		t.Fatalf("POST: %d", post.StatusCode)
	}
	if _, p := next(); !strings.HasPrefix(p, `{"type":"subscribed","ref":"1"`) {
		t.Fatalf("answer %s", p)
	}
	if status, _, err := publish(hc, n.addr, "a.b", `{"x":1}`); err != nil || status != http.StatusOK {
		t.Fatalf("publish: %d %v", status, err)
	}
	if _, p := next(); !strings.Contains(p, `"data":{"x":1}`) {
		t.Fatalf("message %s", p)
	}
	if _, err := n.stop(t, 10*time.Second); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	for {
		op, p := next()
		if op == gws.OpPing {
			continue
		}
		if op != gws.OpClose || len(p) < 2 || int(p[0])<<8|int(p[1]) != 1001 {
			t.Fatalf("last frame %v %q, want close 1001", op, p)
		}
		break
	}
}
