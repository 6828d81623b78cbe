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
	if cap(q.items) != 0 {
		t.Fatalf("empty queue keeps an array of %d, want none above %d", cap(q.items), maxIdleQueue)
	}
	q.push(conns[0])
	if got := q.pop(); got != conns[0] {
		t.Fatalf("pop after reuse = %p, want %p", got, conns[0])
	}
}
