package config

import (
	"slices"
	"strings"
)

// EnvWarning is a TIDINGS_* environment variable that sets nothing.
type EnvWarning struct {
	// Name is the variable.
	Name string
	// Closest is the known variable nearest to it by edit distance.
	Closest string
}

// UnknownEnv returns the variables of environ (NAME=value entries, as
// os.Environ gives them) that start with TIDINGS_ but set no option, in
// name order, each with the known variable closest to it: a misspelt
// variable is otherwise silently ignored.
func UnknownEnv(environ []string) []EnvWarning {
	known := make([]string, 0, len(options)+1)
	for _, o := range options {
		known = append(known, o.Env())
	}
	known = append(known, EnvConfig)
	var out []EnvWarning
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, "TIDINGS_") || slices.Contains(known, name) {
			continue
		}
		out = append(out, EnvWarning{Name: name, Closest: closest(name, known)})
	}
	slices.SortFunc(out, func(a, b EnvWarning) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// closest returns the candidate nearest to s by edit distance (the first
// of equals).
func closest(s string, candidates []string) string {
	best, bestD := "", -1
	for _, c := range candidates {
		if d := distance(s, c); bestD < 0 || d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

// suggest is ": did you mean X?" when a candidate is near s (within a
// third of its length), else "".
func suggest(s string, candidates []string) string {
	c := closest(s, candidates)
	if c == "" || distance(s, c) > max(2, len(s)/3) {
		return ""
	}
	return ": did you mean " + c + "?"
}

// distance is the Levenshtein edit distance of a and b, in bytes:
// insertions, deletions and substitutions.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
