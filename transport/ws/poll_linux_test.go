package ws

import (
	"net"
	"testing"
)

// TestPollerArmsOnlyOnRearm checks that a socket added to the set reports
// no event until it is re-armed, and then exactly one: a session's first
// park arms it, so an arm at add as well would give two events for the
// same bytes and start a reader that waits on an empty socket.
func TestPollerArmsOnlyOnRearm(t *testing.T) {
	p, err := newPoller()
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	near, far := tcpPair(t)
	raw, err := near.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	const id = 7
	if err := p.add(raw, id); err != nil {
		t.Fatalf("add: %v", err)
	}
	// A loopback write has reached the near end's queue when it returns.
	if _, err := far.Write([]byte("bytes")); err != nil {
		t.Fatal(err)
	}
	if got := pollNow(t, p); len(got) != 0 {
		t.Fatalf("events %v before the first rearm, want none", got)
	}
	if err := p.rearm(raw, id); err != nil {
		t.Fatalf("rearm: %v", err)
	}
	if got := pollNow(t, p); len(got) != 1 || got[0] != id {
		t.Fatalf("events %v after rearm, want [%d]", got, id)
	}
	if got := pollNow(t, p); len(got) != 0 {
		t.Fatalf("events %v after the armed event, want none until the next rearm", got)
	}
}

// pollNow returns the ids of the events ready now, without waiting.
func pollNow(t *testing.T, p *poller) []uint64 {
	t.Helper()
	var ids []uint64
	if _, err := p.wait(0, func(id uint64) { ids = append(ids, id) }); err != nil {
		t.Fatalf("wait: %v", err)
	}
	return ids
}

// tcpPair returns the two ends of a loopback TCP connection, closed when
// the test ends.
func tcpPair(t *testing.T) (near, far net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	far, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = far.Close() })
	near, err = ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = near.Close() })
	return near, far
}
