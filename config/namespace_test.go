package config

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/tidings-io/tidings/broker"
	"github.com/tidings-io/tidings/internal/testkit"
)

// TestNamespacesDefaults: what a namespace leaves unset comes from the
// defaults; what it sets wins.
func TestNamespacesDefaults(t *testing.T) {
	t.Parallel()
	f, err := Parse("n.yaml", []byte(`
namespaces:
  - pattern: "a.>"
  - pattern: b.*
    history_size: 3
    history_ttl: 1h
    recovery: false
    presence: false
    join_leave: false
    anonymous_subscribe: false
    client_publish: authenticated
    max_message_size: 512
    proxy: [publish]
`))
	if err != nil {
		t.Fatal(err)
	}
	d := Defaults{HistorySize: 50, HistoryTTL: time.Minute, Presence: true, JoinLeave: true}
	ns := f.Namespaces(d)
	a := ns[0]
	if a.HistorySize != 50 || a.HistoryTTL != time.Minute || !a.Recovery || !a.Presence || !a.JoinLeave ||
		!a.AnonymousSubscribe || a.ClientPublish != PublishAnyone || a.MaxMessageSize != 0 || len(a.Proxy) != 0 || a.Line != 3 {
		t.Errorf("a.>: %+v, want every default", a)
	}
	b := ns[1]
	if b.HistorySize != 3 || b.HistoryTTL != time.Hour || b.Recovery || b.Presence || b.JoinLeave ||
		b.AnonymousSubscribe || b.ClientPublish != PublishAuthenticated || b.MaxMessageSize != 512 ||
		len(b.Proxy) != 1 || b.Proxy[0] != "publish" || b.Line != 4 {
		t.Errorf("b.*: %+v, want every option as set", b)
	}
	b.Proxy[0] = "changed"
	if again := f.Namespaces(d)[1]; again.Proxy[0] != "publish" {
		t.Errorf("a change to one call's proxy shows in the next: %v", again.Proxy)
	}
	fb := d.Namespace()
	if fb.HistorySize != 50 || !fb.Recovery || !fb.AnonymousSubscribe || fb.ClientPublish != PublishAnyone || !fb.Presence {
		t.Errorf("fallback %+v", fb)
	}
	raw, err := json.Marshal(b)
	if err != nil || !strings.Contains(string(raw), `"history_ttl":"1h0m0s"`) || !strings.Contains(string(raw), `"client_publish":"authenticated"`) {
		t.Errorf("JSON %s, %v", raw, err)
	}
}

// TestMatchFirstWins: a topic is its first matching namespace's.
func TestMatchFirstWins(t *testing.T) {
	t.Parallel()
	ns := Namespaces{{Pattern: "chat.vip.>"}, {Pattern: "chat.>"}, {Pattern: "*.x"}, {Pattern: "exact"}}
	for topic, want := range map[string]string{
		"chat.vip.a": "chat.vip.>", "chat.vip": "chat.>", "chat.x": "chat.>", "b.x": "*.x",
		"exact": "exact", "exact.y": "", "chat": "", "x": "",
	} {
		got := ns.Match(topic)
		if (got == nil) != (want == "") || (got != nil && got.Pattern != want) {
			t.Errorf("Match(%q) = %v, want %q", topic, got, want)
		}
	}
}

// TestAllowAnonymous: a session without a user may subscribe to what
// reaches no topic of a namespace closed to it.
func TestAllowAnonymous(t *testing.T) {
	t.Parallel()
	ns := Namespaces{
		{Pattern: "user.public.>", AnonymousSubscribe: true},
		{Pattern: "user.>", AnonymousSubscribe: false},
		{Pattern: "chat.>", AnonymousSubscribe: true},
	}
	for pattern, want := range map[string]bool{
		"chat.room": true, "chat.>": true, "news": true, "news.*": true,
		"user.alice": false, "user.*": false, "user.>": false, "*.alice": false, ">": false, "*.*": false,
		"user.public.x": true, "user.public.>": true, "user.public.*": true,
		"user": true, // user.> needs a segment after user
	} {
		if got := ns.AllowAnonymous(pattern); got != want {
			t.Errorf("AllowAnonymous(%q) = %v, want %v", pattern, got, want)
		}
	}
	if !(Namespaces{}).AllowAnonymous(">") {
		t.Error("without namespaces anything is allowed")
	}
}

// TestPatternAlgebra checks intersect and covers against brute force over
// every topic of up to four segments of a, b and c.
func TestPatternAlgebra(t *testing.T) {
	t.Parallel()
	topics := testkit.Dotted([]string{"a", "b", "c"}, 4)
	var patterns []string // > only last
	for _, p := range testkit.Dotted([]string{"a", "b", "*", ">"}, 3) {
		if !strings.Contains(p, ">.") {
			patterns = append(patterns, p)
		}
	}
	matches := func(p string) map[string]bool {
		m := map[string]bool{}
		for _, t := range topics {
			if broker.Match(p, t) {
				m[t] = true
			}
		}
		return m
	}
	for _, p := range patterns {
		mp := matches(p)
		for _, q := range patterns {
			mq := matches(q)
			both := 0
			subset := true
			for t := range mq {
				if mp[t] {
					both++
				} else {
					subset = false
				}
			}
			inter, ok := intersect(strings.Split(p, "."), strings.Split(q, "."))
			if ok != (both > 0) {
				t.Errorf("intersect(%s, %s) = %v, brute force finds %d common topics", p, q, ok, both)
			}
			if ok {
				mi := matches(strings.Join(inter, "."))
				for tp := range mi {
					if !mp[tp] || !mq[tp] {
						t.Errorf("intersect(%s, %s) = %s matches %s, which one of them does not", p, q, strings.Join(inter, "."), tp)
					}
				}
				if len(mi) != both {
					t.Errorf("intersect(%s, %s) = %s matches %d topics, want %d", p, q, strings.Join(inter, "."), len(mi), both)
				}
			}
			if got := covers(strings.Split(p, "."), strings.Split(q, ".")); got != subset {
				t.Errorf("covers(%s, %s) = %v, brute force says %v", p, q, got, subset)
			}
		}
	}
}
