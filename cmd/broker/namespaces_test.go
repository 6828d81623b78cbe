package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/tidings-io/tidings/internal/redistest"
	"github.com/tidings-io/tidings/internal/testkit"
	"github.com/tidings-io/tidings/internal/wstest"
)

// nsFile is the config file of the namespace tests: one namespace per
// option, and plain.* topics that match none (history-size 5, the other
// options at their defaults).
const nsFile = `
history-size: 5
namespaces:
  - pattern: "big.>"
    history_size: 50
  - pattern: "short.>"
    history_ttl: 1s
  - pattern: "norecover.>"
    recovery: false
  - pattern: "room.>"
    presence: true
    join_leave: true
  - pattern: "private.*"
    anonymous_subscribe: false
  - pattern: "feed.>"
    client_publish: none
  - pattern: "members.>"
    client_publish: authenticated
  - pattern: "small.>"
    max_message_size: 16
`

// nsKey signs the session tokens of the namespace tests.
const nsKey = "namespace-tests-hmac-key-0123456789abcdef"

// nsToken signs a token that may subscribe and publish everywhere, for
// sub ("" for a token without a user).
func nsToken(t *testing.T, sub string) string {
	t.Helper()
	claims := jwt.MapClaims{"exp": time.Now().Add(time.Hour).Unix(), "subscribe": []string{">"}, "publish": []string{">"}}
	if sub != "" {
		claims["sub"] = sub
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(nsKey))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// getJSON GETs path of the node and decodes a 200 answer into out; it
// returns the status.
func getJSON(t *testing.T, hc *http.Client, addr, path string, out any) int {
	t.Helper()
	resp, err := hc.Get("http://" + addr + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode == http.StatusOK && out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("GET %s: %s: %v", path, raw, err)
		}
	}
	return resp.StatusCode
}

// historyLen is how many messages GET /v1/history lists for topic.
func historyLen(t *testing.T, hc *http.Client, addr, topic string) int {
	t.Helper()
	var h struct {
		Messages []json.RawMessage `json:"messages"`
	}
	if status := getJSON(t, hc, addr, "/v1/history?limit=1000&topic="+url.QueryEscape(topic), &h); status != http.StatusOK {
		t.Fatalf("history of %s: %d", topic, status)
	}
	return len(h.Messages)
}

// mustPublish publishes data to topic over HTTP and returns the answer.
func mustPublish(t *testing.T, hc *http.Client, addr, topic, data string) publishReply {
	t.Helper()
	status, r, err := publish(hc, addr, topic, data)
	if err != nil || status != http.StatusOK {
		t.Fatalf("publish to %s: %d %v", topic, status, err)
	}
	return r
}

// wsPublish publishes data to topic on c and returns the answer:
// `published` or `error`.
func wsPublish(c *wstest.Client, topic, data string) wstest.Frame {
	c.Send(map[string]any{"op": "publish", "topic": topic, "data": json.RawMessage(data), "ref": "p:" + topic})
	for {
		f := c.Next()
		if f.Ref == "p:"+topic {
			return f
		}
	}
}

// subscribeAnswer sends a subscribe to topic and returns its answer.
func subscribeAnswer(c *wstest.Client, topic string) wstest.Frame {
	c.Send(map[string]any{"op": "subscribe", "topic": topic, "ref": "s:" + topic})
	for {
		f := c.Next()
		if f.Ref == "s:"+topic {
			return f
		}
	}
}

// wantError checks that f is an `error` of code whose message holds msg.
func wantError(t *testing.T, f wstest.Frame, code, msg string) {
	t.Helper()
	if f.Type != "error" || f.Code != code || !strings.Contains(f.Message, msg) {
		t.Errorf("got %s, want error %s %q", f.Raw, code, msg)
	}
}

// TestNamespaces runs a node, on the embedded store and on a real Redis,
// with nsFile and checks each namespace option's effect through the wire:
// a raw WebSocket client and the HTTP API.
func TestNamespaces(t *testing.T) {
	t.Parallel()
	for _, store := range []string{"memory", "redis"} {
		t.Run(store, func(t *testing.T) {
			t.Parallel()
			path := writeConfig(t, nsFile)
			args := []string{"-config", path, "-demo=false"}
			if store == "redis" {
				args = append(args, "-redis", redistest.Start(t).URL())
			}
			open := startNode(t, nil, args...)
			authed := startNode(t, nil, append(args, "-jwt-key", nsKey)...)
			wsURL := "ws://" + open.addr + "/v1/ws"
			hc := newHTTPClient(t)

			t.Run("history_size", func(t *testing.T) {
				for i := 0; i < 60; i++ {
					mustPublish(t, hc, open.addr, "big.h", "1")
					mustPublish(t, hc, open.addr, "plain.h", "1")
				}
				if n := historyLen(t, hc, open.addr, "big.h"); n != 50 {
					t.Errorf("big.h keeps %d messages, want its namespace's 50", n)
				}
				if n := historyLen(t, hc, open.addr, "plain.h"); n != 5 {
					t.Errorf("plain.h keeps %d messages, want -history-size's 5", n)
				}
			})

			t.Run("history_ttl", func(t *testing.T) {
				mustPublish(t, hc, open.addr, "short.t", "1")
				mustPublish(t, hc, open.addr, "plain.t", "1")
				testkit.Eventually(t, 10*time.Second, func() error {
					if n := historyLen(t, hc, open.addr, "short.t"); n != 0 {
						return fmt.Errorf("short.t keeps %d messages after its 1s TTL", n)
					}
					return nil
				})
				if n := historyLen(t, hc, open.addr, "plain.t"); n != 1 {
					t.Errorf("plain.t keeps %d messages, want 1 (-history-ttl 5m)", n)
				}
			})

			t.Run("recovery", func(t *testing.T) {
				for _, tc := range []struct {
					topic     string
					recovered bool
				}{{"norecover.r", false}, {"plain.r", true}} {
					first := mustPublish(t, hc, open.addr, tc.topic, "1")
					mustPublish(t, hc, open.addr, tc.topic, "2")
					c := wstest.Dial(t, wsURL)
					f := c.Resume(tc.topic, first.Offset-1, first.Epoch)
					if f.Recovered != tc.recovered {
						t.Errorf("%s: resume answered recovered %v, want %v", tc.topic, f.Recovered, tc.recovered)
					}
					third := mustPublish(t, hc, open.addr, tc.topic, "3")
					want := []uint64{third.Offset}
					if tc.recovered {
						want = []uint64{first.Offset, first.Offset + 1, third.Offset}
					}
					for _, off := range want {
						if m := c.Expect("message"); m.Offset != off {
							t.Errorf("%s: message at offset %d, want %d (replay: %v)", tc.topic, m.Offset, off, tc.recovered)
						}
					}
				}
			})

			t.Run("presence and join_leave", func(t *testing.T) {
				c := wstest.Dial(t, wsURL)
				c.Subscribe("room.a")
				if j := c.Expect("join"); j.Topic != "room.a" || j.Session != c.Welcome.Session {
					t.Errorf("join %s, want this session's on room.a", j.Raw)
				}
				testkit.Eventually(t, 10*time.Second, func() error {
					var p struct {
						Clients []struct{ Session string } `json:"clients"`
					}
					if status := getJSON(t, hc, open.addr, "/v1/presence?topic=room.a", &p); status != http.StatusOK {
						return fmt.Errorf("presence of room.a: %d", status)
					}
					if len(p.Clients) != 1 || p.Clients[0].Session != c.Welcome.Session {
						return fmt.Errorf("presence of room.a: %+v, want the session", p.Clients)
					}
					return nil
				})
				c.Subscribe("plain.p")
				if status := getJSON(t, hc, open.addr, "/v1/presence?topic=plain.p", nil); status != http.StatusBadRequest {
					t.Errorf("presence of plain.p (presence off): %d, want 400", status)
				}
				mustPublish(t, hc, open.addr, "plain.p", "1")
				if f := c.Next(); f.Type != "message" || f.Topic != "plain.p" {
					t.Errorf("after subscribing to plain.p got %s, want its message and no join", f.Raw)
				}
				c.Send(map[string]any{"op": "presence", "topic": "plain.p", "ref": "pp"})
				wantError(t, c.Expect("error"), "bad_request", "presence is not enabled for plain.p")
			})

			t.Run("anonymous_subscribe", func(t *testing.T) {
				c := wstest.Dial(t, wsURL)
				for _, p := range []string{"private.alice", "private.*", ">", "*.alice"} {
					wantError(t, subscribeAnswer(c, p), "forbidden", "may not subscribe to "+p)
				}
				for _, p := range []string{"plain.s", "private.alice.x", "plain.>"} {
					if f := subscribeAnswer(c, p); f.Type != "subscribed" {
						t.Errorf("anonymous subscribe to %s: %s", p, f.Raw)
					}
				}
				c.Send(map[string]any{"op": "history", "topic": "private.alice", "ref": "h"})
				wantError(t, c.Expect("error"), "forbidden", "may not read the history of private.alice")
				authURL := "ws://" + authed.addr + "/v1/ws?token="
				alice := wstest.Dial(t, authURL+nsToken(t, "alice"))
				if f := subscribeAnswer(alice, "private.alice"); f.Type != "subscribed" {
					t.Errorf("alice's subscribe to private.alice: %s", f.Raw)
				}
				nobody := wstest.Dial(t, authURL+nsToken(t, ""))
				wantError(t, subscribeAnswer(nobody, "private.alice"), "forbidden", "may not subscribe to private.alice")
			})

			t.Run("client_publish", func(t *testing.T) {
				c := wstest.Dial(t, wsURL)
				wantError(t, wsPublish(c, "feed.x", "1"), "forbidden", "clients may not publish to feed.x")
				wantError(t, wsPublish(c, "members.x", "1"), "forbidden", "publishing to members.x needs an authenticated session")
				if f := wsPublish(c, "plain.c", "1"); f.Type != "published" {
					t.Errorf("anyone: %s", f.Raw)
				}
				// HTTP publishes are not client publishes.
				mustPublish(t, hc, open.addr, "feed.x", "1")
				mustPublish(t, hc, open.addr, "members.x", "1")
				authURL := "ws://" + authed.addr + "/v1/ws?token="
				alice := wstest.Dial(t, authURL+nsToken(t, "alice"))
				if f := wsPublish(alice, "members.x", "1"); f.Type != "published" {
					t.Errorf("authenticated: %s", f.Raw)
				}
				wantError(t, wsPublish(alice, "feed.x", "1"), "forbidden", "clients may not publish to feed.x")
				nobody := wstest.Dial(t, authURL+nsToken(t, ""))
				wantError(t, wsPublish(nobody, "members.x", "1"), "forbidden", "needs an authenticated session")
				if f := wsPublish(nobody, "plain.c", "1"); f.Type != "published" {
					t.Errorf("a token without a user, anyone: %s", f.Raw)
				}
			})

			t.Run("max_message_size", func(t *testing.T) {
				c := wstest.Dial(t, wsURL)
				fits, over := `"`+strings.Repeat("a", 14)+`"`, `"`+strings.Repeat("a", 15)+`"`
				if f := wsPublish(c, "small.m", fits); f.Type != "published" {
					t.Errorf("16 bytes: %s", f.Raw)
				}
				wantError(t, wsPublish(c, "small.m", over), "too_large", "data is larger than the topic's limit of 16 bytes")
				if f := wsPublish(c, "plain.m", `"`+strings.Repeat("a", 1000)+`"`); f.Type != "published" {
					t.Errorf("1002 bytes on plain.m: %s", f.Raw)
				}
				if status, _, err := publish(hc, open.addr, "small.m", over); err != nil || status != http.StatusRequestEntityTooLarge {
					t.Errorf("HTTP publish of 17 bytes: %d %v, want 413", status, err)
				}
				batch := `{"messages":[{"topic":"plain.m","data":1},{"topic":"small.m","data":` + over + `}]}`
				resp, err := hc.Post("http://"+open.addr+"/v1/publish/batch", "application/json", bytes.NewReader([]byte(batch)))
				if err != nil {
					t.Fatal(err)
				}
				raw, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(string(raw), "message 1: data is larger") {
					t.Errorf("batch with one message too large: %d %s, want 413 naming message 1", resp.StatusCode, raw)
				}
			})
		})
	}
}
