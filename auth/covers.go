package auth

import (
	"strings"

	"github.com/tidings-io/tidings/broker"
)

// Covers reports whether every topic that pattern (a topic or a wildcard
// pattern) can match is matched by at least one of allowed, which must be
// valid patterns. It works on segments, never by enumerating topics:
//
//   - "prices.>" covers "prices.eur", "prices.*" and "prices.eur.>", but
//     not ">" nor "news.x";
//   - "a.*" covers "a.b" and "a.*", but not "a.>" (which also matches
//     "a.b.c");
//   - together, "a.*" and "a.*.>" cover "a.>", which neither does alone.
//
// An invalid pattern is covered by nothing.
func Covers(allowed []string, pattern string) bool {
	if _, err := broker.ValidatePattern(pattern); err != nil {
		return false
	}
	as := make([][]string, 0, len(allowed))
	for _, a := range allowed {
		as = append(as, strings.Split(a, "."))
	}
	return covers(as, strings.Split(pattern, "."))
}

// covers reports whether the union of the patterns as (split in segments)
// matches every topic that r matches. Each call strips one segment from
// every pattern it recurses with, so it ends after at most as many levels
// as the longest pattern has segments.
func covers(as [][]string, r []string) bool {
	if len(r) == 0 {
		// The topics of r end here; a pattern that also ends matches
		// them. (">" needs at least one more segment.)
		for _, a := range as {
			if len(a) == 0 {
				return true
			}
		}
		return false
	}
	for _, a := range as {
		if len(a) > 0 && a[0] == ">" {
			return true // r has at least one segment left: ">" takes them all
		}
	}
	switch r[0] {
	case ">":
		// ">" matches one or more segments: one ("*") or more ("*.>").
		return covers(as, []string{"*"}) && covers(as, []string{"*", ">"})
	case "*":
		// Infinitely many segments: only "*" covers them all (a literal
		// covers one; the ones no literal names are covered by "*" alone).
		return covers(rest(as, func(seg string) bool { return seg == "*" }), r[1:])
	default:
		return covers(rest(as, func(seg string) bool { return seg == "*" || seg == r[0] }), r[1:])
	}
}

// rest returns the patterns of as whose first segment passes keep, without
// that segment.
func rest(as [][]string, keep func(string) bool) [][]string {
	var out [][]string
	for _, a := range as {
		if len(a) > 0 && keep(a[0]) {
			out = append(out, a[1:])
		}
	}
	return out
}
