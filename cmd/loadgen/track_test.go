//go:build linux

package main

import "testing"

func TestTrackerGapsAndDups(t *testing.T) {
	t.Parallel()
	type ev struct {
		kind   string // "start", "msg"
		sub    string
		topic  string
		offset uint64
	}
	tests := []struct {
		name       string
		events     []ev
		gaps, dups uint64
	}{
		{"in order from subscribed", []ev{{"start", "", "a", 0}, {"msg", "", "a", 1}, {"msg", "", "a", 2}, {"msg", "", "a", 3}}, 0, 0},
		{"resumes after a non-zero position", []ev{{"start", "", "a", 41}, {"msg", "", "a", 42}}, 0, 0},
		{"first message missing", []ev{{"start", "", "a", 0}, {"msg", "", "a", 2}}, 1, 0},
		{"gap of three", []ev{{"start", "", "a", 0}, {"msg", "", "a", 1}, {"msg", "", "a", 5}, {"msg", "", "a", 6}}, 3, 0},
		{"duplicate", []ev{{"start", "", "a", 0}, {"msg", "", "a", 1}, {"msg", "", "a", 1}, {"msg", "", "a", 2}}, 0, 1},
		{"old offset after a jump counts as duplicate", []ev{{"start", "", "a", 0}, {"msg", "", "a", 3}, {"msg", "", "a", 2}}, 2, 1},
		{"topics are independent", []ev{{"start", "", "a", 0}, {"start", "", "b", 10}, {"msg", "", "a", 1}, {"msg", "", "b", 11}, {"msg", "", "a", 2}, {"msg", "", "b", 13}}, 1, 0},
		{"wildcard stream starts at its first message", []ev{{"msg", "p.*", "p.x", 7}, {"msg", "p.*", "p.x", 8}, {"msg", "p.*", "p.y", 1}}, 0, 0},
		{"same topic through two subscriptions is two streams", []ev{{"start", "", "p.x", 0}, {"msg", "", "p.x", 1}, {"msg", "p.*", "p.x", 1}, {"msg", "", "p.x", 2}, {"msg", "p.*", "p.x", 2}}, 0, 0},
		{"reset moves the position", []ev{{"start", "", "a", 0}, {"msg", "", "a", 1}, {"start", "", "a", 0}, {"msg", "", "a", 1}}, 0, 0},
		{"reset on a wildcard stream", []ev{{"msg", "p.>", "p.x", 5}, {"start", "p.>", "p.x", 0}, {"msg", "p.>", "p.x", 1}}, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var tr tracker
			for _, e := range tt.events {
				if e.kind == "start" {
					tr.start([]byte(e.sub), []byte(e.topic), e.offset)
				} else {
					tr.observe([]byte(e.sub), []byte(e.topic), e.offset)
				}
			}
			if tr.gaps != tt.gaps || tr.dups != tt.dups {
				t.Fatalf("gaps, dups = %d, %d; want %d, %d", tr.gaps, tr.dups, tt.gaps, tt.dups)
			}
		})
	}
}

func TestTrackerObserveReturns(t *testing.T) {
	t.Parallel()
	var tr tracker
	tr.start(nil, []byte("a"), 0)
	if g, d := tr.observe(nil, []byte("a"), 4); g != 3 || d {
		t.Fatalf("observe = %d, %v; want 3, false", g, d)
	}
	if g, d := tr.observe(nil, []byte("a"), 4); g != 0 || !d {
		t.Fatalf("observe = %d, %v; want 0, true", g, d)
	}
	if tr.msgs != 2 {
		t.Fatalf("msgs = %d", tr.msgs)
	}
}

func TestTrackerObserveDoesNotAllocate(t *testing.T) {
	var tr tracker
	topic, sub := []byte("prices.eur.usd"), []byte("prices.*.usd")
	tr.start(nil, topic, 0)
	tr.start(sub, topic, 0)
	off := uint64(0)
	allocs := testing.AllocsPerRun(1000, func() {
		off++
		tr.observe(nil, topic, off)
		tr.observe(sub, topic, off)
	})
	if allocs != 0 {
		t.Fatalf("observe allocates %.1f times per call pair", allocs)
	}
}
