package web_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/tidings-io/tidings/broker"
	"github.com/tidings-io/tidings/internal/browsertest"
	"github.com/tidings-io/tidings/store/memory"
	"github.com/tidings-io/tidings/transport/httpstream"
	"github.com/tidings-io/tidings/transport/sse"
	"github.com/tidings-io/tidings/transport/ws"
)

// eventSourcePage opens a browser's own EventSource on /v1/sse and
// records every event it gets: its type, its lastEventId and its data.
const eventSourcePage = `<!doctype html><meta charset="utf-8"><title>sse</title><script>
window.events = [];
window.errors = 0;
const es = new EventSource("/v1/sse?topic=ticks&topic=news.*");
for (const type of ["welcome", "subscribed", "message", "reset", "error", "close"]) {
  es.addEventListener(type, (e) => {
    window.events.push({type, id: e.lastEventId, data: e.data ? JSON.parse(e.data) : null});
  });
}
es.onerror = () => { window.errors++; };
</script>`

// sseNode is a node serving Server-Sent Events (its broker's default
// encoding is the WebSocket one, as in production) and the page above;
// it records the Last-Event-ID of every stream request.
type sseNode struct {
	b   *broker.Broker
	srv *httptest.Server
	sse *sse.Server

	mu      sync.Mutex
	lastIDs []string
}

func startSSENode(t *testing.T) *sseNode {
	t.Helper()
	st := memory.New(memory.Config{})
	b := broker.New(broker.Config{}, st, ws.Encoder{})
	n := &sseNode{b: b, sse: sse.New(sse.Config{Settings: httpstream.Settings{NodeID: "sse-node", WriteTimeout: 5 * time.Second}}, b)}
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/sse", func(w http.ResponseWriter, r *http.Request) {
		n.mu.Lock()
		n.lastIDs = append(n.lastIDs, r.Header.Get("Last-Event-ID"))
		n.mu.Unlock()
		n.sse.ServeHTTP(w, r)
	})
	mux.HandleFunc("/es/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = io.WriteString(w, eventSourcePage)
	})
	n.srv = httptest.NewServer(mux)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = n.sse.Shutdown(ctx)
		n.srv.Close()
		_ = st.Close()
	})
	return n
}

func (n *sseNode) publish(t *testing.T, topic string, i int) {
	t.Helper()
	if _, err := n.b.Publish(context.Background(), []broker.Publication{{Topic: topic, Data: json.RawMessage(fmt.Sprintf(`{"i":%d}`, i))}}); err != nil {
		t.Fatal(err)
	}
}

// esEvent is one event the page recorded.
type esEvent struct {
	Type string         `json:"type"`
	ID   string         `json:"id"`
	Data map[string]any `json:"data"`
}

func TestBrowserEventSourceReceivesAndResumesWithLastEventID(t *testing.T) {
	n := startSSENode(t)
	ctx := tab(t)
	if err := chromedp.Do(ctx, chromedp.Navigate(n.srv.URL+"/es/")); err != nil {
		t.Fatal(err)
	}
	poll := func(expr string) {
		t.Helper()
		if err := browsertest.Poll(ctx, expr, 20*time.Millisecond, 20*time.Second); err != nil {
			raw, _ := chromedp.Run(ctx, chromedp.Evaluate[[]byte](`window.events`))
			t.Fatalf("waiting for %s: %v; events: %s", expr, err, raw)
		}
	}
	poll(`window.events.filter(e => e.type === "subscribed").length === 2`)
	for i := 1; i <= 5; i++ {
		n.publish(t, "ticks", i)
	}
	n.publish(t, "news.eu", 1)
	poll(`window.events.filter(e => e.type === "message").length === 6`)

	// The connection drops; messages go on meanwhile. The browser's
	// EventSource reconnects by itself with the last id it saw.
	n.srv.CloseClientConnections()
	poll(`window.errors >= 1`)
	for i := 6; i <= 9; i++ {
		n.publish(t, "ticks", i)
	}
	poll(`window.events.filter(e => e.type === "subscribed").length === 4`)
	n.publish(t, "ticks", 10)
	poll(`window.events.filter(e => e.type === "message" && e.data.topic === "ticks").length >= 10`)

	var evs []esEvent
	if err := browsertest.Eval(ctx, `window.events`, &evs); err != nil {
		t.Fatal(err)
	}
	var offsets []float64
	resumed := false
	for _, e := range evs {
		switch {
		case e.Type == "message" && e.Data["topic"] == "ticks":
			offsets = append(offsets, e.Data["offset"].(float64))
			if e.ID == "" {
				t.Fatalf("message without an id: %+v", e)
			}
		case e.Type == "subscribed" && e.Data["topic"] == "ticks" && e.Data["recovered"] == true:
			resumed = true
		}
	}
	for i, off := range offsets {
		if off != float64(i+1) {
			t.Fatalf("ticks offsets %v: a gap or a duplicate at %d", offsets, i)
		}
	}
	if len(offsets) != 10 || !resumed {
		t.Fatalf("ticks offsets %v, resumed %v; want 1…10 and a recovered subscribe", offsets, resumed)
	}
	n.mu.Lock()
	ids := append([]string(nil), n.lastIDs...)
	n.mu.Unlock()
	if len(ids) < 2 || ids[0] != "" || ids[len(ids)-1] == "" {
		t.Fatalf("Last-Event-ID of the stream requests: %q; want none, then the cursor", ids)
	}
}
