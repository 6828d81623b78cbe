package config

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tidings-io/tidings/broker"
	"go.yaml.in/yaml/v3"
)

// ClientPublish says which client sessions may publish to a namespace's
// topics over WebSocket. HTTP publishes, with an API key or from
// loopback, are not client publishes and are not affected.
type ClientPublish string

// The values of client_publish.
const (
	// PublishAnyone: any session its permissions allow (a token's publish
	// claim; without token authentication, sessions from loopback).
	PublishAnyone ClientPublish = "anyone"
	// PublishAuthenticated: only sessions with a user (a token with a
	// sub), within their permissions.
	PublishAuthenticated ClientPublish = "authenticated"
	// PublishNone: no client session; publishers use the HTTP API.
	PublishNone ClientPublish = "none"
)

// Hook names a namespace's proxy list may hold: the backend hooks that
// concern a topic.
var hookNames = []string{"subscribe", "publish"}

// MaxNamespaces bounds the namespaces of a file: each publish and
// subscribe looks its topic up in them.
const MaxNamespaces = 1000

// Namespace is the options of the topics that match Pattern (the first
// namespace whose pattern matches a topic is the topic's).
type Namespace struct {
	// Pattern is a topic or a pattern (`*` one segment, `>` one or more
	// trailing ones).
	Pattern string
	// HistorySize is how many messages each topic keeps for resume and
	// history (default: -history-size).
	HistorySize int
	// HistoryTTL is how long they are kept (default: -history-ttl).
	HistoryTTL time.Duration
	// Recovery allows a subscribe with since to resume; false answers
	// every such subscribe as not recovered (default true).
	Recovery bool
	// Presence keeps who is subscribed (default: -presence).
	Presence bool
	// JoinLeave sends join and leave frames (default: -join-leave).
	JoinLeave bool
	// AnonymousSubscribe lets sessions without a user subscribe (default
	// true).
	AnonymousSubscribe bool
	// ClientPublish says which sessions may publish (default anyone).
	ClientPublish ClientPublish
	// MaxMessageSize is the largest publish data in bytes, over WebSocket
	// and HTTP; 0: no bound of its own (the default; -max-message-size and
	// -max-body-size still apply).
	MaxMessageSize int
	// Proxy names the backend hooks that apply to the topics (subscribe,
	// publish). Accepted and shown, for the backend hooks to come: nothing
	// reads it yet.
	Proxy []string
	// Line is where the namespace is in its file; 0 when it is none's.
	Line int
}

// MarshalJSON writes the namespace as GET /v1/info shows it: keys as in
// the file, the TTL as a duration string.
func (n Namespace) MarshalJSON() ([]byte, error) {
	proxy := n.Proxy
	if proxy == nil {
		proxy = []string{}
	}
	return json.Marshal(struct {
		Pattern            string        `json:"pattern"`
		HistorySize        int           `json:"history_size"`
		HistoryTTL         string        `json:"history_ttl"`
		Recovery           bool          `json:"recovery"`
		Presence           bool          `json:"presence"`
		JoinLeave          bool          `json:"join_leave"`
		AnonymousSubscribe bool          `json:"anonymous_subscribe"`
		ClientPublish      ClientPublish `json:"client_publish"`
		MaxMessageSize     int           `json:"max_message_size"`
		Proxy              []string      `json:"proxy"`
	}{n.Pattern, n.HistorySize, n.HistoryTTL.String(), n.Recovery, n.Presence, n.JoinLeave,
		n.AnonymousSubscribe, n.ClientPublish, n.MaxMessageSize, proxy})
}

// Defaults are the options of a topic that matches no namespace, and of
// what a namespace leaves unset, that the broker's flags set.
type Defaults struct {
	HistorySize int
	HistoryTTL  time.Duration
	Presence    bool
	JoinLeave   bool
}

// Namespace returns the options of a topic that matches no namespace:
// d's, recovery and anonymous subscribe allowed, any client may
// publish, no size bound of its own.
func (d Defaults) Namespace() Namespace {
	return Namespace{HistorySize: d.HistorySize, HistoryTTL: d.HistoryTTL, Recovery: true,
		Presence: d.Presence, JoinLeave: d.JoinLeave, AnonymousSubscribe: true, ClientPublish: PublishAnyone}
}

// Namespaces are a file's namespaces, in its order.
type Namespaces []Namespace

// Match returns the first namespace whose pattern matches topic (a valid
// exact topic), or nil.
func (ns Namespaces) Match(topic string) *Namespace {
	for i := range ns {
		if broker.Match(ns[i].Pattern, topic) {
			return &ns[i]
		}
	}
	return nil
}

// AllowAnonymous reports whether a session without a user may subscribe
// to pattern (a valid topic or pattern): false when a topic it can match
// belongs to a namespace with anonymous_subscribe false. For a wildcard
// the answer is cautious: a namespace's topics count as taken by an
// earlier namespace only when one earlier pattern takes all of those the
// wildcard shares with it.
func (ns Namespaces) AllowAnonymous(pattern string) bool {
	p := strings.Split(pattern, ".")
	for i, n := range ns {
		if n.AnonymousSubscribe {
			continue
		}
		common, ok := intersect(p, strings.Split(n.Pattern, "."))
		if !ok {
			continue
		}
		taken := false
		for _, earlier := range ns[:i] {
			if covers(strings.Split(earlier.Pattern, "."), common) {
				taken = true
				break
			}
		}
		if !taken {
			return false
		}
	}
	return true
}

// intersect returns the pattern matching exactly the topics both a and b
// match (split into segments), and whether there is any.
func intersect(a, b []string) ([]string, bool) {
	out := make([]string, 0, max(len(a), len(b)))
	for i := 0; ; i++ {
		aEnd, bEnd := i == len(a), i == len(b)
		switch {
		case aEnd && bEnd:
			return out, true
		case !aEnd && a[i] == ">":
			if bEnd {
				return nil, false
			}
			return append(out, b[i:]...), true
		case !bEnd && b[i] == ">":
			if aEnd {
				return nil, false
			}
			return append(out, a[i:]...), true
		case aEnd || bEnd:
			return nil, false
		case a[i] == "*":
			out = append(out, b[i])
		case b[i] == "*", a[i] == b[i]:
			out = append(out, a[i])
		default:
			return nil, false
		}
	}
}

// covers reports whether every topic b matches is matched by a (both
// split into segments).
func covers(a, b []string) bool {
	for i := 0; ; i++ {
		switch {
		case i == len(a):
			return i == len(b)
		case a[i] == ">":
			return i < len(b)
		case i == len(b), b[i] == ">":
			return false
		case a[i] == "*":
		case b[i] == "*", a[i] != b[i]:
			return false
		}
	}
}

// Namespace keys, as the file spells them.
const (
	keyPattern            = "pattern"
	keyHistorySize        = "history_size"
	keyHistoryTTL         = "history_ttl"
	keyRecovery           = "recovery"
	keyPresence           = "presence"
	keyJoinLeave          = "join_leave"
	keyAnonymousSubscribe = "anonymous_subscribe"
	keyClientPublish      = "client_publish"
	keyMaxMessageSize     = "max_message_size"
	keyProxy              = "proxy"
)

var namespaceKeys = []string{keyPattern, keyHistorySize, keyHistoryTTL, keyRecovery, keyPresence, keyJoinLeave,
	keyAnonymousSubscribe, keyClientPublish, keyMaxMessageSize, keyProxy}

// spec is a namespace as the file writes it: its pattern, its line, and
// for each other option it gives the setter of that value.
type spec struct {
	pattern string
	line    int
	sets    []func(*Namespace)
}

// Namespaces returns the file's namespaces, each option the file leaves
// unset taken from d (or the defaults of Defaults.Namespace).
func (f *File) Namespaces(d Defaults) Namespaces {
	out := make(Namespaces, len(f.namespaces))
	for i, s := range f.namespaces {
		n := d.Namespace()
		n.Pattern, n.Line = s.pattern, s.line
		for _, set := range s.sets {
			set(&n)
		}
		out[i] = n
	}
	return out
}

// namespaces checks the namespaces key's value: a list of mappings.
func (p *parser) namespaces(k, v *yaml.Node) error {
	if v.Kind == yaml.ScalarNode && v.ShortTag() == "!!null" {
		return nil
	}
	if v.Kind != yaml.SequenceNode {
		return p.errf(v, "namespaces", "want a list of namespaces (- pattern: …), got %s", describe(v))
	}
	if len(v.Content) > MaxNamespaces {
		return p.errf(k, "namespaces", "%d namespaces: at most %d", len(v.Content), MaxNamespaces)
	}
	for i, item := range v.Content {
		s, err := p.namespace(i, resolve(item))
		if err != nil {
			return err
		}
		for j, earlier := range p.f.namespaces {
			if covers(strings.Split(earlier.pattern, "."), strings.Split(s.pattern, ".")) {
				return p.errf(item, fmt.Sprintf("namespaces[%d].pattern", i),
					"%s is never used: namespaces[%d] (%s, line %d) comes first and takes every topic it matches",
					s.pattern, j, earlier.pattern, earlier.line)
			}
		}
		p.f.namespaces = append(p.f.namespaces, s)
	}
	return nil
}

// namespace checks the i-th namespace.
func (p *parser) namespace(i int, m *yaml.Node) (spec, error) {
	prefix := fmt.Sprintf("namespaces[%d].", i)
	s := spec{line: m.Line}
	if m.Kind != yaml.MappingNode {
		return s, p.errf(m, strings.TrimSuffix(prefix, "."), "want a mapping (pattern: …, history_size: …), got %s", describe(m))
	}
	seen := map[string]int{}
	for j := 0; j+1 < len(m.Content); j += 2 {
		k, v := m.Content[j], resolve(m.Content[j+1])
		key, err := p.key(k, prefix, seen)
		if err != nil {
			return s, err
		}
		if !slices.Contains(namespaceKeys, key) {
			return s, p.errf(k, prefix+key, "unknown key%s", suggest(key, namespaceKeys))
		}
		set, err := p.namespaceKey(&s, prefix+key, key, v)
		if err != nil {
			return s, err
		}
		if set != nil {
			s.sets = append(s.sets, set)
		}
	}
	if _, ok := seen[keyPattern]; !ok {
		return s, p.errf(m, prefix+keyPattern, "missing: every namespace needs a pattern")
	}
	return s, nil
}

// boolKeys are the namespace keys of a boolean option, each with its
// field.
var boolKeys = map[string]func(*Namespace) *bool{
	keyRecovery:           func(n *Namespace) *bool { return &n.Recovery },
	keyPresence:           func(n *Namespace) *bool { return &n.Presence },
	keyJoinLeave:          func(n *Namespace) *bool { return &n.JoinLeave },
	keyAnonymousSubscribe: func(n *Namespace) *bool { return &n.AnonymousSubscribe },
}

// namespaceKey checks one key of a namespace and returns the setter of
// its value (nil for the pattern, which it sets in s).
func (p *parser) namespaceKey(s *spec, name, key string, v *yaml.Node) (func(*Namespace), error) {
	bad := func(format string, args ...any) error { return p.errf(v, name, format, args...) }
	if field, ok := boolKeys[key]; ok {
		text, err := p.scalar(name, Bool, v)
		if err != nil {
			return nil, err
		}
		b := text == "true"
		return func(ns *Namespace) { *field(ns) = b }, nil
	}
	switch key {
	case keyPattern:
		text, err := p.scalar(name, String, v)
		if err != nil {
			return nil, err
		}
		if _, err := broker.ValidatePattern(text); err != nil {
			return nil, bad("%q: %v", text, err)
		}
		s.pattern = text
		return nil, nil
	case keyHistorySize, keyMaxMessageSize:
		text, err := p.scalar(name, Int, v)
		if err != nil {
			return nil, err
		}
		n, err := strconv.Atoi(text)
		switch {
		case err != nil:
			return nil, bad("%s: too large", text)
		case key == keyHistorySize && n <= 0:
			return nil, bad("%s: must be a whole number more than zero", text)
		case n < 0:
			return nil, bad("%s: must not be negative (0: no bound of its own)", text)
		}
		if key == keyHistorySize {
			return func(ns *Namespace) { ns.HistorySize = n }, nil
		}
		return func(ns *Namespace) { ns.MaxMessageSize = n }, nil
	case keyHistoryTTL:
		text, err := p.scalar(name, Duration, v)
		if err != nil {
			return nil, err
		}
		d, _ := time.ParseDuration(text)
		if d <= 0 {
			return nil, bad("%s: must be more than zero", d)
		}
		return func(ns *Namespace) { ns.HistoryTTL = d }, nil
	case keyClientPublish:
		text, err := p.scalar(name, String, v)
		if err != nil {
			return nil, err
		}
		switch c := ClientPublish(text); c {
		case PublishNone, PublishAuthenticated, PublishAnyone:
			return func(ns *Namespace) { ns.ClientPublish = c }, nil
		}
		return nil, bad("%q: want none, authenticated or anyone", text)
	case keyProxy:
		items, err := p.list(name, v)
		if err != nil {
			return nil, err
		}
		var proxy []string
		for _, it := range items {
			if !slices.Contains(hookNames, it.Value) {
				return nil, p.errf(it, name, "%q: want hook names among %s", it.Value, strings.Join(hookNames, ", "))
			}
			if slices.Contains(proxy, it.Value) {
				return nil, p.errf(it, name, "%q is listed twice", it.Value)
			}
			proxy = append(proxy, it.Value)
		}
		return func(ns *Namespace) { ns.Proxy = slices.Clone(proxy) }, nil
	}
	return nil, nil
}
