package web_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tidings-io/tidings/internal/testkit"
	"github.com/tidings-io/tidings/internal/wstest"
)

// TestChromiumCompression: Chromium offers permessage-deflate on its own;
// a node with compression on accepts it. A large message the node
// publishes reaches a plain `new WebSocket` in the page compressed (the
// node counts one compressed frame) and exactly as published; large
// messages the page sends, which Chromium compresses with context
// takeover, are inflated by the node (its sessions then hold an inflate
// window) and published byte for byte to a plain Go subscriber.
func TestChromiumCompression(t *testing.T) {
	t.Parallel()
	n := startNode(t, nodeConfig{compression: true})
	p := openPage(t, n.URL)
	wsURL := "ws" + strings.TrimPrefix(n.URL, "http") + "/v1/ws"

	p.eval(`new Promise((resolve, reject) => {
  const z = window.zip = {frames: [], extensions: null};
  const ws = z.ws = new WebSocket(`+jsString(wsURL)+`, 'pubsub.v1');
  ws.onopen = () => { z.extensions = ws.extensions; };
  ws.onerror = () => reject('websocket error');
  ws.onclose = (e) => { z.closed = e.code; };
  ws.onmessage = (e) => {
    const f = JSON.parse(e.data);
    z.frames.push(e.data);
    if (f.type === 'welcome') ws.send(JSON.stringify({op: 'subscribe', topic: 'zip.down', ref: 'r1'}));
    if (f.type === 'subscribed') resolve(true);
  };
})`, nil)
	var ext string
	p.eval(`window.zip.extensions`, &ext)
	if !strings.Contains(ext, "permessage-deflate") || !strings.Contains(ext, "server_no_context_takeover") {
		t.Fatalf("the page's WebSocket negotiated extensions %q", ext)
	}

	// Server to browser.
	before := n.ws.CompressionStats()
	data := testkit.Prices(1, 20000)
	n.publish("zip.down", data)
	p.wait(`window.zip.frames.some((f) => JSON.parse(f).type === 'message')`, 10*time.Second)
	var raw string
	p.eval(`window.zip.frames.find((f) => JSON.parse(f).type === 'message')`, &raw)
	var msg struct {
		Topic string          `json:"topic"`
		Data  json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal([]byte(raw), &msg); err != nil {
		t.Fatal(err)
	}
	if msg.Topic != "zip.down" || string(msg.Data) != data {
		t.Fatalf("the page received %.100q…, want the published data byte for byte", raw)
	}
	after := n.ws.CompressionStats()
	if after.Frames != before.Frames+1 || after.In-before.In < uint64(len(data)) {
		t.Fatalf("compression stats %+v then %+v: want one frame of %d bytes or more compressed", before, after, len(data))
	}
	if saved := after.Saved - before.Saved; saved < uint64(len(data))/2 {
		t.Errorf("compressing %d bytes saved only %d", len(data), saved)
	}

	// Browser to server, through a plain Go subscriber.
	sub := wstest.Dial(t, wsURL)
	sub.Subscribe("zip.up")
	var sent []string
	for i := range 3 {
		up := testkit.Prices(10+i, 20000)
		sent = append(sent, up)
		cmd := fmt.Sprintf(`{"op":"publish","topic":"zip.up","ref":"p%d","data":%s}`, i, up)
		p.eval(`window.zip.ws.send(`+jsString(cmd)+`), true`, nil)
	}
	for i, up := range sent {
		f := sub.Expect("message")
		if string(f.Data) != up {
			t.Fatalf("message %d: the node published %d bytes, the page sent %d", i, len(f.Data), len(up))
		}
	}
	// Chromium compressed them: the node inflated them with the window
	// it keeps for a client that uses context takeover.
	if w := n.ws.CompressionStats().InflateWindowBytes; w <= 0 {
		t.Fatalf("inflate windows hold %d bytes: the node inflated nothing from the page", w)
	}
	var closed any
	p.eval(`window.zip.closed ?? null`, &closed)
	if closed != nil {
		t.Fatalf("the page's WebSocket closed with %v", closed)
	}
}
