//go:build linux

package main

import (
	"strings"
)

// clusterPhaseNames are the phases of the cluster scenario, in the order
// it runs them: one in-memory node, one node over Redis, and two nodes
// over Redis with the publisher on the first and the subscribers on the
// second.
var clusterPhaseNames = []string{"memory", "redis", "cross"}

// parseClusterFlags reads -cluster-phases and -batches, and gives the
// cluster scenario's spread subscriptions one topic per connection
// unless -subs-per-conn says otherwise.
func (c *config) parseClusterFlags(raw map[string]*string) error {
	phases, err := parsePhases(*raw["cluster-phases"])
	if err != nil {
		return err
	}
	c.clusterPhases = phases
	if v := *raw["batches"]; v != "" {
		if c.batches, err = parseIntList("batches", v); err != nil {
			return err
		}
	}
	if c.scenario == "cluster" && c.topics > 1 && c.perConn == 0 {
		c.perConn = 1
	}
	return nil
}

// parsePhases parses a comma-separated list of cluster phases into
// canonical order; empty means all of them.
func parsePhases(s string) ([]string, error) {
	if strings.TrimSpace(s) == "" {
		return append([]string(nil), clusterPhaseNames...), nil
	}
	want := map[string]bool{}
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		known := false
		for _, n := range clusterPhaseNames {
			known = known || f == n
		}
		if !known {
			return nil, badFlag("cluster-phases", "%q: want a comma-separated list of %s", f, strings.Join(clusterPhaseNames, ", "))
		}
		if want[f] {
			return nil, badFlag("cluster-phases", "%q is listed twice", f)
		}
		want[f] = true
	}
	var out []string
	for _, n := range clusterPhaseNames {
		if want[n] {
			out = append(out, n)
		}
	}
	return out, nil
}

// hasPhase reports whether the cluster scenario runs the named phase.
func (c config) hasPhase(name string) bool {
	for _, p := range c.clusterPhases {
		if p == name {
			return true
		}
	}
	return false
}

// clusterSpec is what the cluster scenario's subscribers subscribe to:
// one topic, or with -topics above 1 -subs-per-conn topics each, spread
// over bench.cluster.0 … bench.cluster.<topics-1>.
func (c config) clusterSpec() subSpec {
	if c.topics > 1 {
		return subSpec{Kind: "spread", Prefix: "bench.cluster.", Topics: c.topics, Per: max(c.perConn, 1)}
	}
	return subSpec{Kind: "one", Topic: "bench.cluster"}
}

// validateCluster checks the publisher flags and the cluster scenario's
// own flags against each other.
func (c config) validateCluster() error {
	switch {
	case c.batch < 0:
		return badFlag("batch", "%d: must not be negative (0 sends one batch per -batch-interval)", c.batch)
	case c.batch > maxBatch:
		return badFlag("batch", "%d: the broker takes at most %d messages per batch", c.batch, maxBatch)
	case c.publishers < 1 || c.publishers > 1024:
		return badFlag("publishers", "%d: between 1 and 1024 requests in flight", c.publishers)
	}
	for _, b := range c.batches {
		if b > maxBatch {
			return badFlag("batches", "%d: the broker takes at most %d messages per batch", b, maxBatch)
		}
	}
	all := len(c.clusterPhases) == len(clusterPhaseNames)
	if c.scenario != "cluster" {
		for _, f := range []struct {
			name string
			set  bool
		}{{"cluster-phases", !all}, {"batches", len(c.batches) > 0}, {"redis-cluster", c.redisCluster}} {
			if f.set {
				return badFlag(f.name, "only the cluster scenario takes it")
			}
		}
		return nil
	}
	cross := c.hasPhase("cross")
	switch {
	case len(c.rates) > 0 && !cross:
		return badFlag("rates", "the cluster ladder runs the cross phase: add cross to -cluster-phases")
	case len(c.batches) > 0 && !cross:
		return badFlag("batches", "the batch sweep runs the cross phase: add cross to -cluster-phases")
	case len(c.batches) > 0 && len(c.rates) > 0:
		return badFlag("batches", "give -batches (at -rate) or -rates, not both")
	case c.redisCluster && !cross && !c.hasPhase("redis"):
		return badFlag("redis-cluster", "only the redis and cross phases use Redis")
	}
	if c.topics > 1 {
		if err := c.clusterSpec().validate(); err != nil {
			return badFlag("topics", "%v", err)
		}
	} else if c.perConn > 1 {
		return badFlag("subs-per-conn", "the cluster scenario spreads subscriptions only over -topics above 1")
	}
	return nil
}
