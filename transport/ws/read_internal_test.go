package ws

import (
	"bytes"
	"fmt"
	"net"
	"testing"

	"github.com/gobwas/ws"
	"github.com/tidings-io/tidings/broker"
	"github.com/tidings-io/tidings/session"
	"github.com/tidings-io/tidings/store/memory"
)

// splitScript is a client's frames, masked: single-frame commands with
// each of the three length forms, a fragmented command with a ping and a
// pong between its fragments, and an empty fragment.
func splitScript(big int) (script []byte, answers int) {
	var buf bytes.Buffer
	add := func(fin bool, op ws.OpCode, p []byte) {
		h := ws.Header{Fin: fin, OpCode: op, Masked: true, Mask: ws.NewMask(), Length: int64(len(p))}
		p = bytes.Clone(p)
		ws.Cipher(p, h.Mask, 0)
		_ = ws.WriteHeader(&buf, h)
		buf.Write(p)
	}
	padded := func(ref string, n int) []byte {
		p := []byte(`{"op":"ping","ref":"` + ref + `"}`)
		return append(p, bytes.Repeat([]byte(" "), n-len(p))...)
	}
	add(true, ws.OpText, []byte(`{"op":"ping","ref":"a"}`))
	add(false, ws.OpText, []byte(`{"op":"pi`))
	add(true, ws.OpPing, []byte("hello"))
	add(true, ws.OpPong, []byte("unsolicited"))
	add(false, ws.OpContinuation, nil)
	add(false, ws.OpContinuation, []byte(`ng","ref"`))
	add(true, ws.OpContinuation, []byte(`:"b"}`))
	add(true, ws.OpText, padded("c", 300))
	answers = 4 // pong a, the ping's pong, pong b, pong c
	if big > 0 {
		add(true, ws.OpText, padded("d", big))
		answers++
	}
	return buf.Bytes(), answers
}

// newTestConn returns a session of a real broker and server that is not
// started: a test feeds its reader with consume and reads what it
// queued from its outbox.
func newTestConn(t *testing.T, cfg Config) *conn {
	t.Helper()
	store := memory.New(memory.Config{})
	b := broker.New(broker.Config{}, store, Encoder{})
	srv := New(cfg, b)
	client, server := net.Pipe()
	c := srv.newConn(server, "pipe", "", nil)
	c.session = session.New(c.ctx, &srv.sessionCfg, c, c.sess, session.Info{ID: c.id, Log: c.logger})
	c.sess.Outbox().Drain(nil) // the welcome
	t.Cleanup(func() {
		c.sess.Close()
		_ = client.Close()
		_ = server.Close()
		_ = store.Close()
	})
	return c
}

// feed gives c's reader the script in pieces cut at cuts, and returns
// what the session queued.
func feed(t *testing.T, c *conn, script []byte, cuts func(rest []byte) int, check func()) [][]byte {
	t.Helper()
	for rest := bytes.Clone(script); len(rest) > 0; {
		n := min(cuts(rest), len(rest))
		if c.consume(rest[:n]) {
			t.Fatalf("the reader ended after %d of %d bytes", len(script)-len(rest)+n, len(script))
		}
		rest = rest[n:]
		if check != nil {
			check()
		}
	}
	if c.part != nil {
		t.Fatalf("a frame is left open after the script: %+v", c.part.h)
	}
	frames, _ := c.sess.Outbox().Drain(nil)
	out := make([][]byte, len(frames))
	for i, f := range frames {
		out[i] = bytes.Clone(f)
	}
	return out
}

// TestConsumeCutAnywhere: the frames' bytes may arrive cut at any point,
// header and payload alike, and the session answers the same as when
// they come at once; while a data frame is under way the message buffer
// holds at most twice what arrived (at least 512 bytes).
func TestConsumeCutAnywhere(t *testing.T) {
	t.Parallel()
	cfg := Config{OpLimits: session.OpLimits{OpRate: -1}}
	small, answers := splitScript(0)
	want := feed(t, newTestConn(t, cfg), small, func(rest []byte) int { return len(rest) }, nil)
	if len(want) != answers {
		t.Fatalf("%d answers to the script at once, want %d", len(want), answers)
	}

	// Every cut in two.
	for i := 1; i < len(small); i++ {
		first := true
		got := feed(t, newTestConn(t, cfg), small, func(rest []byte) int {
			if first {
				first = false
				return i
			}
			return len(rest)
		}, nil)
		if err := sameFrames(got, want); err != nil {
			t.Fatalf("cut at byte %d: %v", i, err)
		}
	}

	// Pieces of a few sizes, with a message of the largest size (its
	// header has the 64-bit length).
	large, answers := splitScript(65536)
	for _, size := range []int{1, 2, 3, 5, 13, 1000, 4096, 4097} {
		t.Run(fmt.Sprint("pieces-of-", size), func(t *testing.T) {
			t.Parallel()
			c := newTestConn(t, cfg)
			check := func() {
				if f := c.part; f != nil && f.whole && !f.h.OpCode.IsControl() {
					if limit := max(minMessageBuffer, 2*len(c.msg)); cap(c.msg) > limit {
						t.Fatalf("message buffer of %d bytes for %d that arrived (frame of %d)", cap(c.msg), len(c.msg), f.h.Length)
					}
				}
			}
			got := feed(t, c, large, func([]byte) int { return size }, check)
			if len(got) != answers {
				t.Fatalf("%d answers, want %d", len(got), answers)
			}
			if err := sameFrames(got[:len(want)], want); err != nil {
				t.Fatal(err)
			}
			if !bytes.Contains(got[len(want)], []byte(`"ref":"d"`)) {
				t.Fatalf("last answer %q, want the pong for d", got[len(want)])
			}
		})
	}
}

func sameFrames(got, want [][]byte) error {
	if len(got) != len(want) {
		return fmt.Errorf("%d answers, want %d", len(got), len(want))
	}
	for i := range got {
		if !bytes.Equal(got[i], want[i]) {
			return fmt.Errorf("answer %d = %q, want %q", i, got[i], want[i])
		}
	}
	return nil
}

// TestSplitFragmentsGrowTheBufferGeometrically: a large message in
// fragments that each arrive cut across reads grows its buffer by
// doubling, not once per fragment (which would copy the message so far
// each time).
func TestSplitFragmentsGrowTheBufferGeometrically(t *testing.T) {
	t.Parallel()
	const size, piece = 1 << 20, 4096
	c := newTestConn(t, Config{OpLimits: session.OpLimits{OpRate: -1}, MaxMessageSize: size})
	msg := []byte(`{"op":"ping","ref":"big"}`)
	msg = append(msg, bytes.Repeat([]byte(" "), size-len(msg))...)
	var script bytes.Buffer
	for i := 0; i < size; i += piece {
		op := ws.OpContinuation
		if i == 0 {
			op = ws.OpText
		}
		p := bytes.Clone(msg[i : i+piece])
		h := ws.Header{Fin: i+piece == size, OpCode: op, Masked: true, Mask: ws.NewMask(), Length: piece}
		ws.Cipher(p, h.Mask, 0)
		_ = ws.WriteHeader(&script, h)
		script.Write(p)
	}
	grows, last := 0, 0
	got := feed(t, c, script.Bytes(), func([]byte) int { return readBufferSize }, func() {
		if cap(c.msg) != last && len(c.msg) > 0 {
			grows++
			last = cap(c.msg)
		}
	})
	if len(got) != 1 || !bytes.Contains(got[0], []byte(`"ref":"big"`)) {
		t.Fatalf("answers %q, want the pong for big", got)
	}
	if grows > 16 {
		t.Errorf("the message buffer grew %d times for a message of %d bytes in fragments of %d", grows, size, piece)
	}
}
