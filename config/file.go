// Package config reads the broker's configuration file: a YAML mapping
// whose keys are the broker's flag names (history-size: 100, redis:
// redis://…, lists as YAML lists) and whose namespaces key lists options
// per topic pattern, the first matching pattern winning. Load checks it
// whole: an unknown key, a value of the wrong type or out of range, an
// invalid pattern is an *Error naming the file, the line and the key.
//
// Precedence, applied by cmd/broker: a flag on the command line wins over
// its TIDINGS_* environment variable, which wins over the file, which
// wins over the default.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// EnvConfig is the environment variable that names the file, as the
// -config flag does.
const EnvConfig = "TIDINGS_CONFIG"

// MaxFileSize bounds the file Load reads: 1 MiB.
const MaxFileSize = 1 << 20

// ErrInvalid is wrapped by every *Error: the file's content is not a
// valid configuration (as opposed to a file that cannot be read).
var ErrInvalid = errors.New("invalid configuration")

// Error is a fault in a configuration file: where it is and what is
// wrong. Its text is "file:line: key: message".
type Error struct {
	// File is the file's path.
	File string
	// Line is the line of the faulty key or value, from 1; 0 when the
	// fault is the file's as a whole.
	Line int
	// Key names the faulty setting: an option's name ("history-size"), or
	// a namespace's key ("namespaces[1].client_publish"); "" when the
	// fault is not a key's (a YAML syntax error).
	Key string
	// Msg says what is wrong.
	Msg string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		b.WriteString(":" + strconv.Itoa(e.Line))
	}
	if e.Key != "" {
		b.WriteString(": " + e.Key)
	}
	b.WriteString(": " + e.Msg)
	return b.String()
}

// Unwrap makes every *Error match ErrInvalid.
func (e *Error) Unwrap() error { return ErrInvalid }

// Setting is one option the file sets.
type Setting struct {
	// Key is the option's name (Option.Name).
	Key string
	// Value is the value as the flag takes it: a list's items joined by
	// commas, a duration as written.
	Value string
	// Line is where the key is in the file.
	Line int
}

// File is a configuration file, checked.
type File struct {
	// Path is the file's path, as given to Load.
	Path string
	// Settings are the options the file sets, in the file's order.
	Settings []Setting
	// namespaces are the namespaces as written; Namespaces fills in
	// what they leave unset.
	namespaces []spec
}

// Setting returns the file's setting of the option named key.
func (f *File) Setting(key string) (Setting, bool) {
	for _, s := range f.Settings {
		if s.Key == key {
			return s, true
		}
	}
	return Setting{}, false
}

// Where names the place of the file's setting of key, "path:line", or ""
// when the file does not set it.
func (f *File) Where(key string) string {
	if s, ok := f.Setting(key); ok {
		return f.Path + ":" + strconv.Itoa(s.Line)
	}
	return ""
}

// Load reads and checks the configuration file at path. A file that
// cannot be read gives the os error; a fault in its content an *Error
// (which wraps ErrInvalid).
func Load(path string) (*File, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	data, err := io.ReadAll(io.LimitReader(fh, MaxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxFileSize {
		return nil, &Error{File: path, Msg: fmt.Sprintf("larger than %d bytes", MaxFileSize)}
	}
	return Parse(path, data)
}

// Parse checks data, the content of the file at path (named in errors).
func Parse(path string, data []byte) (*File, error) {
	p := parser{f: &File{Path: path}}
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil && !errors.Is(err, io.EOF) {
		return nil, p.yamlError(err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		if err != nil {
			return nil, p.yamlError(err)
		}
		return nil, p.errf(&extra, "", "the file holds more than one YAML document (---): give one")
	}
	if doc.Kind == 0 {
		return p.f, nil // empty, or comments only
	}
	if err := p.root(&doc); err != nil {
		return nil, err
	}
	return p.f, nil
}

// parser checks one file's nodes into f.
type parser struct {
	f *File
}

// yamlLine is how yaml.v3 places its syntax errors.
var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// yamlError turns a YAML syntax error into an *Error with its line.
func (p *parser) yamlError(err error) error {
	msg := err.Error()
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		return &Error{File: p.f.Path, Line: line, Msg: "not valid YAML: " + m[2]}
	}
	return &Error{File: p.f.Path, Msg: "not valid YAML: " + strings.TrimPrefix(msg, "yaml: ")}
}

func (p *parser) errf(n *yaml.Node, key, format string, args ...any) error {
	line := 0
	if n != nil {
		line = n.Line
	}
	return &Error{File: p.f.Path, Line: line, Key: key, Msg: fmt.Sprintf(format, args...)}
}

// resolve follows an alias to the node it names.
func resolve(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

// root checks the document: a mapping of option names and namespaces.
func (p *parser) root(doc *yaml.Node) error {
	m := resolve(doc)
	if m.Kind == yaml.DocumentNode {
		if len(m.Content) == 0 {
			return nil
		}
		m = resolve(m.Content[0])
	}
	if m.Kind == yaml.ScalarNode && m.ShortTag() == "!!null" {
		return nil
	}
	if m.Kind != yaml.MappingNode {
		return p.errf(m, "", "want a mapping of settings (key: value), got %s", describe(m))
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], resolve(m.Content[i+1])
		key, err := p.key(k, "", seen)
		if err != nil {
			return err
		}
		if key == "namespaces" {
			if err := p.namespaces(k, v); err != nil {
				return err
			}
			continue
		}
		o, ok := Lookup(key)
		if !ok {
			return p.errf(k, key, "unknown key%s", suggest(key, optionNames()))
		}
		value, err := p.value(o, v)
		if err != nil {
			return err
		}
		p.f.Settings = append(p.f.Settings, Setting{Key: key, Value: value, Line: k.Line})
	}
	return nil
}

// key checks a mapping key: a string, not seen before in its mapping.
// prefix names the mapping in errors ("namespaces[0]."; "" at the top).
func (p *parser) key(k *yaml.Node, prefix string, seen map[string]int) (string, error) {
	k = resolve(k)
	if k.Kind != yaml.ScalarNode || k.ShortTag() != "!!str" {
		if k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" {
			return "", p.errf(k, prefix+"<<", "merge keys are not supported: write each key")
		}
		return "", p.errf(k, prefix+k.Value, "a key must be a name, got %s", describe(k))
	}
	if first, dup := seen[k.Value]; dup {
		return "", p.errf(k, prefix+k.Value, "given twice (first on line %d)", first)
	}
	seen[k.Value] = k.Line
	return k.Value, nil
}

// value checks v as option o's value and returns it as the flag takes it.
func (p *parser) value(o Option, v *yaml.Node) (string, error) {
	if o.Type == List {
		items, err := p.list(o.Name, v)
		if err != nil {
			return "", err
		}
		for _, it := range items {
			if strings.Contains(it.Value, ",") {
				return "", p.errf(it, o.Name, "an item may not hold a comma: give each as an item of its own")
			}
		}
		vals := make([]string, len(items))
		for i, it := range items {
			vals[i] = strings.TrimSpace(it.Value)
		}
		return strings.Join(vals, ","), nil
	}
	s, err := p.scalar(o.Name, o.Type, v)
	if err != nil {
		return "", err
	}
	if err := o.Check(s); err != nil {
		return "", p.errf(v, o.Name, "%v", err)
	}
	return s, nil
}

// scalar checks that v is a scalar of type t and returns its text.
func (p *parser) scalar(key string, t Type, v *yaml.Node) (string, error) {
	if v.Kind != yaml.ScalarNode {
		return "", p.errf(v, key, "want %s, got %s", want(t), describe(v))
	}
	tag := v.ShortTag()
	if tag == "!!null" {
		return "", p.errf(v, key, "has no value: want %s (or remove the key for the default)", want(t))
	}
	ok := true
	switch t {
	case Int:
		ok = tag == "!!int"
	case Float:
		ok = tag == "!!int" || tag == "!!float"
	case Bool:
		ok = tag == "!!bool"
	case Duration:
		ok = tag == "!!str"
	}
	if !ok {
		return "", p.errf(v, key, "want %s, got %s", want(t), describe(v))
	}
	switch t {
	case Int:
		var n int64
		if err := v.Decode(&n); err != nil {
			return "", p.errf(v, key, "want %s, got %q", want(t), v.Value)
		}
		return strconv.FormatInt(n, 10), nil
	case Float:
		var f float64
		if err := v.Decode(&f); err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return "", p.errf(v, key, "want %s, got %q", want(t), v.Value)
		}
		return strconv.FormatFloat(f, 'g', -1, 64), nil
	case Bool:
		var b bool
		if err := v.Decode(&b); err != nil {
			return "", p.errf(v, key, "want %s, got %q", want(t), v.Value)
		}
		return strconv.FormatBool(b), nil
	case Duration:
		if _, err := time.ParseDuration(v.Value); err != nil {
			return "", p.errf(v, key, "want %s, got %q", want(t), v.Value)
		}
	}
	return v.Value, nil
}

// list checks that v is a list of scalars and returns them.
func (p *parser) list(key string, v *yaml.Node) ([]*yaml.Node, error) {
	if v.Kind != yaml.SequenceNode {
		return nil, p.errf(v, key, "want %s, got %s", want(List), describe(v))
	}
	items := make([]*yaml.Node, 0, len(v.Content))
	for _, it := range v.Content {
		it = resolve(it)
		if it.Kind != yaml.ScalarNode || it.ShortTag() == "!!null" || strings.TrimSpace(it.Value) == "" {
			return nil, p.errf(it, key, "want a list of strings, got an item that is %s", describe(it))
		}
		items = append(items, it)
	}
	return items, nil
}

// want names what a value of type t looks like.
func want(t Type) string {
	switch t {
	case Int:
		return "a whole number"
	case Float:
		return "a number"
	case Bool:
		return "true or false"
	case Duration:
		return `a duration such as "30s", "5m" or "1h30m"`
	case List:
		return "a list, such as [a, b] or lines of '- item'"
	}
	return "a string"
}

// describe names what a node is, for errors: its kind, and for a
// scalar its YAML type and text (shortened).
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		v := n.Value
		if len(v) > 40 {
			v = v[:40] + "…"
		}
		switch n.ShortTag() {
		case "!!null":
			return "nothing (null)"
		case "!!int":
			return "the number " + v
		case "!!float":
			return "the number " + v
		case "!!bool":
			return "the boolean " + v
		case "!!str":
			return strconv.Quote(v)
		}
		return n.ShortTag() + " " + strconv.Quote(v)
	}
	return "an unexpected node"
}

// optionNames returns every option's name, and namespaces.
func optionNames() []string {
	names := make([]string, 0, len(options)+1)
	for _, o := range options {
		names = append(names, o.Name)
	}
	return append(names, "namespaces")
}
