package config

import (
	"bytes"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Masked stands for a secret wherever the configuration is shown.
const Masked = "********"

// Snapshot is an effective configuration as GET /v1/info shows it and
// Check prints it: every option's value, secrets masked, and the
// namespaces with every option filled in.
type Snapshot struct {
	// File is the configuration file's path; "" without one.
	File string `json:"file,omitempty"`
	// Settings are every option's value by name: numbers and booleans as
	// such, durations as strings ("5m0s"), lists as lists.
	Settings map[string]any `json:"settings"`
	// Sources say where each setting that is not the default comes from:
	// "flag", "env TIDINGS_…" or "path:line".
	Sources map[string]string `json:"sources,omitempty"`
	// Namespaces are the namespaces, in order.
	Namespaces Namespaces `json:"namespaces"`
}

// NewSnapshot returns the configuration of values (each option's value
// as its flag takes it; a missing option has its default), sources (see
// Snapshot.Sources) and ns, with the secrets masked.
func NewSnapshot(file string, values, sources map[string]string, ns Namespaces) *Snapshot {
	s := &Snapshot{File: file, Settings: make(map[string]any, len(options)), Sources: map[string]string{}, Namespaces: ns}
	if s.Namespaces == nil {
		s.Namespaces = Namespaces{}
	}
	for _, o := range options {
		v, ok := values[o.Name]
		if !ok {
			v = o.Default
		}
		s.Settings[o.Name] = typed(o, mask(o, v))
		if src := sources[o.Name]; src != "" {
			s.Sources[o.Name] = src
		}
	}
	return s
}

// mask hides the secret parts of o's value v: a Redis URL's password, an
// API key's secret (its name stays), any other secret whole.
func mask(o Option, v string) string {
	if !o.Secret || v == "" {
		return v
	}
	switch o.Name {
	case "redis":
		u, err := url.Parse(v)
		if err != nil {
			return Masked
		}
		return u.Redacted()
	case "api-keys":
		items := strings.Split(v, ",")
		for i, it := range items {
			if name, _, ok := strings.Cut(it, ":"); ok {
				items[i] = name + ":" + Masked
			} else {
				items[i] = Masked
			}
		}
		return strings.Join(items, ",")
	}
	return Masked
}

// typed returns v, o's value as its flag takes it, as a JSON or YAML
// value of o's type; v itself when it does not parse.
func typed(o Option, v string) any {
	switch o.Type {
	case Int:
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			return n
		}
	case Float:
		if f, err := strconv.ParseFloat(v, 64); err == nil {
			return f
		}
	case Bool:
		if b, err := strconv.ParseBool(v); err == nil {
			return b
		}
	case Duration:
		if d, err := time.ParseDuration(v); err == nil {
			return d.String()
		}
	case List:
		items := []string{}
		for _, it := range strings.Split(v, ",") {
			if it = strings.TrimSpace(it); it != "" {
				items = append(items, it)
			}
		}
		return items
	}
	return v
}

// Defaults returns the options namespaces take by default from the
// file's settings, or from the broker's defaults where it has none.
func (f *File) Defaults() Defaults {
	get := func(name string) string {
		if s, ok := f.Setting(name); ok {
			return s.Value
		}
		o, _ := Lookup(name)
		return o.Default
	}
	size, _ := strconv.Atoi(get("history-size"))
	ttl, _ := time.ParseDuration(get("history-ttl"))
	presence, _ := strconv.ParseBool(get("presence"))
	joinLeave, _ := strconv.ParseBool(get("join-leave"))
	return Defaults{HistorySize: size, HistoryTTL: ttl, Presence: presence, JoinLeave: joinLeave}
}

// Check loads the file at path and returns what `tidings config check`
// prints: the effective configuration as YAML, the file's settings over
// the broker's defaults, secrets masked, each line saying where its value
// comes from, and the namespaces with every option filled in. It checks
// what the file alone tells (keys, types, ranges, patterns); the broker
// checks the rest when it starts (the files the settings name, settings
// that exclude each other), and flags and TIDINGS_* variables, which win
// over the file, are not read here.
func Check(path string) (summary string, err error) {
	f, err := Load(path)
	if err != nil {
		return "", err
	}
	values := make(map[string]string, len(f.Settings))
	sources := make(map[string]string, len(f.Settings))
	for _, s := range f.Settings {
		values[s.Key] = s.Value
		sources[s.Key] = "line " + strconv.Itoa(s.Line)
	}
	snap := NewSnapshot(f.Path, values, sources, f.Namespaces(f.Defaults()))
	head := fmt.Sprintf("Effective configuration of %s: its settings over the broker's defaults.\n"+
		"Flags and TIDINGS_* environment variables win over the file when the broker runs.\nSecrets are masked.", f.Path)
	return snap.YAML(head)
}

// YAML renders the snapshot as a configuration file, head as its first
// comment: every option in Example's order, each value's source as its
// line comment, then the namespaces.
func (s *Snapshot) YAML(head string) (string, error) {
	root := &yaml.Node{Kind: yaml.MappingNode, HeadComment: head}
	for _, o := range options {
		k := &yaml.Node{Kind: yaml.ScalarNode, Value: o.Name}
		v := valueNode(s.Settings[o.Name])
		if src := s.Sources[o.Name]; src != "" {
			v.LineComment = src
		} else {
			v.LineComment = "default"
		}
		root.Content = append(root.Content, k, v)
	}
	seq := &yaml.Node{Kind: yaml.SequenceNode}
	for _, n := range s.Namespaces {
		m := &yaml.Node{Kind: yaml.MappingNode}
		if n.Line > 0 {
			m.HeadComment = fmt.Sprintf("%s:%d", s.File, n.Line)
		}
		add := func(key string, v any) {
			m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: key}, valueNode(v))
		}
		add(keyPattern, n.Pattern)
		add(keyHistorySize, int64(n.HistorySize))
		add(keyHistoryTTL, n.HistoryTTL.String())
		add(keyRecovery, n.Recovery)
		add(keyPresence, n.Presence)
		add(keyJoinLeave, n.JoinLeave)
		add(keyAnonymousSubscribe, n.AnonymousSubscribe)
		add(keyClientPublish, string(n.ClientPublish))
		add(keyMaxMessageSize, int64(n.MaxMessageSize))
		add(keyProxy, n.Proxy)
		seq.Content = append(seq.Content, m)
	}
	if len(seq.Content) == 0 {
		seq.Style = yaml.FlowStyle
	}
	root.Content = append(root.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: "namespaces"}, seq)
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(root); err != nil {
		return "", err
	}
	if err := enc.Close(); err != nil {
		return "", err
	}
	return b.String(), nil
}

// valueNode is the YAML node of v, a typed setting.
func valueNode(v any) *yaml.Node {
	switch x := v.(type) {
	case int64:
		return &yaml.Node{Kind: yaml.ScalarNode, Value: strconv.FormatInt(x, 10)}
	case float64:
		return &yaml.Node{Kind: yaml.ScalarNode, Value: strconv.FormatFloat(x, 'g', -1, 64)}
	case bool:
		return &yaml.Node{Kind: yaml.ScalarNode, Value: strconv.FormatBool(x)}
	case []string:
		n := &yaml.Node{Kind: yaml.SequenceNode, Style: yaml.FlowStyle}
		for _, it := range x {
			n.Content = append(n.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: it})
		}
		return n
	case string:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: x}
	}
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: fmt.Sprint(v)}
}
