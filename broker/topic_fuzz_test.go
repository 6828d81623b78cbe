package broker

import (
	"errors"
	"strings"
	"testing"
)

// FuzzTopic checks ValidateTopic and ValidatePattern against a reference
// implementation and against each other, and checks that the pattern index
// agrees with them: a valid topic matches itself, and a valid pattern matches
// a topic built from it.
func FuzzTopic(f *testing.F) {
	for _, s := range []string{
		"", "a", "prices.eur.usd", "chat:room-42", "A_b-c:D.0_9",
		"*", ">", "a.*", "a.>", "a.*.c", "*.*.>", "prices.*.usd",
		"a..b", ".a", "a.", ".", "a b", "a\x00b", "a\tb", "prix.€", "a\xffb",
		"a.*b", "a.>.b", "a>", ">>", "**", "a.**", ">.*",
		strings.Repeat("x", 255), strings.Repeat("x", 256),
		strings.Repeat("*.", 127) + ">", strings.Repeat("a.", 128),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		topicErr := ValidateTopic(s)
		wild, patErr := ValidatePattern(s)

		for _, err := range []error{topicErr, patErr} {
			if err == nil {
				continue
			}
			if !errors.Is(err, ErrInvalidTopic) {
				t.Fatalf("%q: error %v does not wrap ErrInvalidTopic", s, err)
			}
			// The detail quotes at most one character: it never echoes
			// the input.
			if n := len(err.Error()); n > 80 {
				t.Fatalf("%q: error %q is %d bytes long", s, err, n)
			}
		}

		if want := refValid(s, false); (topicErr == nil) != want {
			t.Fatalf("ValidateTopic(%q) = %v, reference says valid=%v", s, topicErr, want)
		}
		if want := refValid(s, true); (patErr == nil) != want {
			t.Fatalf("ValidatePattern(%q) = %v, reference says valid=%v", s, patErr, want)
		}
		if patErr != nil && wild {
			t.Fatalf("ValidatePattern(%q) = (true, %v): wildcard reported with an error", s, patErr)
		}
		if topicErr == nil && (patErr != nil || wild) {
			t.Fatalf("valid topic %q: ValidatePattern = (%v, %v), want (false, nil)", s, wild, patErr)
		}
		if patErr == nil && !wild && topicErr != nil {
			t.Fatalf("valid pattern %q without wildcard is not a valid topic: %v", s, topicErr)
		}
		if patErr == nil && wild != strings.ContainsAny(s, "*>") {
			t.Fatalf("ValidatePattern(%q): wildcard = %v", s, wild)
		}
		if patErr != nil {
			return
		}

		// The pattern matches a topic built by filling its wildcards, and
		// nothing is left once it is removed.
		x := newPatternIndex[int](0)
		if !x.mustInsert(s, 1) {
			t.Fatalf("insert(%q) into a fresh index: want new", s)
		}
		topic := strings.ReplaceAll(strings.ReplaceAll(s, "*", "x"), ">", "y.z")
		if len(topic) <= maxTopicLen {
			if err := ValidateTopic(topic); err != nil {
				t.Fatalf("filled pattern %q: %v", topic, err)
			}
			n := 0
			x.match(topic, func(p string, subs []int) {
				n++
				if p != s || len(subs) != 1 || subs[0] != 1 {
					t.Fatalf("match(%q) reported (%q, %v), want (%q, [1])", topic, p, subs, s)
				}
			})
			if n != 1 {
				t.Fatalf("pattern %q matched topic %q %d times, want 1", s, topic, n)
			}
		}
		if !x.remove(s, 1) || x.len() != 0 || !x.root.isEmpty() {
			t.Fatalf("remove(%q): index not empty", s)
		}
	})
}

// refValid is a slow, obvious implementation of the topic rules of
// PROTOCOL.md, as a reference for the fuzzer.
func refValid(s string, allowWildcards bool) bool {
	if len(s) < 1 || len(s) > 255 {
		return false
	}
	segs := strings.Split(s, ".")
	for i, seg := range segs {
		switch {
		case allowWildcards && seg == "*":
		case allowWildcards && seg == ">" && i == len(segs)-1:
		case seg == "":
			return false
		default:
			for _, r := range seg {
				if !strings.ContainsRune("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_:-", r) {
					return false
				}
			}
		}
	}
	return true
}
