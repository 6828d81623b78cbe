package ws

import "testing"

func TestWriteQueueIsFIFOAndLetsItsArrayGo(t *testing.T) {
	q := writeQueue{ready: make(chan struct{}, 2)}
	if c := q.pop(); c != nil {
		t.Fatalf("pop on an empty queue = %p, want nil", c)
	}
	conns := make([]*conn, 3*maxIdleQueue)
	for i := range conns {
		conns[i] = &conn{}
		q.push(conns[i])
	}
	if n := len(q.ready); n != 2 {
		t.Fatalf("%d wake tokens after %d pushes, want 2 (one per writer)", n, len(conns))
	}
	for i, want := range conns {
		if got := q.pop(); got != want {
			t.Fatalf("pop %d = %p, want %p (FIFO)", i, got, want)
		}
	}
	if c := q.pop(); c != nil {
		t.Fatalf("pop after draining = %p, want nil", c)
	}
	if cap(q.fresh.items) != 0 {
		t.Fatalf("empty queue keeps an array of %d, want none above %d", cap(q.fresh.items), maxIdleQueue)
	}
	q.push(conns[0])
	if got := q.pop(); got != conns[0] {
		t.Fatalf("pop after reuse = %p, want %p", got, conns[0])
	}
}

// Sessions going on with a backlog take every other turn while sessions
// woken by new frames wait: neither kind waits for all of the other.
func TestWriteQueueAlternatesFreshSessionsAndBacklogs(t *testing.T) {
	q := writeQueue{ready: make(chan struct{}, 2)}
	fresh := []*conn{{}, {}, {}}
	backlog := []*conn{{}, {}}
	for _, c := range backlog {
		q.pushBacklog(c)
	}
	for _, c := range fresh {
		q.push(c)
	}
	want := []*conn{fresh[0], backlog[0], fresh[1], backlog[1], fresh[2]}
	for i, w := range want {
		if got := q.pop(); got != w {
			t.Fatalf("pop %d = %p, want %p: fresh sessions and backlogs take turns", i, got, w)
		}
	}
	if c := q.pop(); c != nil {
		t.Fatalf("pop after draining = %p, want nil", c)
	}
	// A backlog alone is served at once, as are fresh sessions alone.
	q.pushBacklog(backlog[0])
	if got := q.pop(); got != backlog[0] {
		t.Fatalf("a lone backlog: pop = %p, want %p", got, backlog[0])
	}
}
