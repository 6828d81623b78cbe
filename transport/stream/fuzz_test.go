package stream

import (
	"bytes"
	"encoding/json"
	"testing"
)

// FuzzStreamCommands checks the parsing of POST bodies: it never panics;
// a body is taken exactly when it is a JSON object or an array of JSON
// objects, and then yields the object, or each element in order, each a
// JSON object of its own.
func FuzzStreamCommands(f *testing.F) {
	for _, seed := range []string{
		`{"op":"ping"}`, `[{"op":"ping"},{"op":"subscribe","topic":"a"}]`, `[]`, ` [ {} , {} ] `,
		`[1]`, `"x"`, `null`, ``, `{`, `[{"op":"ping"}`, `{} {}`, "\t{\"a\":[1,{\"b\":2}]}\n", `[[{}]]`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		cmds, err := splitCommands(body)
		trimmed := bytes.Trim(body, " \t\r\n")
		var v any
		valid := json.Unmarshal(trimmed, &v) == nil
		switch x := v.(type) {
		case map[string]any:
			if err != nil || len(cmds) != 1 || !bytes.Equal(cmds[0], trimmed) {
				t.Fatalf("object %q: %q, %v", body, cmds, err)
			}
		case []any:
			objects := true
			for _, e := range x {
				if _, ok := e.(map[string]any); !ok {
					objects = false
				}
			}
			if objects != (err == nil) {
				t.Fatalf("array %q: %q, %v", body, cmds, err)
			}
			if err == nil && len(cmds) != len(x) {
				t.Fatalf("array of %d: %d commands", len(x), len(cmds))
			}
		default:
			if err == nil {
				t.Fatalf("%q (valid JSON: %v) taken as %q", body, valid, cmds)
			}
		}
		for _, c := range cmds {
			var m map[string]any
			if json.Unmarshal(c, &m) != nil || m == nil {
				t.Fatalf("command %q of %q is not a JSON object", c, body)
			}
		}
	})
}
