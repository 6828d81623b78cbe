package ws_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/tidings-io/tidings/broker"
	"github.com/tidings-io/tidings/internal/testkit"
	wsserver "github.com/tidings-io/tidings/transport/ws"
)

// offsetReader reads a client's frames on its own goroutine and passes on
// the offsets of its `message` frames until the connection ends.
type offsetReader struct {
	offsets chan uint64
	done    chan struct{}
	err     error // set before done is closed
}

// readOffsets starts an offsetReader for c; cleanup closes c and waits for
// the reader.
func readOffsets(t *testing.T, c *client) *offsetReader {
	r := &offsetReader{offsets: make(chan uint64, 1<<16), done: make(chan struct{})}
	go func() {
		defer close(r.done)
		for {
			f, err := c.readFrame()
			if err != nil {
				r.err = err
				return
			}
			typ, off, err := peekMessage(f.Payload)
			if err != nil || f.Header.OpCode != ws.OpText || typ != "message" {
				r.err = fmt.Errorf("want a message, got %s", describe(f))
				return
			}
			r.offsets <- off
		}
	}()
	t.Cleanup(func() {
		_ = c.conn.Close()
		<-r.done
	})
	return r
}

// next returns the next offset read, failing t if none comes in time.
func (r *offsetReader) next(t *testing.T) uint64 {
	t.Helper()
	select {
	case off := <-r.offsets:
		return off
	case <-r.done:
		select {
		case off := <-r.offsets:
			return off
		default:
		}
		t.Fatalf("reader stopped: %v", r.err)
	case <-time.After(ioTimeout):
		t.Fatalf("no message within %v", ioTimeout)
	}
	return 0
}

func TestSlowConsumerIsClosedWith1008WithoutStallingOthers(t *testing.T) {
	t.Parallel()
	h := newHarness(t, config{broker: broker.Config{QueueSize: 8}})
	const topic = "slow.t"
	slow, _ := h.dialWelcome(t)
	slow.subscribe(topic)
	fast, _ := h.dialWelcome(t)
	fast.subscribe(topic)
	fastOffsets := readOffsets(t, fast)

	// Publish one message at a time, each once the fast subscriber has it,
	// until the slow subscriber (which reads nothing) fills its socket and
	// then its queue.
	data := `"` + strings.Repeat("x", 32<<10) + `"`
	var last uint64
	for h.b.Stats().SlowConsumers == 0 {
		if last == 5000 {
			t.Fatalf("no slow consumer after %d messages", last)
		}
		last = h.mustPublish(t, topic, data).Offset
		if got := fastOffsets.next(t); got != last {
			t.Fatalf("fast subscriber got offset %d, want %d", got, last)
		}
	}
	// The fast subscriber goes on receiving every message.
	for i := 0; i < 20; i++ {
		last = h.mustPublish(t, topic, `"after"`).Offset
		if got := fastOffsets.next(t); got != last {
			t.Fatalf("after the slow consumer: fast subscriber got offset %d, want %d", got, last)
		}
	}

	// The slow subscriber reads, after the fact, what its socket holds: a
	// gapless prefix of the stream, then 1008 `slow consumer`.
	before := slow.expectClose(1008, "slow consumer")
	for i, f := range before {
		typ, off, err := peekMessage(f.Payload)
		if err != nil || typ != "message" || off != uint64(i+1) {
			t.Fatalf("slow subscriber frame %d: %s, want message offset %d", i, describe(f), i+1)
		}
	}
	if n := uint64(len(before)); n == 0 || n >= last {
		t.Errorf("slow subscriber got %d of %d messages before being closed", n, last)
	}
	if n := h.b.Stats().SlowConsumers; n != 1 {
		t.Errorf("SlowConsumers = %d, want 1", n)
	}
	testkit.Eventually(t, waitTimeout, func() error { return wantCount("CloseSent[1008]", h.srv.Stats().CloseSent[1008], 1) })
}

func TestHeartbeatKeepsAnAnsweringClientConnected(t *testing.T) {
	t.Parallel()
	const beat = 250 * time.Millisecond
	h := newHarness(t, config{ws: wsserver.Config{Heartbeat: beat}})
	c, w := h.dialWelcome(t)
	if w.Heartbeat != beat.Seconds() {
		t.Fatalf("welcome heartbeat = %v, want %v seconds", w.Heartbeat, beat.Seconds())
	}
	// Five pings span four intervals, twice the two after which a silent
	// session is cut.
	const pings = 5
	start := time.Now()
	for n := 0; n < pings; {
		f, err := c.readFrame()
		if err != nil {
			t.Fatalf("after %d pings: %v", n, err)
		}
		if f.Header.OpCode != ws.OpPing {
			t.Fatalf("want a ping, got %s", describe(f))
		}
		n++
		c.writeFrame(ws.NewPongFrame(f.Payload))
	}
	if elapsed := time.Since(start); elapsed < (pings-2)*beat {
		t.Errorf("%d pings in %v: the server pings more often than every %v", pings, elapsed, beat)
	}
	c.autoPong = true
	c.subscribe("beat.t")
	c.ping("still-here")
	if st := h.srv.Stats(); len(st.CloseSent)+len(st.CloseReceived) != 0 {
		t.Errorf("close counters %+v, want none", st)
	}
}

func TestHeartbeatCutsASilentClientWithoutCloseFrame(t *testing.T) {
	t.Parallel()
	const beat = 100 * time.Millisecond
	h := newHarness(t, config{ws: wsserver.Config{Heartbeat: beat}})
	c, _ := h.dialWelcome(t)
	start := time.Now()
	for _, f := range c.expectCut() {
		if f.Header.OpCode != ws.OpPing {
			t.Errorf("silent client got %s, want only pings", describe(f))
		}
	}
	if elapsed := time.Since(start); elapsed < beat {
		t.Errorf("cut after %v, before one heartbeat interval", elapsed)
	}
	testkit.Eventually(t, waitTimeout, func() error { return wantCount("CloseReceived[1006]", h.srv.Stats().CloseReceived[1006], 1) })
	if sent := h.srv.Stats().CloseSent; len(sent) != 0 {
		t.Errorf("CloseSent = %v, want no close frame sent", sent)
	}
}

// closeResult is what drainUntilClose saw.
type closeResult struct {
	offsets []uint64
	code    ws.StatusCode
	reason  string
	err     error
}

// drainUntilClose reads c's messages until its close frame, answers the
// close with code, and checks that the server then ends the connection.
// It does not use t, so it may run on any goroutine.
func drainUntilClose(c *client, code ws.StatusCode) (r closeResult) {
	for {
		f, err := c.readFrame()
		if err != nil {
			r.err = fmt.Errorf("after %d messages: %w", len(r.offsets), err)
			return r
		}
		if f.Header.OpCode == ws.OpClose {
			r.code, r.reason = ws.ParseCloseFrameData(f.Payload)
			break
		}
		typ, off, err := peekMessage(f.Payload)
		if err != nil || f.Header.OpCode != ws.OpText || typ != "message" {
			r.err = fmt.Errorf("want a message, got %s", describe(f))
			return r
		}
		r.offsets = append(r.offsets, off)
	}
	if err := c.tryWriteRaw(ws.Header{Fin: true, OpCode: ws.OpClose, Masked: true, Length: 2}, closeBody(uint16(code), "")); err != nil {
		r.err = fmt.Errorf("answering the close: %w", err)
		return r
	}
	if f, err := c.readFrame(); err == nil {
		r.err = fmt.Errorf("server sent %s after its close frame", describe(f))
	} else if errors.Is(err, os.ErrDeadlineExceeded) {
		r.err = errors.New("server did not close the connection")
	}
	return r
}

func TestShutdownFlushesQueuedMessagesThenCloses1001(t *testing.T) {
	t.Parallel()
	// The close timeout is generous: the clients answer only once they
	// have read everything, which takes a while on a loaded machine.
	h := newHarness(t, config{
		ws:     wsserver.Config{CloseTimeout: 30 * time.Second},
		broker: broker.Config{QueueSize: 1 << 16, QueueBytes: 64 << 20},
	})
	const (
		topic    = "sd.t"
		messages = 250
	)
	var clients []*client
	for _, pattern := range []string{topic, topic, topic, "sd.*", "sd.>"} {
		c, _ := h.dialWelcome(t)
		c.subscribe(pattern)
		clients = append(clients, c)
	}
	idle, _ := h.dialWelcome(t) // subscribed to nothing

	// Nobody reads while the messages are published: about 4 MB per
	// session, more than the sockets hold, so part of it is still queued
	// when the shutdown begins.
	data := `"` + strings.Repeat("y", 16<<10) + `"`
	for i := 0; i < messages; i++ {
		h.mustPublish(t, topic, data)
	}
	shutdownErr := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		shutdownErr <- h.srv.Shutdown(ctx)
	}()

	results := make([]closeResult, len(clients))
	var wg sync.WaitGroup
	for i, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = drainUntilClose(c, 1001)
		}()
	}
	wg.Wait()
	for i, r := range results {
		if r.err != nil {
			t.Errorf("session %d: %v", i, r.err)
			continue
		}
		if r.code != 1001 || r.reason != "server shutting down" {
			t.Errorf("session %d: close %d %q, want 1001 %q", i, r.code, r.reason, "server shutting down")
		}
		if len(r.offsets) != messages {
			t.Errorf("session %d: got %d messages before the close, want all %d", i, len(r.offsets), messages)
		}
		for j, off := range r.offsets {
			if off != uint64(j+1) {
				t.Errorf("session %d: message %d has offset %d, want %d", i, j, off, j+1)
				break
			}
		}
	}
	idle.expectClose(1001, "server shutting down")
	idle.sendClose(closeBody(1001, ""))

	select {
	case err := <-shutdownErr:
		if err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Shutdown did not return after every session answered")
	}
	st := h.srv.Stats()
	if st.CloseSent[1001] != uint64(len(clients)+1) || st.CloseReceived[1001] != uint64(len(clients)+1) {
		t.Errorf("close counters %+v, want %d sent and received 1001", st, len(clients)+1)
	}

	// New sessions are refused once shutdown has begun.
	status, header, body := h.dialStatus(t, "")
	if status != http.StatusServiceUnavailable {
		t.Fatalf("dial after shutdown: status %d, want 503", status)
	}
	checkErrorBody(t, header, body, "unavailable")
}

func TestShutdownCutsSessionsThatDoNotAnswerAtTheDeadline(t *testing.T) {
	t.Parallel()
	h := newHarness(t, config{ws: wsserver.Config{CloseTimeout: time.Minute}})
	c, _ := h.dialWelcome(t)
	c.subscribe("cut.t")

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := h.srv.Shutdown(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown = %v, want context.DeadlineExceeded", err)
	}
	if elapsed := time.Since(start); elapsed > 10*time.Second {
		t.Errorf("Shutdown took %v; the deadline was 300ms", elapsed)
	}
	// The session got its 1001 and then the connection was cut.
	c.expectClose(1001, "server shutting down")
	testkit.Eventually(t, waitTimeout, h.sessionsEnded)
}
