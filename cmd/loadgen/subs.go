//go:build linux

package main

import (
	"fmt"
	"strconv"
	"strings"
)

// subSpec says what connection i subscribes to and which topics the
// publisher cycles through, as a rule rather than a list, so that workers
// and the coordinator agree on it from a few fields.
type subSpec struct {
	// Kind is "one" (every connection subscribes to Topic), "spread"
	// (connection i subscribes to Per topics Prefix<(i*Per+j) mod Topics>)
	// or "wildcard" (even connections prices.*.<ccy>, odd ones
	// prices.i<k>.>, over Topics topics prices.i<k>.<ccy>).
	Kind   string `json:"kind"`
	Topic  string `json:"topic,omitempty"`
	Prefix string `json:"prefix,omitempty"`
	Topics int    `json:"topics,omitempty"`
	Per    int    `json:"per,omitempty"`
}

// currencies are the last segment of the wildcard scenario's topics.
var currencies = []string{"usd", "eur", "gbp", "jpy", "chf", "cad", "aud", "nzd", "sek", "nok"}

// instruments is how many instruments the wildcard scenario's topics have.
func (s subSpec) instruments() int { return max(1, s.Topics/len(currencies)) }

// patterns returns what connection i subscribes to.
func (s subSpec) patterns(i int) []string {
	switch s.Kind {
	case "one":
		return []string{s.Topic}
	case "spread":
		out := make([]string, s.Per)
		for j := range out {
			out[j] = s.Prefix + strconv.Itoa((i*s.Per+j)%s.Topics)
		}
		return out
	case "wildcard":
		if i%2 == 0 {
			return []string{"prices.*." + currencies[(i/2)%len(currencies)]}
		}
		return []string{"prices.i" + strconv.Itoa((i/2)%s.instruments()) + ".>"}
	}
	return nil
}

// numTopics is the size of the topic universe the publisher cycles through.
func (s subSpec) numTopics() int {
	switch s.Kind {
	case "spread":
		return s.Topics
	case "wildcard":
		return s.instruments() * len(currencies)
	}
	return 1
}

// topic returns the publisher's n-th topic (n mod numTopics).
func (s subSpec) topic(n int) string {
	switch s.Kind {
	case "spread":
		return s.Prefix + strconv.Itoa(n%s.Topics)
	case "wildcard":
		n %= s.numTopics()
		return "prices.i" + strconv.Itoa(n/len(currencies)) + "." + currencies[n%len(currencies)]
	}
	return s.Topic
}

// validate reports a spec that cannot work.
func (s subSpec) validate() error {
	switch s.Kind {
	case "one":
		if s.Topic == "" {
			return fmt.Errorf("empty topic")
		}
	case "spread":
		if s.Topics <= 0 || s.Per <= 0 || s.Per > s.Topics {
			return fmt.Errorf("-topics must be positive and -subs-per-conn between 1 and -topics (got %d and %d)", s.Topics, s.Per)
		}
	case "wildcard":
		if s.Topics < len(currencies) {
			return fmt.Errorf("-topics must be at least %d for the wildcard scenario (got %d)", len(currencies), s.Topics)
		}
	default:
		return fmt.Errorf("unknown subscription kind %q", s.Kind)
	}
	return nil
}

// deliveriesPerTopic returns, for each topic index of the universe, how
// many deliveries one message on it makes when connections 0..conns-1 are
// subscribed (one per matching subscription).
func (s subSpec) deliveriesPerTopic(conns int) []int {
	out := make([]int, s.numTopics())
	// Count each distinct pattern once, then match it against every topic.
	count := map[string]int{}
	for i := 0; i < conns; i++ {
		for _, p := range s.patterns(i) {
			count[p]++
		}
	}
	for p, c := range count {
		for t := range out {
			if match(p, s.topic(t)) {
				out[t] += c
			}
		}
	}
	return out
}

// match reports whether topic matches pattern with NATS semantics: `*`
// is exactly one segment, `>` one or more trailing segments.
func match(pattern, topic string) bool {
	for {
		var ps, ts string
		ps, pattern, _ = strings.Cut(pattern, ".")
		if ps == ">" {
			return topic != ""
		}
		if topic == "" && ps != "" {
			return false
		}
		ts, topic, _ = strings.Cut(topic, ".")
		if ps != "*" && ps != ts {
			return false
		}
		if pattern == "" {
			return topic == ""
		}
		if topic == "" {
			return false
		}
	}
}
