package auth_test

import (
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/tidings-io/tidings/auth"
	"github.com/tidings-io/tidings/broker"
	"github.com/tidings-io/tidings/internal/testkit"
)

func TestCovers(t *testing.T) {
	t.Parallel()
	tests := []struct {
		allowed []string
		pattern string
		want    bool
	}{
		// A token for prices.> cannot subscribe
		// news.x nor >.
		{[]string{"prices.>"}, "news.x", false},
		{[]string{"prices.>"}, ">", false},
		{[]string{"prices.>"}, "*", false},
		{[]string{"prices.>"}, "*.eur", false},
		{[]string{"prices.>"}, "prices", false},
		{[]string{"prices.>"}, "prices.eur", true},
		{[]string{"prices.>"}, "prices.eur.usd", true},
		{[]string{"prices.>"}, "prices.*", true},
		{[]string{"prices.>"}, "prices.*.usd", true},
		{[]string{"prices.>"}, "prices.>", true},
		{[]string{"prices.>"}, "prices.eur.>", true},
		{[]string{">"}, ">", true},
		{[]string{">"}, "a.*.>", true},
		{[]string{"*"}, ">", false},
		{[]string{"*"}, "*", true},
		{[]string{"*", "*.>"}, ">", true}, // ">" is "*" or "*.>"
		{[]string{"a.*", "a.*.>"}, "a.>", true},
		{[]string{"a.*"}, "a.>", false},
		{[]string{"a.*.>"}, "a.>", false},
		{[]string{"a.b", "a.c"}, "a.*", false}, // a.d is not allowed
		{[]string{"a.b"}, "a.b", true},
		{[]string{"a.b"}, "a.b.c", false},
		{[]string{"a.b.c"}, "a.b", false},
		{[]string{"a.*.c"}, "a.b.c", true},
		{[]string{"a.*.c"}, "a.*.c", true},
		{[]string{"a.*.c"}, "a.*.*", false},
		{[]string{"a.*.*"}, "a.*.c", true},
		{[]string{"a.b.*", "a.*.c"}, "a.*.c", true},
		{[]string{"a.b.*", "a.*.c"}, "a.b.>", false},
		{[]string{"a.b.>", "a.b"}, "a.b", true},
		{nil, "a", false},
		{[]string{">"}, "a..b", false}, // invalid patterns are covered by nothing
	}
	for _, tt := range tests {
		if got := auth.Covers(tt.allowed, tt.pattern); got != tt.want {
			t.Errorf("Covers(%q, %q) = %v, want %v", tt.allowed, tt.pattern, got, tt.want)
		}
	}
}

// TestCoversAgreesWithEnumeration checks Covers against its definition on
// random small patterns: pattern is covered exactly when every topic it
// matches, up to one segment longer than any pattern, over an alphabet
// that includes a literal no pattern names, is matched by an allowed
// pattern.
func TestCoversAgreesWithEnumeration(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(6, 6))
	segs := []string{"a", "b", "*", ">"}
	randPattern := func() string {
		n := 1 + rng.IntN(3)
		parts := make([]string, n)
		for i := range parts {
			s := segs[rng.IntN(len(segs))]
			if s == ">" && i != n-1 {
				s = "*"
			}
			parts[i] = s
		}
		return strings.Join(parts, ".")
	}
	// Every topic of 1 to 5 segments over a, b and c (c is named by no
	// pattern, so it stands for every other literal).
	topics := testkit.Dotted([]string{"a", "b", "c"}, 5)
	for i := 0; i < 3000; i++ {
		allowed := make([]string, 1+rng.IntN(3))
		for j := range allowed {
			allowed[j] = randPattern()
		}
		pattern := randPattern()
		want := true
		for _, topic := range topics {
			if !broker.Match(pattern, topic) {
				continue
			}
			if !auth.MatchAny(allowed, topic) {
				want = false
				break
			}
		}
		if got := auth.Covers(allowed, pattern); got != want {
			t.Fatalf("Covers(%q, %q) = %v, want %v by enumeration", allowed, pattern, got, want)
		}
	}
}
