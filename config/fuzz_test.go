package config

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

// FuzzConfig feeds the parser arbitrary files. It must never panic; a
// fault is an *Error with a line within the file; a file it accepts
// renders (Snapshot.YAML, what Check prints) into a file it accepts
// again, with the same settings' values and the same namespaces.
func FuzzConfig(f *testing.F) {
	// Example without its comments: every key, and the namespaces, in a
	// size the fuzzer mutates quickly.
	var compact []byte
	for _, line := range strings.Split(Example(), "\n") {
		if t := strings.TrimSpace(line); t != "" && !strings.HasPrefix(t, "#") {
			compact = append(compact, line+"\n"...)
		}
	}
	f.Add(compact)
	f.Add([]byte(secretsFile))
	f.Add([]byte("history-size: 5\nnamespaces:\n  - pattern: a.*\n    client_publish: none\n"))
	f.Add([]byte("namespaces: [{pattern: 'x.>', proxy: [publish]}, {pattern: y}]\n"))
	f.Add([]byte("a: &x [1]\nb: *x\n"))
	f.Add([]byte("api-keys: [a, b]\nallowed-origins: []\n"))
	f.Add([]byte("\t: :\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := Parse("f.yaml", data)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %v is no *Error", err)
			}
			if e.Line < 0 || e.File != "f.yaml" || e.Msg == "" {
				t.Fatalf("error %+v", e)
			}
			return
		}
		values := map[string]string{}
		for _, s := range file.Settings {
			if _, ok := Lookup(s.Key); !ok {
				t.Fatalf("setting of unknown key %q", s.Key)
			}
			values[s.Key] = s.Value
		}
		ns := file.Namespaces(file.Defaults())
		out, err := NewSnapshot("f.yaml", values, nil, ns).YAML("round trip")
		if err != nil {
			t.Fatalf("rendering: %v", err)
		}
		again, err := Parse("again.yaml", []byte(out))
		if err != nil {
			t.Fatalf("the rendering of an accepted file is refused: %v\n%s", err, out)
		}
		for _, s := range file.Settings {
			o, _ := Lookup(s.Key)
			a, _ := again.Setting(s.Key)
			if !o.Secret && norm(o, a.Value) != norm(o, s.Value) {
				t.Fatalf("%s: %q after a round trip, was %q", s.Key, a.Value, s.Value)
			}
		}
		ns2 := again.Namespaces(again.Defaults())
		for i := range ns {
			ns[i].Line, ns2[i].Line = 0, 0
		}
		if !reflect.DeepEqual(ns, ns2) {
			t.Fatalf("namespaces after a round trip:\n got %+v\nwant %+v", ns2, ns)
		}
	})
}
