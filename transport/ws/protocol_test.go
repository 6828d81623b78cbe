package ws_test

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tidings-io/tidings/internal/testkit"
	wsserver "github.com/tidings-io/tidings/transport/ws"
)

func TestWelcomeIsFirstFrameWithSessionNodeAndHeartbeat(t *testing.T) {
	t.Parallel()
	h := newHarness(t, config{ws: wsserver.Config{NodeID: "node-7", Heartbeat: 30 * time.Second}})

	c := h.dial(t)
	// A command sent before reading anything is answered after the welcome.
	c.send(`{"op":"ping","ref":"early"}`)
	w := c.expect("welcome")
	if !isUUID(w.Session) {
		t.Errorf("welcome session = %q, want a UUID", w.Session)
	}
	if w.Node != "node-7" {
		t.Errorf("welcome node = %q, want %q", w.Node, "node-7")
	}
	if w.Heartbeat != 30 {
		t.Errorf("welcome heartbeat = %v, want 30 (seconds)", w.Heartbeat)
	}
	for _, f := range []string{"session", "node", "heartbeat"} {
		if !w.Has(f) {
			t.Errorf("welcome lacks %q: %s", f, w)
		}
	}
	if p := c.expect("pong"); p.Ref != "early" {
		t.Errorf("pong ref = %q, want %q", p.Ref, "early")
	}

	_, w2 := h.dialWelcome(t)
	if w2.Session == w.Session {
		t.Errorf("two sessions share the id %s", w.Session)
	}
}

func TestPingIsAnsweredWithPongEchoingRef(t *testing.T) {
	t.Parallel()
	h := newHarness(t, config{})
	tests := []struct {
		name    string
		cmd     string
		wantRef string // "" means no ref field at all
	}{
		{name: "with ref", cmd: `{"op":"ping","ref":"r1"}`, wantRef: "r1"},
		{name: "unicode ref", cmd: `{"op":"ping","ref":"caf\u00e9 ☕"}`, wantRef: "café ☕"},
		{name: "without ref", cmd: `{"op":"ping"}`},
		{name: "null ref", cmd: `{"op":"ping","ref":null}`},
		{name: "unknown fields ignored", cmd: `{"op":"ping","ref":"r2","extra":[1,2]}`, wantRef: "r2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, _ := h.dialWelcome(t)
			c.send(tt.cmd)
			p := c.expect("pong")
			if p.Ref != tt.wantRef || p.Has("ref") != (tt.wantRef != "") {
				t.Errorf("pong = %s, want ref %q", p, tt.wantRef)
			}
		})
	}
}

func TestSubscribedCarriesPositionForExactTopicsOnly(t *testing.T) {
	t.Parallel()
	h := newHarness(t, config{})
	for i := 0; i < 3; i++ {
		h.mustPublish(t, "sub.used", `{"i":`+strconv.Itoa(i)+`}`)
	}
	tests := []struct {
		name       string
		cmd        string
		wantTopic  string
		wantRef    string
		wantOffset uint64
		wildcard   bool
	}{
		{name: "never published topic is at offset 0", cmd: `{"op":"subscribe","topic":"sub.fresh","ref":"s1"}`, wantTopic: "sub.fresh", wantRef: "s1"},
		{name: "published topic is at its last offset", cmd: `{"op":"subscribe","topic":"sub.used","ref":"s2"}`, wantTopic: "sub.used", wantRef: "s2", wantOffset: 3},
		{name: "no ref", cmd: `{"op":"subscribe","topic":"sub.noref"}`, wantTopic: "sub.noref"},
		{name: "star wildcard has no position", cmd: `{"op":"subscribe","topic":"sub.*","ref":"w1"}`, wantTopic: "sub.*", wantRef: "w1", wildcard: true},
		{name: "tail wildcard has no position", cmd: `{"op":"subscribe","topic":"sub.>","ref":"w2"}`, wantTopic: "sub.>", wantRef: "w2", wildcard: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, _ := h.dialWelcome(t)
			c.send(tt.cmd)
			e := c.expect("subscribed")
			if e.Topic != tt.wantTopic || e.Ref != tt.wantRef || e.Has("ref") != (tt.wantRef != "") {
				t.Errorf("subscribed = %s, want topic %q ref %q", e, tt.wantTopic, tt.wantRef)
			}
			if !e.Has("recovered") || e.Recovered {
				t.Errorf("subscribed = %s, want recovered:false present", e)
			}
			if tt.wildcard {
				if e.Has("offset") || e.Has("epoch") {
					t.Errorf("wildcard subscribed = %s, want no offset and no epoch", e)
				}
				return
			}
			if !e.Has("offset") || e.Offset != tt.wantOffset {
				t.Errorf("subscribed = %s, want offset %d", e, tt.wantOffset)
			}
			if e.Epoch != testkit.EpochOf(t, h.store, tt.wantTopic) {
				t.Errorf("subscribed epoch = %q, want the topic's epoch %q", e.Epoch, testkit.EpochOf(t, h.store, tt.wantTopic))
			}
			c.ping("alive")
		})
	}
}

func TestUnsubscribeStopsDelivery(t *testing.T) {
	t.Parallel()
	for _, pattern := range []string{"un.a", "un.*", "un.>"} {
		t.Run(pattern, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, config{})
			c, _ := h.dialWelcome(t)
			c.subscribe(pattern)
			c.subscribe("marker")

			c.send(`{"op":"unsubscribe","topic":` + strconv.Quote(pattern) + `,"ref":"u1"}`)
			e := c.expect("unsubscribed")
			if e.Ref != "u1" || e.Topic != pattern {
				t.Fatalf("unsubscribed = %s, want ref u1 topic %q", e, pattern)
			}

			h.mustPublish(t, "un.a", `"after unsubscribe"`)
			h.mustPublish(t, "marker", `"marker"`)
			if m := c.expect("message"); m.Topic != "marker" {
				t.Fatalf("got %s after unsubscribing from %s, want only the marker", m, pattern)
			}

			// Unsubscribed, it can subscribe again and gets messages again.
			c.subscribe(pattern)
			h.mustPublish(t, "un.a", `"again"`)
			if m := c.expect("message"); m.Topic != "un.a" || string(m.Data) != `"again"` {
				t.Fatalf("after resubscribing got %s", m)
			}
		})
	}
}

func TestPublishOverWebSocketAnswersPublishedAndDelivers(t *testing.T) {
	t.Parallel()
	h := newHarness(t, config{})
	sub, _ := h.dialWelcome(t)
	sub.subscribe("pub.t")
	pub, _ := h.dialWelcome(t)

	for i, ref := range []string{"p1", "p2"} {
		before := time.Now()
		pub.send(`{"op":"publish","topic":"pub.t","data":{"n":` + strconv.Itoa(i) + `},"ref":"` + ref + `"}`)
		ack := pub.expect("published")
		if ack.Ref != ref || !isUUID(ack.ID) || ack.Offset != uint64(i+1) || ack.Epoch != testkit.EpochOf(t, h.store, "pub.t") {
			t.Fatalf("published = %s, want ref %s, a UUID id, offset %d, epoch %s", ack, ref, i+1, testkit.EpochOf(t, h.store, "pub.t"))
		}
		for _, f := range []string{"id", "offset", "epoch"} {
			if !ack.Has(f) {
				t.Errorf("published lacks %q: %s", f, ack)
			}
		}

		m := sub.expect("message")
		if m.Topic != "pub.t" || m.ID != ack.ID || m.Offset != ack.Offset || m.Epoch != ack.Epoch {
			t.Fatalf("message = %s, want topic pub.t and the published id/offset/epoch %s", m, ack)
		}
		if string(m.Data) != `{"n":`+strconv.Itoa(i)+`}` {
			t.Errorf("message data = %s", m.Data)
		}
		if m.Has("sub") {
			t.Errorf("message through an exact subscription carries sub: %s", m)
		}
		ts, err := time.Parse(time.RFC3339Nano, m.Time)
		if err != nil {
			t.Errorf("message time %q is not RFC 3339: %v", m.Time, err)
		} else if ts.Before(before.Add(-time.Second)) || ts.After(time.Now().Add(time.Second)) {
			t.Errorf("message time %v is not the time of publishing (%v)", ts, before)
		}
	}

	// A session subscribed to its own topic gets its own message too.
	sub.send(`{"op":"publish","topic":"pub.t","data":"self","ref":"p3"}`)
	got := map[string]event{}
	for len(got) < 2 {
		e := sub.next()
		got[e.Type] = e
	}
	if got["published"].Ref != "p3" || got["message"].ID != got["published"].ID {
		t.Fatalf("self publish: published %s, message %s", got["published"], got["message"])
	}
}

func TestPublishFromNonLoopbackIsForbiddenAndSessionStaysOpen(t *testing.T) {
	t.Parallel()
	h := newHarness(t, config{remoteAddr: "192.0.2.10:5555"})
	c, _ := h.dialWelcome(t)
	c.send(`{"op":"publish","topic":"far.t","data":1,"ref":"f1"}`)
	e := c.expect("error")
	if e.Code != "forbidden" || e.Ref != "f1" || e.Message == "" {
		t.Fatalf("error = %s, want code forbidden ref f1 and a message", e)
	}
	// Anonymous sessions may still subscribe to any topic.
	c.subscribe("far.t")
	c.ping("alive")
	if got := h.b.Stats().Published; got != 0 {
		t.Errorf("broker published %d messages, want 0", got)
	}
}

func TestBadCommandsGetErrorFrameAndSessionStaysOpen(t *testing.T) {
	t.Parallel()
	h := newHarness(t, config{})
	long := strings.Repeat("x", 256)
	tests := []struct {
		name     string
		cmd      string
		wantCode string
		wantRef  string
	}{
		{name: "unknown op", cmd: `{"op":"dance","ref":"e1"}`, wantCode: "bad_request", wantRef: "e1"},
		{name: "missing op", cmd: `{"ref":"e2","topic":"a"}`, wantCode: "bad_request", wantRef: "e2"},
		{name: "empty object", cmd: `{}`, wantCode: "bad_request"},
		{name: "op not a string", cmd: `{"op":1,"ref":"e3"}`, wantCode: "bad_request", wantRef: "e3"},
		{name: "subscribe bad topic", cmd: `{"op":"subscribe","topic":"a..b","ref":"e4"}`, wantCode: "bad_request", wantRef: "e4"},
		{name: "subscribe bad character", cmd: `{"op":"subscribe","topic":"a b","ref":"e5"}`, wantCode: "bad_request", wantRef: "e5"},
		{name: "subscribe topic too long", cmd: `{"op":"subscribe","topic":"` + long + `","ref":"e6"}`, wantCode: "bad_request", wantRef: "e6"},
		{name: "subscribe bad wildcard", cmd: `{"op":"subscribe","topic":"a.>.b","ref":"e7"}`, wantCode: "bad_request", wantRef: "e7"},
		{name: "subscribe missing topic", cmd: `{"op":"subscribe","ref":"e8"}`, wantCode: "bad_request", wantRef: "e8"},
		{name: "subscribe empty topic", cmd: `{"op":"subscribe","topic":"","ref":"e9"}`, wantCode: "bad_request", wantRef: "e9"},
		{name: "subscribe topic not a string", cmd: `{"op":"subscribe","topic":5,"ref":"e10"}`, wantCode: "bad_request", wantRef: "e10"},
		{name: "ref not a string", cmd: `{"op":"subscribe","topic":"a","ref":5}`, wantCode: "bad_request"},
		{name: "ref an object", cmd: `{"op":"ping","ref":{"id":1}}`, wantCode: "bad_request"},
		{name: "since not an object", cmd: `{"op":"subscribe","topic":"a","since":"x","ref":"e11"}`, wantCode: "bad_request", wantRef: "e11"},
		{name: "since negative offset", cmd: `{"op":"subscribe","topic":"a","since":{"offset":-1,"epoch":"x"},"ref":"e12"}`, wantCode: "bad_request", wantRef: "e12"},
		{name: "since epoch not a string", cmd: `{"op":"subscribe","topic":"a","since":{"offset":1,"epoch":7},"ref":"e13"}`, wantCode: "bad_request", wantRef: "e13"},
		{name: "since without epoch", cmd: `{"op":"subscribe","topic":"a","since":{"offset":1},"ref":"e14"}`, wantCode: "bad_request", wantRef: "e14"},
		{name: "since without offset", cmd: `{"op":"subscribe","topic":"a","since":{"epoch":"x"},"ref":"e15"}`, wantCode: "bad_request", wantRef: "e15"},
		{name: "since on a wildcard", cmd: `{"op":"subscribe","topic":"a.*","since":{"offset":0,"epoch":"x"},"ref":"e16"}`, wantCode: "bad_request", wantRef: "e16"},
		{name: "unsubscribe not subscribed", cmd: `{"op":"unsubscribe","topic":"never.subscribed","ref":"e17"}`, wantCode: "not_found", wantRef: "e17"},
		{name: "unsubscribe bad topic", cmd: `{"op":"unsubscribe","topic":"a..b","ref":"e18"}`, wantCode: "bad_request", wantRef: "e18"},
		{name: "unsubscribe missing topic", cmd: `{"op":"unsubscribe","ref":"e19"}`, wantCode: "bad_request", wantRef: "e19"},
		{name: "publish data missing", cmd: `{"op":"publish","topic":"a","ref":"e20"}`, wantCode: "bad_request", wantRef: "e20"},
		{name: "publish missing topic", cmd: `{"op":"publish","data":1,"ref":"e21"}`, wantCode: "bad_request", wantRef: "e21"},
		{name: "publish bad topic", cmd: `{"op":"publish","topic":"a.","data":1,"ref":"e22"}`, wantCode: "bad_request", wantRef: "e22"},
		{name: "publish to star wildcard", cmd: `{"op":"publish","topic":"a.*","data":1,"ref":"e23"}`, wantCode: "bad_request", wantRef: "e23"},
		{name: "publish to tail wildcard", cmd: `{"op":"publish","topic":">","data":1,"ref":"e24"}`, wantCode: "bad_request", wantRef: "e24"},
		{name: "publish topic not a string", cmd: `{"op":"publish","topic":["a"],"data":1,"ref":"e25"}`, wantCode: "bad_request", wantRef: "e25"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, _ := h.dialWelcome(t)
			c.send(tt.cmd)
			e := c.expect("error")
			if e.Code != tt.wantCode || e.Ref != tt.wantRef || e.Message == "" {
				t.Errorf("error = %s, want code %q ref %q and a message", e, tt.wantCode, tt.wantRef)
			}
			if strings.HasPrefix(e.Message, "ws: ") || strings.HasPrefix(e.Message, "broker: ") {
				t.Errorf("error message %q leaks a package prefix", e.Message)
			}
			c.ping("still-open")
		})
	}
}

func TestSubscribingTwiceIsBadRequestAndKeepsTheFirstSubscription(t *testing.T) {
	t.Parallel()
	h := newHarness(t, config{})
	// Each case has its own topic space: the cases run in parallel, and a
	// publish of one must not reach the other's subscription.
	for _, tc := range []struct{ subscribe, publish string }{
		{subscribe: "dup.exact.t", publish: "dup.exact.t"},
		{subscribe: "dup.pattern.*", publish: "dup.pattern.t"},
	} {
		t.Run(tc.subscribe, func(t *testing.T) {
			t.Parallel()
			c, _ := h.dialWelcome(t)
			c.subscribe(tc.subscribe)
			c.send(`{"op":"subscribe","topic":` + strconv.Quote(tc.subscribe) + `,"ref":"again"}`)
			if e := c.expect("error"); e.Code != "bad_request" || e.Ref != "again" {
				t.Fatalf("second subscribe: %s, want error bad_request ref again", e)
			}
			c.ping("still-open")
			h.mustPublish(t, tc.publish, `"once"`)
			if m := c.expect("message"); m.Topic != tc.publish {
				t.Fatalf("got %s", m)
			}
			c.ping("no-duplicate")
		})
	}
}

func TestDataIsDeliveredByteForByte(t *testing.T) {
	t.Parallel()
	h := newHarness(t, config{})
	values := []struct {
		name string
		data string
	}{
		{name: "object with insignificant whitespace", data: `{"a" :  [1, 2 ]}`},
		{name: "null", data: `null`},
		{name: "true", data: `true`},
		{name: "zero", data: `0`},
		{name: "negative exponent", data: `-1.50e+10`},
		{name: "integer beyond float64", data: `123456789012345678901234567890`},
		{name: "unicode escapes", data: `"caf\u00e9 \ud83d\ude00 \"q\" \\ \/"`},
		{name: "raw unicode", data: `"café ☕ 日本"`},
		{name: "html characters", data: `"<a href='x'>&amp;</a>"`},
		{name: "empty array", data: `[]`},
		{name: "nested with newlines", data: "{\n\t\"x\": {\"y\": [null, false, \"\\u0000\"]}\r\n}"},
	}
	for _, via := range []string{"websocket", "http"} {
		for i, v := range values {
			t.Run(via+"/"+v.name, func(t *testing.T) {
				t.Parallel()
				topic := fmt.Sprintf("data.%s.%d", via, i)
				sub, _ := h.dialWelcome(t)
				sub.subscribe(topic)
				switch via {
				case "websocket":
					pub, _ := h.dialWelcome(t)
					pub.send(`{"op":"publish","topic":"` + topic + `","data":` + v.data + `,"ref":"d"}`)
					pub.expect("published")
				case "http":
					if _, err := h.publishHTTP(topic, v.data); err != nil {
						t.Fatal(err)
					}
				}
				m := sub.expect("message")
				if string(m.Data) != v.data {
					t.Fatalf("data = %q, want %q byte for byte", m.Data, v.data)
				}
			})
		}
	}
}
