package ws_test

import (
	"bufio"
	"crypto/sha1"
	"encoding/base64"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tidings-io/tidings/protocol"
	"github.com/tidings-io/tidings/transport/admit"
	wsserver "github.com/tidings-io/tidings/transport/ws"
)

func TestSubprotocolIsSelectedWhenOfferedAndOptional(t *testing.T) {
	t.Parallel()
	h := newHarness(t, config{})
	tests := []struct {
		name    string
		offered []string
		want    string
	}{
		{name: "offered alone", offered: []string{protocol.Subprotocol}, want: "pubsub.v1"},
		{name: "offered after another", offered: []string{"chat.v2", "pubsub.v1"}, want: "pubsub.v1"},
		{name: "not offered", offered: nil, want: ""},
		{name: "only others offered", offered: []string{"chat.v2"}, want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			// The dialer fails the handshake if the server selects a
			// protocol that was not offered.
			c, _ := h.dialWelcome(t, tt.offered...)
			if c.hs.Protocol != tt.want {
				t.Fatalf("selected subprotocol %q, want %q", c.hs.Protocol, tt.want)
			}
			c.subscribe("proto.t")
			c.ping("works")
		})
	}
}

func TestHandshakeResponseHeadersSelectPubsubV1(t *testing.T) {
	t.Parallel()
	h := newHarness(t, config{})
	conn, err := net.DialTimeout("tcp", h.ts.Listener.Addr().String(), ioTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(ioTimeout))
	const key = "dGhlIHNhbXBsZSBub25jZQ=="
	req := "GET /v1/ws HTTP/1.1\r\n" +
		"Host: " + h.ts.Listener.Addr().String() + "\r\n" +
		"Connection: Upgrade\r\n" +
		"Upgrade: websocket\r\n" +
		"Sec-WebSocket-Version: 13\r\n" +
		"Sec-WebSocket-Key: " + key + "\r\n" +
		"Sec-WebSocket-Protocol: chat.v2, pubsub.v1\r\n\r\n"
	if _, err := io.WriteString(conn, req); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status %s, want 101", resp.Status)
	}
	sum := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	want := map[string]string{
		"Upgrade":                "websocket",
		"Connection":             "Upgrade",
		"Sec-WebSocket-Protocol": "pubsub.v1",
		"Sec-WebSocket-Accept":   base64.StdEncoding.EncodeToString(sum[:]),
	}
	for k, v := range want {
		if got := resp.Header.Get(k); !strings.EqualFold(got, v) {
			t.Errorf("%s: %q, want %q", k, got, v)
		}
	}
	// The welcome follows the handshake on the same connection.
	f, err := readServerFrame(br)
	if err != nil {
		t.Fatal(err)
	}
	if e, err := decodeEvent(f.Payload); err != nil || e.Type != "welcome" {
		t.Fatalf("first frame %s (%v), want welcome", describe(f), err)
	}
}

// dialStatus dials with an Origin header (none when origin is "") and
// returns the HTTP status of a refused handshake with its body, or 101
// (the session is closed at once).
func (h *harness) dialStatus(t *testing.T, origin string) (int, http.Header, []byte) {
	t.Helper()
	var header http.Header
	if origin != "" {
		header = http.Header{"Origin": {origin}}
	}
	c, ref := h.handshake(t, "", header)
	if c != nil {
		_ = c.conn.Close()
		return http.StatusSwitchingProtocols, nil, nil
	}
	return ref.status, ref.header, ref.body
}

// checkErrorBody checks a JSON error body of the HTTP API.
func checkErrorBody(t *testing.T, header http.Header, body []byte, code string) {
	t.Helper()
	if ct := header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	var e struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal(body, &e); err != nil || e.Error.Code != code || e.Error.Message == "" {
		t.Errorf("body %q (%v), want a JSON error with code %q and a message", body, err, code)
	}
}

func TestOriginIsCheckedBeforeTheUpgrade(t *testing.T) {
	t.Parallel()
	const same = "same-host" // replaced by the test server's own origin
	tests := []struct {
		name    string
		allowed []string
		origin  string
		want    int
	}{
		{name: "default: no Origin passes", origin: "", want: 101},
		{name: "default: same host passes", origin: same, want: 101},
		{name: "default: other origin is refused", origin: "http://evil.example", want: 403},
		{name: "default: same host name on another port is refused", origin: "http://127.0.0.1:1", want: 403},
		{name: "default: opaque null origin is refused", origin: "null", want: 403},
		{name: "allow-list: listed origin passes", allowed: []string{"https://app.example"}, origin: "https://app.example", want: 101},
		{name: "allow-list: listing is case-insensitive", allowed: []string{"https://App.Example/"}, origin: "https://app.example", want: 101},
		{name: "allow-list: second entry passes", allowed: []string{"https://a.example", "https://b.example"}, origin: "https://b.example", want: 101},
		{name: "allow-list: unlisted origin is refused", allowed: []string{"https://app.example"}, origin: "https://app.example.evil", want: 403},
		{name: "allow-list: scheme matters", allowed: []string{"https://app.example"}, origin: "http://app.example", want: 403},
		{name: "allow-list: same host not listed is refused", allowed: []string{"https://app.example"}, origin: same, want: 403},
		{name: "allow-list: no Origin passes", allowed: []string{"https://app.example"}, origin: "", want: 101},
		{name: "star allows any origin", allowed: []string{"*"}, origin: "http://anything.example:9999", want: 101},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, config{ws: wsserver.Config{Policy: admit.Policy{AllowedOrigins: tt.allowed}}})
			origin := tt.origin
			if origin == same {
				origin = h.ts.URL
			}
			status, header, body := h.dialStatus(t, origin)
			if status != tt.want {
				t.Fatalf("Origin %q: status %d, want %d", origin, status, tt.want)
			}
			if status == http.StatusForbidden {
				checkErrorBody(t, header, body, "forbidden")
				if n := h.b.Stats().Sessions; n != 0 {
					t.Errorf("a refused request opened %d sessions", n)
				}
			}
		})
	}
}

func TestNonGetRequestIsRefusedWith405(t *testing.T) {
	t.Parallel()
	h := newHarness(t, config{})
	resp, err := h.ts.Client().Post(h.ts.URL+"/v1/ws", "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != http.MethodGet {
		t.Fatalf("status %s Allow %q, want 405 and Allow: GET", resp.Status, resp.Header.Get("Allow"))
	}
	checkErrorBody(t, resp.Header, body, "method_not_allowed")
}
