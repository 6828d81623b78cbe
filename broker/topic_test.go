package broker

import (
	"errors"
	"strings"
	"testing"

	"github.com/tidings-io/tidings/protocol"
)

// segments returns n segments of one byte, joined by '.': 2n-1 bytes.
func segments(n int) string {
	return strings.Repeat("a.", n-1) + "a"
}

func TestValidateTopic(t *testing.T) {
	t.Parallel()
	tests := []struct {
		topic  string
		detail string // substring of the error; "" means valid
	}{
		{"a", ""},
		{"prices.eur.usd", ""},
		{"chat:room-42", ""},
		{"A_b-c:D.0_9", ""},
		{"-._.:", ""},
		{strings.Repeat("x", 255), ""},
		{segments(128), ""}, // 255 bytes, 128 segments

		{"", "empty"},
		{strings.Repeat("x", 256), "longer than 255 bytes"},
		{segments(128) + "b", "longer than 255 bytes"},
		{strings.Repeat("*", 300), "longer than 255 bytes"},
		{"a..b", "empty segment at byte 2"},
		{".a", "empty segment at byte 0"},
		{"a.", "empty segment at byte 2"},
		{".", "empty segment"},
		{"..", "empty segment"},
		{"a b", "invalid character ' ' at byte 1"},
		{" a", "invalid character ' '"},
		{"a\x00", `invalid character '\x00' at byte 1`},
		{"a\tb", `invalid character '\t'`},
		{"a\nb", `invalid character '\n'`},
		{"prix.€", "invalid character '€' at byte 5"},
		{"é", "invalid character 'é'"},
		{"a\xffb", "invalid byte 0xff at byte 1"},
		{"a\xe2\x82", "invalid byte 0xe2"},
		{"a/b", "invalid character '/'"},
		{"a#b", "invalid character '#'"},
		{`a"b`, `invalid character '"'`},
		{"a,b", "invalid character ','"},
		{"*", "wildcards are not allowed here"},
		{">", "wildcards are not allowed here"},
		{"a.*", "wildcards are not allowed here"},
		{"a.>", "wildcards are not allowed here"},
		{"a.*.c", "wildcards are not allowed here"},
		{"a*", "wildcards are not allowed here"},
		{"a.>.b", "wildcards are not allowed here"},
	}
	for _, tt := range tests {
		t.Run(testName(tt.topic), func(t *testing.T) {
			t.Parallel()
			err := ValidateTopic(tt.topic)
			checkTopicErr(t, tt.topic, err, tt.detail)
		})
	}
}

func TestValidatePattern(t *testing.T) {
	t.Parallel()
	tests := []struct {
		pattern  string
		wildcard bool
		detail   string // substring of the error; "" means valid
	}{
		{"a", false, ""},
		{"prices.eur.usd", false, ""},
		{"chat:room-42", false, ""},
		{"*", true, ""},
		{">", true, ""},
		{"a.>", true, ""},
		{"a.*", true, ""},
		{"*.a", true, ""},
		{"a.*.c", true, ""},
		{"prices.*.usd", true, ""},
		{"*.*.>", true, ""},
		{"*.>", true, ""},
		{strings.Repeat("x", 253) + ".>", true, ""},
		{strings.Repeat("*.", 127) + ">", true, ""}, // 255 bytes

		{"", false, "empty"},
		{strings.Repeat("x", 254) + ".>", false, "longer than 255 bytes"},
		{strings.Repeat("*.", 128) + ">", false, "longer than 255 bytes"},
		{"a..b", false, "empty segment at byte 2"},
		{".a", false, "empty segment at byte 0"},
		{"a.", false, "empty segment at byte 2"},
		{"a.*.", false, "empty segment at byte 4"},
		{".>", false, "empty segment at byte 0"},
		{"a b.*", false, "invalid character ' ' at byte 1"},
		{"a.\x00", false, `invalid character '\x00' at byte 2`},
		{"a.ü.>", false, "invalid character 'ü' at byte 2"},
		{"a.\xc3", false, "invalid byte 0xc3 at byte 2"},
		{"a.*b", false, "wildcard '*' must be a whole segment"},
		{"a.b*", false, "wildcard '*' must be a whole segment"},
		{"a.**", false, "wildcard '*' must be a whole segment"},
		{"a.>b", false, "wildcard '>' must be a whole segment"},
		{"a>", false, "wildcard '>' must be a whole segment"},
		{">>", false, "wildcard '>' must be a whole segment"},
		{"a.>.b", false, "wildcard '>' must be the last segment"},
		{">.a", false, "wildcard '>' must be the last segment"},
		{">.>", false, "wildcard '>' must be the last segment"},
		{">.*", false, "wildcard '>' must be the last segment"},
		{"a.>.", false, "wildcard '>' must be the last segment"},
	}
	for _, tt := range tests {
		t.Run(testName(tt.pattern), func(t *testing.T) {
			t.Parallel()
			wildcard, err := ValidatePattern(tt.pattern)
			checkTopicErr(t, tt.pattern, err, tt.detail)
			if wildcard != tt.wildcard {
				t.Errorf("ValidatePattern(%q) wildcard = %v, want %v", tt.pattern, wildcard, tt.wildcard)
			}
		})
	}
}

// checkTopicErr checks err against the expected detail ("" for valid).
func checkTopicErr(t *testing.T, input string, err error, detail string) {
	t.Helper()
	if detail == "" {
		if err != nil {
			t.Fatalf("%q: unexpected error %v", testName(input), err)
		}
		return
	}
	if err == nil {
		t.Fatalf("%q: got nil error, want one containing %q", testName(input), detail)
	}
	if !errors.Is(err, ErrInvalidTopic) {
		t.Errorf("error %v does not wrap ErrInvalidTopic", err)
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, "topic is invalid: ") {
		t.Errorf("error %q does not start with the sentinel's message", msg)
	}
	if ce := ClientError(err); ce.Code != protocol.CodeBadRequest || ce.Message != msg {
		t.Errorf("the client is told %s %q, want %s %q", ce.Code, ce.Message, protocol.CodeBadRequest, msg)
	}
	if !strings.Contains(msg, detail) {
		t.Errorf("error %q does not contain %q", msg, detail)
	}
	if len(input) > 8 && strings.Contains(msg, input) {
		t.Errorf("error %q echoes the input", msg)
	}
}

// testName shortens long inputs for subtest names and messages.
func testName(s string) string {
	if len(s) > 40 {
		return s[:20] + "…" + s[len(s)-10:]
	}
	return s
}

func TestValidateNoAllocs(t *testing.T) {
	// Not parallel: AllocsPerRun counts every goroutine's allocations.
	topic := "prices.eur-usd.spot:bid_" + strings.Repeat("x", 200)
	if n := testing.AllocsPerRun(100, func() {
		if ValidateTopic(topic) != nil {
			t.Fatal("invalid")
		}
	}); n != 0 {
		t.Errorf("ValidateTopic allocates %v times per call, want 0", n)
	}
	if n := testing.AllocsPerRun(100, func() {
		if w, err := ValidatePattern("prices.*.usd.>"); err != nil || !w {
			t.Fatal("invalid")
		}
	}); n != 0 {
		t.Errorf("ValidatePattern allocates %v times per call, want 0", n)
	}
}

func BenchmarkValidateTopic(b *testing.B) {
	b.ReportAllocs()
	topic := "prices.eur.usd.spot"
	for b.Loop() {
		if ValidateTopic(topic) != nil {
			b.Fatal("invalid")
		}
	}
}

func TestMatchAgreesWithThePatternIndex(t *testing.T) {
	t.Parallel()
	patterns := []string{"a.b", "a.*", "a.>", "*.b", "*", ">", "a.*.c", "a.b.>", "*.*"}
	topics := []string{"a", "b", "a.b", "a.c", "a.b.c", "x.b", "a.b.c.d", "a.x.c"}
	for _, p := range patterns {
		x := newPatternIndex[int](0)
		x.insert(p, 1)
		for _, topic := range topics {
			indexed := false
			x.match(topic, func(string, []int) { indexed = true })
			if got := Match(p, topic); got != indexed {
				t.Errorf("Match(%q, %q) = %v, the pattern index says %v", p, topic, got, indexed)
			}
		}
	}
}
