package sse

import (
	"testing"

	"github.com/tidings-io/tidings/broker"
)

// FuzzCursor feeds Last-Event-IDs to parseCursor: none may panic, what it
// accepts names only exact topics, and the cursor a stream writes for
// those positions parses back to them.
func FuzzCursor(f *testing.F) {
	var c cursor
	c.set("a.b", broker.Position{Offset: 7, Epoch: "e1"})
	c.set("chat", broker.Position{Offset: 1 << 40, Epoch: ""})
	f.Add(c.String())
	for _, seed := range []string{"", "garbage!", "e30", "eyJhIjoxfQ", "bnVsbA", "eyJhLioiOnsib2Zmc2V0IjoxLCJlcG9jaCI6IngifX0"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, id string) {
		pos, ok := parseCursor(id)
		if !ok {
			if pos != nil {
				t.Fatalf("refused %q with positions %v", id, pos)
			}
			return
		}
		var again cursor
		for topic, p := range pos {
			if wild, err := broker.ValidatePattern(topic); err != nil || wild {
				t.Fatalf("accepted %q naming %q (wildcard %v, %v)", id, topic, wild, err)
			}
			again.set(topic, p)
		}
		if len(pos) == 0 {
			return
		}
		back, ok := parseCursor(again.String())
		if !ok || len(back) != len(pos) {
			t.Fatalf("the cursor of %v does not parse back: %v %v", pos, back, ok)
		}
		for topic, p := range pos {
			if back[topic] != p {
				t.Fatalf("%s: %v became %v", topic, p, back[topic])
			}
		}
	})
}
