package ws

import (
	"bytes"
	"io"
	"net"
	"testing"

	"github.com/tidings-io/tidings/broker"
	"github.com/tidings-io/tidings/store/memory"
)

// A pooled writer's turn writes at most about its bound for a session;
// what is left goes on in order, none lost, none repeated.
func TestSplitBytesBoundsATurn(t *testing.T) {
	part := func(n int, b byte) []byte { return bytes.Repeat([]byte{b}, n) }
	const limit = 256 << 10
	frames := [][]byte{part(100<<10, 'a'), part(100<<10, 'b'), part(100<<10, 'c'), part(10, 'd')}
	now, rest := splitBytes(frames, limit)
	if len(now) != 3 || len(rest) != 1 || rest[0][0] != 'd' {
		t.Fatalf("split into %d and %d parts, want the three that reach the bound and the rest", len(now), len(rest))
	}
	if cap(now) != len(now) {
		t.Fatal("appending to what is written now could overwrite the rest")
	}
	if now, rest := splitBytes(frames[:2], limit); len(now) != 2 || rest != nil {
		t.Fatalf("under the bound: %d and %d parts, want all now", len(now), len(rest))
	}
	if now, rest := splitBytes([][]byte{part(1<<20, 'x'), part(1, 'y')}, limit); len(now) != 1 || len(rest) != 1 {
		t.Fatalf("one large part: %d and %d parts, want it alone now", len(now), len(rest))
	}
}

// A session with a large backlog takes turns with the other sessions of
// the writer pool: each turn writes at most maxTurnBytes of it and queues
// it again, as a backlog, so that a session woken by new frames meanwhile
// goes first; until its batch is written, all of it, in order.
func TestABacklogTakesTurnsWithOtherSessions(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()

	store := memory.New(memory.Config{})
	defer store.Close()
	srv := New(Config{}, broker.New(broker.Config{}, store, Encoder{}))
	c := srv.newConn(server, "test", "", nil)
	defer c.sess.Close()
	c.sess.Outbox().Drain(nil) // the welcome
	loop := &eventLoop{srv: srv}
	loop.writeq.ready = make(chan struct{}, 2)
	c.loop = loop
	c.writer.start() // the test runs c's writer, one turn at a time

	const frameBytes = 16 << 10
	perTurn := maxTurnBytes / frameBytes
	turns := 4
	frames := turns * perTurn
	var want bytes.Buffer
	for i := range frames {
		f := bytes.Repeat([]byte{byte('a' + i%26)}, frameBytes)
		want.Write(f)
		if !c.sess.Send(f) {
			t.Fatalf("frame %d refused", i)
		}
	}
	got := make(chan []byte, 1)
	go func() {
		b := make([]byte, want.Len())
		n, _ := io.ReadFull(client, b)
		got <- b[:n]
	}()

	for turn := 1; turn < turns; turn++ {
		c.turn()
		<-loop.writeq.ready // c queued again: its turn is over
		if left, want := len(c.carry), frames-turn*perTurn; left != want {
			t.Fatalf("after turn %d: %d frames left, want %d", turn, left, want)
		}
		woken := &conn{} // a session woken by new frames meanwhile
		loop.writeq.push(woken)
		<-loop.writeq.ready
		if first := loop.writeq.pop(); first != woken {
			t.Fatalf("turn %d: the session with the backlog went ahead of one woken by new frames", turn)
		}
		if next := loop.writeq.pop(); next != c {
			t.Fatalf("turn %d: the session with the backlog was not queued again", turn)
		}
	}
	c.turn() // the last part
	if b := <-got; !bytes.Equal(b, want.Bytes()) {
		t.Fatalf("the client read %d bytes, not the %d queued, in order", len(b), want.Len())
	}
}
