package web_test

// The client's side of the control-plane frames (CONTROL.md): presence and
// presence_stats, join and leave, subscriptions the broker makes and ends
// on its own (`subscribed` and `unsubscribed` without ref), and the close
// codes 4000–4499 (reconnect) and 4500–4999 (do not reconnect). The page
// talks to a scripted WebSocket endpoint: each test plays the broker's part
// frame by frame and reads the commands the client sends.

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/tidings-io/tidings/web"
)

// script is a scripted WebSocket endpoint at /v1/ws, next to the client
// module and the test page. Every accepted connection is handed to the
// test through accept().
type script struct {
	t     *testing.T
	srv   *httptest.Server
	URL   string
	conns chan *sconn
	wg    sync.WaitGroup

	// mu guards the fields below.
	mu sync.Mutex
	// tokens lists the token query parameter of every upgrade request,
	// refused ones included.
	tokens []string
	// refuse answers upgrades and plain GETs (the client's probe) with 401.
	refuse bool
	open   map[*sconn]struct{}
	n      int
	closed bool
}

// sconn is one scripted connection.
type sconn struct {
	t   *testing.T
	id  int
	nc  net.Conn
	wmu sync.Mutex
	// ops receives the client's commands, pings excepted (answered here).
	ops  chan map[string]any
	done chan struct{}
	// closing: this side sent a close frame; the client's is its answer.
	closing atomic.Bool
}

func startScript(t *testing.T) *script {
	t.Helper()
	s := &script{t: t, conns: make(chan *sconn, 16), open: map[*sconn]struct{}{}}
	mux := http.NewServeMux()
	mux.Handle("/v1/client.js", web.ClientHandler())
	mux.HandleFunc("/test/", testPages)
	mux.HandleFunc("/v1/ws", s.serveWS)
	s.srv = httptest.NewServer(mux)
	s.URL = s.srv.URL
	t.Cleanup(s.close)
	return s
}

func (s *script) serveWS(w http.ResponseWriter, r *http.Request) {
	upgrade := strings.EqualFold(r.Header.Get("Upgrade"), "websocket")
	s.mu.Lock()
	if upgrade {
		s.tokens = append(s.tokens, r.URL.Query().Get("token"))
	}
	refuse := s.refuse
	s.mu.Unlock()
	if refuse || !upgrade {
		code, status := "bad_request", http.StatusBadRequest
		if refuse {
			code, status = "unauthorized", http.StatusUnauthorized
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"code": code, "message": "token revoked"}})
		return
	}
	up := ws.HTTPUpgrader{Protocol: func(p string) bool { return p == "pubsub.v1" }}
	nc, _, _, err := up.Upgrade(r, w)
	if err != nil {
		return
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		_ = nc.Close()
		return
	}
	s.n++
	c := &sconn{t: s.t, id: s.n, nc: nc, ops: make(chan map[string]any, 256), done: make(chan struct{})}
	s.open[c] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	select {
	case s.conns <- c:
	default:
		s.t.Errorf("conn %d: more connections than the test accepts", c.id)
	}
	c.read()
	s.mu.Lock()
	delete(s.open, c)
	s.mu.Unlock()
	s.wg.Done()
}

// write sends one frame.
func (c *sconn) write(f ws.Frame) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return ws.WriteFrame(c.nc, f)
}

// read decodes the client's commands until the connection ends. A close
// frame is answered only when the client started the closing handshake:
// a browser fails a connection that sends anything after it answered the
// server's close.
func (c *sconn) read() {
	defer close(c.done)
	defer c.nc.Close()
	for {
		fr, err := readClientFrame(c.nc)
		if err != nil {
			return
		}
		switch fr.Header.OpCode {
		case ws.OpClose:
			if !c.closing.Load() {
				_ = c.write(ws.NewCloseFrame(fr.Payload))
			}
			return
		case ws.OpPing:
			_ = c.write(ws.NewPongFrame(fr.Payload))
			continue
		case ws.OpText:
		default:
			continue
		}
		if !fr.Header.Fin {
			c.t.Errorf("conn %d: a fragmented message; this script reads whole ones only", c.id)
			return
		}
		data := fr.Payload
		var f map[string]any
		if err := json.Unmarshal(data, &f); err != nil {
			c.t.Errorf("conn %d: the client sent %q, not a JSON object", c.id, data)
			continue
		}
		if f["op"] == "ping" {
			pong := map[string]any{"type": "pong"}
			if ref, ok := f["ref"]; ok {
				pong["ref"] = ref
			}
			b, _ := json.Marshal(pong)
			c.send(string(b))
			continue
		}
		c.ops <- f
	}
}

// accept returns the next connection the client opened.
func (s *script) accept() *sconn {
	s.t.Helper()
	select {
	case c := <-s.conns:
		return c
	case <-time.After(10 * time.Second):
		s.t.Fatalf("no connection from the client within 10 s (upgrades so far: %q)", s.seenTokens())
		return nil
	}
}

func (s *script) seenTokens() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.tokens...)
}

func (s *script) setRefuse(on bool) {
	s.mu.Lock()
	s.refuse = on
	s.mu.Unlock()
}

func (s *script) close() {
	s.srv.Close()
	s.mu.Lock()
	s.closed = true
	for c := range s.open {
		_ = c.nc.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// send writes one text frame (a JSON object).
func (c *sconn) send(frame string) {
	if err := c.write(ws.NewTextFrame([]byte(frame))); err != nil {
		c.t.Logf("conn %d: sending %s: %v", c.id, frame, err)
	}
}

// welcome sends the first frame of a session, shaped as in docs/PROTOCOL.md.
func (c *sconn) welcome(user string) {
	f := map[string]any{"type": "welcome", "session": fmt.Sprintf("5f0c0000-0000-4000-8000-%012d", c.id), "node": "node-script", "heartbeat": 25}
	if user != "" {
		f["user"] = user
	}
	b, _ := json.Marshal(f)
	c.send(string(b))
}

// next returns the client's next command.
func (c *sconn) next() map[string]any {
	c.t.Helper()
	select {
	case f := <-c.ops:
		return f
	case <-c.done:
		c.t.Fatalf("conn %d ended while waiting for a command", c.id)
	case <-time.After(10 * time.Second):
		c.t.Fatalf("conn %d: no command within 10 s", c.id)
	}
	return nil
}

// expect returns the client's next command, which must be op on topic.
func (c *sconn) expect(op, topic string) map[string]any {
	c.t.Helper()
	f := c.next()
	if f["op"] != op || f["topic"] != topic {
		c.t.Fatalf("conn %d: the client sent %v, want %s %s", c.id, f, op, topic)
	}
	if ref, ok := f["ref"].(string); !ok || ref == "" {
		c.t.Fatalf("conn %d: %v has no string ref", c.id, f)
	}
	return f
}

// closeWith sends a close frame; the reader ends with the client's answer.
func (c *sconn) closeWith(code int, reason string) {
	c.closing.Store(true)
	if err := c.write(ws.NewCloseFrame(ws.NewCloseFrameBody(ws.StatusCode(code), reason))); err != nil {
		c.t.Logf("conn %d: sending close %d: %v", c.id, code, err)
	}
}

// wait blocks until the connection has ended.
func (c *sconn) wait() {
	c.t.Helper()
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		c.t.Fatalf("conn %d still open after 10 s", c.id)
	}
}

// listenJS records the client's events about subscriptions the broker
// made, and every state event in full, in window.events and
// window.stateEvents.
const listenJS = `(() => {
	window.events = [];
	window.stateEvents = [];
	for (const type of ['subscribed', 'unsubscribed', 'message', 'reset', 'join', 'leave']) {
		c.addEventListener(type, (e) => events.push({type, topic: e.topic, offset: e.offset, epoch: e.epoch, data: e.data,
			reason: e.reason, session: e.session, user: e.user, info: e.info,
			code: e.error && e.error.code, message: e.error && e.error.message}));
	}
	c.addEventListener('state', (e) => stateEvents.push({state: e.state, code: e.code, reason: e.reason, delay: e.delay}));
	return true;
})()`

type event struct {
	Type    string          `json:"type"`
	Topic   string          `json:"topic"`
	Offset  uint64          `json:"offset"`
	Epoch   string          `json:"epoch"`
	Data    json.RawMessage `json:"data"`
	Reason  string          `json:"reason"`
	Session string          `json:"session"`
	User    string          `json:"user"`
	Info    map[string]any  `json:"info"`
	Code    string          `json:"code"`
	Message string          `json:"message"`
}

// String is compact, for comparing sequences.
func (e event) String() string {
	s := e.Type + " " + e.Topic
	switch e.Type {
	case "message":
		s += fmt.Sprintf(" %d", e.Offset)
	case "reset":
		s += fmt.Sprintf(" %s %d", e.Reason, e.Offset)
	case "join", "leave":
		s += " " + e.Session + " " + e.User
	case "unsubscribed":
		s += " " + e.Code
	}
	return s
}

type stateEvent struct {
	State  string   `json:"state"`
	Code   *int     `json:"code"`
	Reason *string  `json:"reason"`
	Delay  *float64 `json:"delay"`
}

func (p *page) events() []event {
	p.t.Helper()
	var out []event
	p.eval(`events`, &out)
	return out
}

func (p *page) stateEvents() []stateEvent {
	p.t.Helper()
	var out []stateEvent
	p.eval(`stateEvents`, &out)
	return out
}

func msgFrame(topic string, offset uint64, epoch string) string {
	return fmt.Sprintf(`{"type":"message","topic":%q,"id":"9b1e0000-0000-4000-8000-%012d","offset":%d,"epoch":%q,"time":"2025-01-01T12:00:00.123456789Z","data":{"n":%d}}`,
		topic, offset, offset, epoch, offset)
}

// TestCloseCodes: a server close with 4000–4499 is followed by a reconnect
// with backoff and a resume; one with 4500–4999 ends the client for good,
// with the code and reason in its state event and a fatal error.
func TestCloseCodes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		code      int
		reconnect bool
	}{{4000, true}, {4499, true}, {4500, false}, {4999, false}} {
		t.Run(fmt.Sprint(tc.code), func(t *testing.T) {
			t.Parallel()
			s := startScript(t)
			p := openPage(t, s.URL)
			// With random 0 a reconnect would come at once: the stop case
			// can then check that none came. With 0.5 the first backoff
			// delay is 250 ms.
			random := "0.5"
			if !tc.reconnect {
				random = "0"
			}
			p.eval(`start({token: 'a', random: () => `+random+`}) && `+listenJS, nil)
			c1 := s.accept()
			c1.welcome("u1")
			p.eval(`(sub('t.a'), true)`, nil)
			f := c1.expect("subscribe", "t.a")
			c1.send(fmt.Sprintf(`{"type":"subscribed","ref":%q,"topic":"t.a","recovered":false,"offset":0,"epoch":"e1"}`, f["ref"]))
			c1.send(msgFrame("t.a", 1, "e1"))
			p.wait(`count('t.a') === 1`, 10*time.Second)
			p.eval(`(window.queued = c.publish('t.a', 'later').then(() => '', (e) => e.code), true)`, nil)
			c1.expect("publish", "t.a") // sent at once; lost with the connection

			c1.closeWith(tc.code, "go away")
			c1.wait()
			if tc.reconnect {
				c2 := s.accept()
				c2.welcome("u1")
				f := c2.expect("subscribe", "t.a")
				if since, _ := f["since"].(map[string]any); since["offset"] != float64(1) || since["epoch"] != "e1" {
					t.Errorf("resubscribed with %v, want since {1, e1}", f)
				}
				p.wait(`rec.opens.length === 2 && c.state === 'open'`, 10*time.Second)
				r := p.rec()
				if len(r.Closes) != 1 || r.Closes[0]["code"] != float64(tc.code) || r.Closes[0]["reason"] != "go away" {
					t.Errorf("closes %v, want one %d go away", r.Closes, tc.code)
				}
				if len(r.Delays) != 1 || r.Delays[0].Code != tc.code || r.Delays[0].Delay != 250 {
					t.Errorf("delays %v, want one of 250 ms (backoff 0.5 · 500) for %d", r.Delays, tc.code)
				}
				if want := []string{"open", "reconnecting", "connecting", "open"}; !slices.Equal(r.States, want) {
					t.Errorf("states %q, want %q", r.States, want)
				}
				if len(r.Errors) != 0 {
					t.Errorf("errors %v, want none", r.Errors)
				}
				if got := evalString(p, `queued`); got != "unavailable" {
					t.Errorf("the publish in flight rejected with %q, want unavailable", got)
				}
				return
			}

			p.wait(`c.state === 'closed'`, 10*time.Second)
			r := p.rec()
			st := p.stateEvents()
			if len(st) != 2 || st[0].State != "open" || st[1].State != "closed" || st[1].Code == nil || *st[1].Code != tc.code ||
				st[1].Reason == nil || *st[1].Reason != "go away" || st[1].Delay != nil {
				t.Errorf("state events %+v, want open, then closed with code %d and reason 'go away'", st, tc.code)
			}
			if len(r.Closes) != 1 || r.Closes[0]["code"] != float64(tc.code) {
				t.Errorf("closes %v, want one %d", r.Closes, tc.code)
			}
			if len(r.Errors) != 1 || r.Errors[0]["code"] != "disconnected" || r.Errors[0]["message"] != "go away" || r.Errors[0]["fatal"] != true {
				t.Errorf("errors %v, want one fatal disconnected 'go away'", r.Errors)
			}
			var after []string
			p.eval(`Promise.all([c.publish('t.a', 1).then(() => '', (e) => e.code), c.presence('t.a').then(() => '', (e) => e.code)])`, &after)
			if !slices.Equal(after, []string{"closed", "closed"}) {
				t.Errorf("calls after the final close rejected with %q, want closed", after)
			}
			// No reconnect: a second client's connection is the next one.
			p.eval(`(() => { c.reconnect(); window.c2 = new T.Tidings(undefined, {token: 'marker'}); return true; })()`, nil)
			s.accept()
			if got := s.seenTokens(); !slices.Equal(got, []string{"a", "marker"}) {
				t.Errorf("upgrade requests carried %q, want a, then the second client's marker", got)
			}
			if got := evalString(p, `c.state`); got != "closed" {
				t.Errorf("state %q after reconnect(), want closed", got)
			}
		})
	}
}

// TestTokenRevokedClose: 1008 `token revoked` is handled as a token
// problem: the client asks getToken for a new one and reconnects with
// backoff; while the broker refuses the user (401), it gives up after
// maxRefusals instead of looping.
func TestTokenRevokedClose(t *testing.T) {
	t.Parallel()
	s := startScript(t)
	p := openPage(t, s.URL)
	p.eval(`start({token: 'tok-1', random: () => 0, getToken: (() => {
		let n = 1;
		return async () => { rec.log.push('getToken'); return 'tok-' + (++n); };
	})()})`, nil)
	c1 := s.accept()
	c1.welcome("u1")
	p.wait(`c.state === 'open'`, 10*time.Second)
	s.setRefuse(true)
	c1.closeWith(1008, "token revoked")
	p.wait(`c.state === 'closed'`, 15*time.Second)

	r := p.rec()
	if got := s.seenTokens(); !slices.Equal(got, []string{"tok-1", "tok-2", "tok-3", "tok-4"}) {
		t.Errorf("upgrade requests carried %q, want tok-1, then a new token for each of 3 attempts", got)
	}
	want := []string{"open:node-script", "close:1008:token revoked", "getToken", "close:1006:", "error:unauthorized", "getToken",
		"close:1006:", "error:unauthorized", "getToken", "close:1006:", "error:unauthorized"}
	if !slices.Equal(r.Log, want) {
		t.Errorf("log %q, want %q", r.Log, want)
	}
	if len(r.Errors) != 3 || r.Errors[2]["fatal"] != true || r.Errors[2]["status"] != float64(401) {
		t.Errorf("errors %v, want three unauthorized, the last fatal", r.Errors)
	}
}

// settleJS turns a promise into {ok: value} or {err: {name, code, message}}.
const settleJS = `window.settle = (p) => p.then((ok) => ({ok}), (e) => ({err: {name: e.name, code: e.code, message: e.message}}))`

type settled struct {
	OK  json.RawMessage   `json:"ok"`
	Err map[string]string `json:"err"`
}

// TestPresence: presence() and presenceStats() send their ops (queued
// until the welcome), match the answers by ref whatever their order, and
// reject with the broker's error as a TidingsError.
func TestPresence(t *testing.T) {
	t.Parallel()
	s := startScript(t)
	p := openPage(t, s.URL)
	p.eval(`start() && (`+settleJS+`) && (window.pending = [
		settle(c.presence('room.1')), settle(c.presenceStats('room.1')),
		settle(c.presence('room.off')), settle(c.presenceStats('room.no')),
	]) && true`, nil)
	c1 := s.accept()
	c1.welcome("")
	ops := []map[string]any{c1.expect("presence", "room.1"), c1.expect("presence_stats", "room.1"),
		c1.expect("presence", "room.off"), c1.expect("presence_stats", "room.no")}
	refs := map[any]bool{}
	for _, f := range ops {
		refs[f["ref"]] = true
		if len(f) != 3 {
			t.Errorf("op %v, want only op, topic and ref", f)
		}
	}
	if len(refs) != 4 {
		t.Fatalf("ops %v, want four distinct refs", ops)
	}
	// Answered last to first.
	c1.send(fmt.Sprintf(`{"type":"error","ref":%q,"code":"forbidden","message":"forbidden: may not subscribe to room.no"}`, ops[3]["ref"]))
	c1.send(fmt.Sprintf(`{"type":"error","ref":%q,"code":"bad_request","message":"presence is off for room.off"}`, ops[2]["ref"]))
	c1.send(fmt.Sprintf(`{"type":"presence_stats","ref":%q,"topic":"room.1","sessions":3,"users":2}`, ops[1]["ref"]))
	c1.send(fmt.Sprintf(`{"type":"presence","ref":%q,"topic":"room.1","clients":[
		{"session":"s1","user":"alice","info":{"name":"Alice"},"node":"node-a"},
		{"session":"s2","user":"bob","node":"node-b"},
		{"session":"s3","user":"","node":"node-a"}]}`, ops[0]["ref"]))
	var got []settled
	p.eval(`Promise.all(pending)`, &got)

	var pres struct {
		Topic   string `json:"topic"`
		Clients []struct {
			Session string         `json:"session"`
			User    string         `json:"user"`
			Info    map[string]any `json:"info"`
			Node    string         `json:"node"`
		} `json:"clients"`
	}
	if err := json.Unmarshal(got[0].OK, &pres); err != nil || got[0].Err != nil {
		t.Fatalf("presence settled with %s %v", got[0].OK, got[0].Err)
	}
	if pres.Topic != "room.1" || len(pres.Clients) != 3 || pres.Clients[0].Session != "s1" || pres.Clients[0].User != "alice" ||
		pres.Clients[0].Info["name"] != "Alice" || pres.Clients[0].Node != "node-a" || pres.Clients[1].User != "bob" || pres.Clients[2].User != "" {
		t.Errorf("presence resolved %+v", pres)
	}
	var raw map[string]any
	_ = json.Unmarshal(got[0].OK, &raw)
	if _, ok := raw["ref"]; ok || raw["type"] != nil || len(raw) != 2 {
		t.Errorf("presence resolved %v, want only topic and clients", raw)
	}
	var stats map[string]any
	if err := json.Unmarshal(got[1].OK, &stats); err != nil ||
		!reflect.DeepEqual(stats, map[string]any{"topic": "room.1", "sessions": float64(3), "users": float64(2)}) {
		t.Errorf("presenceStats resolved %s, want {topic: room.1, sessions: 3, users: 2}", got[1].OK)
	}
	if e := got[2].Err; e["name"] != "TidingsError" || e["code"] != "bad_request" || e["message"] != "presence is off for room.off" {
		t.Errorf("presence of room.off settled with %v, want a TidingsError bad_request", got[2])
	}
	if e := got[3].Err; e["name"] != "TidingsError" || e["code"] != "forbidden" || e["message"] != "forbidden: may not subscribe to room.no" {
		t.Errorf("presenceStats of room.no settled with %v, want a TidingsError forbidden", got[3])
	}
	if r := p.rec(); len(r.Errors) != 0 {
		t.Errorf("error events %v, want none: the errors went to their promises", r.Errors)
	}
}

// TestJoinLeave: join and leave frames reach the onJoin and onLeave of
// every subscribe() to the topic, not other topics', and no client event
// (those are for subscriptions the broker made).
func TestJoinLeave(t *testing.T) {
	t.Parallel()
	s := startScript(t)
	p := openPage(t, s.URL)
	p.eval(`start() && `+listenJS, nil)
	c1 := s.accept()
	c1.welcome("")
	p.eval(`(() => {
		window.jl = [];
		const opts = (who) => ({onJoin: (j) => jl.push({who, ev: 'join', ...j}), onLeave: (j) => jl.push({who, ev: 'leave', ...j})});
		sub('room.1', 'room.1', opts('first'));
		c.subscribe('room.1', () => {}, opts('second'));
		sub('room.2', 'room.2', opts('other'));
		return true;
	})()`, nil)
	for _, topic := range []string{"room.1", "room.2"} {
		f := c1.expect("subscribe", topic)
		c1.send(fmt.Sprintf(`{"type":"subscribed","ref":%q,"topic":%q,"recovered":false,"offset":0,"epoch":"e1"}`, f["ref"], topic))
	}
	c1.send(`{"type":"join","topic":"room.1","session":"s2","user":"bob","info":{"name":"Bob"}}`)
	c1.send(`{"type":"join","topic":"room.9","session":"s3","user":"carol","info":{}}`)
	c1.send(`{"type":"leave","topic":"room.1","session":"s2","user":"bob","info":{"name":"Bob"}}`)
	c1.send(msgFrame("room.1", 1, "e1")) // a marker: every frame before it was handled
	p.wait(`count('room.1') === 1`, 10*time.Second)

	var got []map[string]any
	p.eval(`jl`, &got)
	bob := map[string]any{"topic": "room.1", "session": "s2", "user": "bob", "info": map[string]any{"name": "Bob"}}
	var want []map[string]any
	for _, ev := range []string{"join", "leave"} {
		for _, who := range []string{"first", "second"} {
			w := map[string]any{"who": who, "ev": ev}
			for k, v := range bob {
				w[k] = v
			}
			want = append(want, w)
		}
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("onJoin/onLeave got\n%v\nwant\n%v", got, want)
	}
	if ev := p.events(); len(ev) != 0 {
		t.Errorf("client events %v, want none for the client's own subscriptions", ev)
	}
}

// TestServerSideSubscriptions plays a broker that subscribes the session
// on its own: a token channel right after welcome, then one from the
// server API. Their messages come as `message` events (deduplicated, in
// order, as for any subscription), and to callbacks subscribed to the same
// topic. After a reconnect the client resubscribes them with `since`; the
// broker re-makes the token channel itself and refuses the client's own
// subscribe, which the client ignores (reporting the jump as a reset).
// The broker then ends one (`unsubscribed` without ref), and after another
// reconnect refuses the other: both end with an `unsubscribed` event.
func TestServerSideSubscriptions(t *testing.T) {
	t.Parallel()
	s := startScript(t)
	p := openPage(t, s.URL)
	p.eval(`start({token: 'tok', random: () => 0}) && `+listenJS, nil)

	// Connection 1: the token's channel chan.a, then api.x from the API.
	c1 := s.accept()
	c1.welcome("u1")
	c1.send(`{"type":"subscribed","topic":"chan.a","recovered":false,"offset":3,"epoch":"e1"}`)
	for _, off := range []uint64{4, 5, 5, 3} { // a repeat and an old one: dropped
		c1.send(msgFrame("chan.a", off, "e1"))
	}
	p.wait(`events.filter((e) => e.type === 'message').length === 2`, 10*time.Second)
	// A callback on the broker's subscription: no subscribe is sent.
	var ready bool
	p.eval(`(() => { window.appA = []; window.hA = c.subscribe('chan.a', (m) => appA.push(m.offset)); return hA.ready.then(() => true); })()`, &ready)
	c1.send(`{"type":"join","topic":"chan.a","session":"s2","user":"bob","info":{"name":"Bob"}}`)
	c1.send(msgFrame("chan.a", 6, "e1"))
	c1.send(`{"type":"subscribed","topic":"api.x","recovered":false,"offset":0,"epoch":"e3"}`)
	c1.send(msgFrame("api.x", 1, "e3"))
	c1.send(msgFrame("api.x", 2, "e3"))
	p.wait(`appA.length === 1 && events.filter((e) => e.topic === 'api.x' && e.type === 'message').length === 2`, 10*time.Second)
	var pos recPos
	p.eval(`c.position('api.x')`, &pos)
	if pos.Offset != 2 || pos.Epoch != "e3" {
		t.Errorf("position of api.x %+v, want {2 e3}", pos)
	}
	// unsubscribe() removes the callback; the broker's subscription stays.
	p.eval(`(hA.unsubscribe(), window.marker = c.publish('marker', 1), true)`, nil)
	f := c1.expect("publish", "marker")
	c1.send(fmt.Sprintf(`{"type":"published","ref":%q,"id":"m1","offset":1,"epoch":"em"}`, f["ref"]))
	p.eval(`marker`, nil)
	c1.send(msgFrame("chan.a", 7, "e1"))
	p.wait(`events.some((e) => e.type === 'message' && e.offset === 7)`, 10*time.Second)

	// Connection 2: the broker re-makes chan.a (8 and 9 were missed);
	// api.x is the client's to resume.
	p.eval(`c.reconnect(), true`, nil)
	c2 := s.accept()
	c2.welcome("u1")
	c2.send(`{"type":"subscribed","topic":"chan.a","recovered":false,"offset":9,"epoch":"e1"}`)
	subA, subX := c2.expect("subscribe", "chan.a"), c2.expect("subscribe", "api.x")
	for _, tc := range []struct {
		f     map[string]any
		since map[string]any
	}{{subA, map[string]any{"offset": float64(7), "epoch": "e1"}}, {subX, map[string]any{"offset": float64(2), "epoch": "e3"}}} {
		if !reflect.DeepEqual(tc.f["since"], tc.since) {
			t.Errorf("resubscribed with %v, want since %v", tc.f, tc.since)
		}
	}
	c2.send(fmt.Sprintf(`{"type":"error","ref":%q,"code":"bad_request","message":"already subscribed"}`, subA["ref"]))
	c2.send(fmt.Sprintf(`{"type":"subscribed","ref":%q,"topic":"api.x","recovered":true,"offset":2,"epoch":"e3"}`, subX["ref"]))
	c2.send(msgFrame("api.x", 3, "e3"))
	c2.send(msgFrame("chan.a", 10, "e1"))
	// The client's own subscription, ended by the broker: its onError.
	p.eval(`(sub('own.1'), true)`, nil)
	f = c2.expect("subscribe", "own.1")
	c2.send(fmt.Sprintf(`{"type":"subscribed","ref":%q,"topic":"own.1","recovered":false,"offset":0,"epoch":"e4"}`, f["ref"]))
	p.eval(`subs['own.1'].ready`, nil)
	c2.send(`{"type":"unsubscribed","topic":"own.1"}`)
	c2.send(`{"type":"unsubscribed","topic":"api.x"}`)
	c2.send(msgFrame("api.x", 4, "e3")) // after the end: dropped
	c2.send(msgFrame("chan.a", 11, "e1"))
	p.wait(`events.some((e) => e.type === 'message' && e.offset === 11)`, 10*time.Second)

	// Connection 3: the broker does not re-make chan.a and refuses it.
	p.eval(`(c.reconnect(), window.marker = c.publish('marker', 2), true)`, nil)
	c3 := s.accept()
	c3.welcome("u1")
	f = c3.expect("subscribe", "chan.a")
	if since := f["since"]; !reflect.DeepEqual(since, map[string]any{"offset": float64(11), "epoch": "e1"}) {
		t.Errorf("resubscribed with %v, want since {11 e1}", f)
	}
	c3.expect("publish", "marker") // nothing else: api.x and own.1 are gone
	c3.send(fmt.Sprintf(`{"type":"error","ref":%q,"code":"forbidden","message":"forbidden: may not subscribe to chan.a"}`, f["ref"]))
	p.wait(`events.some((e) => e.type === 'unsubscribed' && e.topic === 'chan.a')`, 10*time.Second)

	var got []string
	for _, e := range p.events() {
		got = append(got, e.String())
	}
	want := []string{
		"subscribed chan.a", "message chan.a 4", "message chan.a 5", "join chan.a s2 bob", "message chan.a 6",
		"subscribed api.x", "message api.x 1", "message api.x 2", "message chan.a 7",
		"reset chan.a not_recovered 9", "message api.x 3", "message chan.a 10", "unsubscribed api.x forbidden", "message chan.a 11",
		"unsubscribed chan.a forbidden",
	}
	if !slices.Equal(got, want) {
		t.Errorf("events\n%q\nwant\n%q", got, want)
	}
	ev := p.events()
	if m := ev[1]; m.Epoch != "e1" || string(m.Data) != `{"n":4}` {
		t.Errorf("message event %+v, want the message's fields", m)
	}
	if j := ev[3]; j.Info["name"] != "Bob" {
		t.Errorf("join event %+v, want info.name Bob", j)
	}
	if u := ev[len(ev)-1]; u.Message != "forbidden: may not subscribe to chan.a" {
		t.Errorf("last unsubscribed event %+v, want the broker's refusal", u)
	}
	var appA []uint64
	p.eval(`appA`, &appA)
	if !slices.Equal(appA, []uint64{6}) {
		t.Errorf("the callback on chan.a got %v, want only 6 (it unsubscribed before 7)", appA)
	}
	r := p.rec()
	if len(r.Errors) != 1 || r.Errors[0]["name"] != "own.1" || r.Errors[0]["code"] != "forbidden" ||
		r.Errors[0]["message"] != "the broker ended the subscription to own.1" {
		t.Errorf("errors %v, want only own.1's onError with forbidden ('already subscribed' is not an error)", r.Errors)
	}
	var sent []string
	p.eval(`wire.sent.filter((f) => f.op !== 'ping').map((f) => f.op + ' ' + (f.topic || ''))`, &sent)
	wantSent := []string{"publish marker", "subscribe chan.a", "subscribe api.x", "subscribe own.1", "subscribe chan.a", "publish marker"}
	if !slices.Equal(sent, wantSent) {
		t.Errorf("commands sent %q, want %q", sent, wantSent)
	}
}

// controlUsageTS uses the API added for the control plane as an
// application would; the @ts-expect-error lines check the types are tight.
const controlUsageTS = `import Tidings, { TidingsError, type Presence, type PresenceStats, type JoinInfo, type State } from "@tidings-io/client";

const c = new Tidings("wss://broker.example/v1/ws", { token: "jwt" });
const sub = c.subscribe<{ text: string }>("chat.room-1", (m) => console.log(m.data.text), {
  onJoin: (j: JoinInfo) => console.log(j.topic, j.session, j.user, j.info?.["name"]),
  onLeave: (j) => console.log(j.user),
});
sub.unsubscribe();
const p: Presence = await c.presence("chat.room-1");
for (const cl of p.clients) console.log(cl.session, cl.user, cl.node, cl.info);
const s: PresenceStats = await c.presenceStats("chat.room-1");
const n: number = s.sessions + s.users;
console.log(n, s.topic);
c.addEventListener("subscribed", (e) => c.subscribe(e.topic, (m) => console.log(m.offset)));
c.addEventListener("unsubscribed", (e) => console.log(e.topic, e.error.code, e.error instanceof TidingsError));
c.addEventListener("message", (e) => console.log(e.topic, e.offset, e.epoch, e.data, e.sub, e.time, e.id));
c.addEventListener("reset", (e) => console.log(e.topic, e.reason, e.offset));
c.addEventListener("join", (e) => console.log(e.session, e.user, e.info));
c.addEventListener("leave", (e) => console.log(e.topic, e.session));
c.addEventListener("state", (e) => {
  const st: State = e.state;
  if (st === "closed" && e.code !== undefined && e.code >= 4500) console.log(e.code, e.reason);
});
c.addEventListener("error", (e) => {
  if (e.fatal && e.error.code === "disconnected") console.log(e.error.message);
});

// @ts-expect-error presence needs a topic
c.presence();
// @ts-expect-error the counts are numbers
const bad: string = s.users;
// @ts-expect-error a join has no offset
c.addEventListener("join", (e) => e.offset);
// @ts-expect-error onJoin gets a JoinInfo
c.subscribe("a.b", () => {}, { onJoin: (j: number) => j });
console.log(bad);
`

// TestTypeScriptControlTypes compiles controlUsageTS against tidings.d.ts,
// as TestTypeScriptTypes does its usage file.
func TestTypeScriptControlTypes(t *testing.T) {
	t.Parallel()
	checkTypeScript(t, controlUsageTS)
}

// readClientFrame reads one masked client frame of at most 1 MiB and
// unmasks it.
func readClientFrame(r io.Reader) (ws.Frame, error) {
	h, err := ws.ReadHeader(r)
	if err != nil {
		return ws.Frame{}, err
	}
	if h.Length > 1<<20 {
		return ws.Frame{}, fmt.Errorf("a client frame of %d bytes", h.Length)
	}
	p := make([]byte, h.Length)
	if _, err := io.ReadFull(r, p); err != nil {
		return ws.Frame{}, err
	}
	if h.Masked {
		ws.Cipher(p, h.Mask, 0)
		h.Masked = false
	}
	return ws.Frame{Header: h, Payload: p}, nil
}
