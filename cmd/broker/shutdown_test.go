package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/tidings-io/tidings/broker"
	"github.com/tidings-io/tidings/internal/wstest"
	"github.com/tidings-io/tidings/store/memory"
	"github.com/tidings-io/tidings/transport/httpapi"
	wstransport "github.com/tidings-io/tidings/transport/ws"
)

// delivery is one message a session received.
type delivery struct {
	offset uint64
	id     string
}

// loadSession is one of the shutdown test's clients. Its fields are
// written by its own goroutine and read by the test after it ends.
type loadSession struct {
	subs []string

	mu   sync.Mutex // guards conn, for the cleanup that unblocks the reader
	conn *wstest.Conn

	// streams holds the deliveries per topic and subscription,
	// keyed "topic|sub" (sub is empty for an exact subscription).
	streams map[string][]delivery
	close   *wstest.CloseError
	err     error
}

func (s *loadSession) setConn(c *wstest.Conn) {
	s.mu.Lock()
	s.conn = c
	s.mu.Unlock()
}

func (s *loadSession) abort() {
	s.mu.Lock()
	if s.conn != nil {
		s.conn.Close()
	}
	s.mu.Unlock()
}

// run connects, subscribes, reports on ready, then records every message
// until the server's close frame, which it answers.
func (s *loadSession) run(addr string, dialSlots chan struct{}, ready chan<- error) {
	deadline := time.Now().Add(2 * time.Minute)
	c, err := dialHolding(addr, dialSlots, deadline)
	if err != nil {
		ready <- err
		return
	}
	s.setConn(c)
	defer c.Close()
	if _, err := c.Expect("welcome", deadline); err != nil {
		ready <- fmt.Errorf("welcome: %w", err)
		return
	}
	if err := c.Subscribe(deadline, s.subs...); err != nil {
		ready <- fmt.Errorf("subscribe %v: %w", s.subs, err)
		return
	}
	ready <- nil

	s.streams = map[string][]delivery{}
	for {
		f, err := c.Next(deadline)
		if ce := wstest.AsClose(err); ce != nil {
			s.close = ce
			// Answer the close, as a well-behaved client does; the server
			// then ends the connection.
			if err := c.SendClose(ce.Code, ""); err != nil {
				s.err = fmt.Errorf("answering the close: %w", err)
			}
			_ = c.Drain(deadline)
			return
		}
		if err != nil {
			s.err = fmt.Errorf("reading before any close frame: %w", err)
			return
		}
		if f.Type != "message" {
			s.err = fmt.Errorf("unexpected %q frame: %s", f.Type, f.Raw)
			return
		}
		key := f.Topic + "|" + f.Sub
		s.streams[key] = append(s.streams[key], delivery{offset: f.Offset, id: f.ID})
	}
}

// TestShutdownUnderLoad is the graceful shutdown's acceptance test: 500
// sessions subscribed to 10 topics (some through wildcards), publishes over
// HTTP before and during shutdown, then the run context is cancelled. Every
// session must receive every acknowledged message, in offset order with no
// duplicate, then close 1001 `server shutting down`; run returns nil well
// within the shutdown timeout, and (TestMain) no goroutine survives.
func TestShutdownUnderLoad(t *testing.T) {
	t.Parallel()
	const (
		sessions       = 500
		topics         = 10
		perTopic       = 20 // acknowledged before shutdown begins
		publishersPer  = 2  // concurrent publishers per topic
		inflightPer    = 3  // publishers per topic while shutdown begins
		shutdownBound  = 20 * time.Second
		readyTimeout   = 60 * time.Second
		maxErrorsShown = 20
	)
	n := startNode(t, nil, "-shutdown-timeout", shutdownBound.String())

	topicName := func(k int) string { return fmt.Sprintf("load.%d", k) }
	clients := make([]*loadSession, sessions)
	for i := range clients {
		var subs []string
		switch {
		case i%25 == 0: // 20 sessions see every topic through one wildcard
			subs = []string{"load.>"}
		case i%25 == 5: // 20 sessions hold an exact and a wildcard subscription
			subs = []string{topicName(i % topics), "load.*"}
		default:
			subs = []string{topicName(i % topics)}
		}
		clients[i] = &loadSession{subs: subs}
	}

	var clientsWG sync.WaitGroup
	ready := make(chan error, sessions)
	dialSlots := make(chan struct{}, 32)
	for _, c := range clients {
		clientsWG.Go(func() { c.run(n.addr, dialSlots, ready) })
	}
	t.Cleanup(func() {
		// On failure, unblock the readers rather than wait for their deadline.
		for _, c := range clients {
			c.abort()
		}
		clientsWG.Wait()
	})
	waitReady(t, ready, sessions, "session", readyTimeout)

	// acks[topic][offset] is the id of each acknowledged publish; unknown
	// counts publishes whose outcome the client could not learn.
	var (
		ackMu   sync.Mutex
		acks    = map[string]map[uint64]string{}
		unknown = map[string]int{}
	)
	for k := range topics {
		acks[topicName(k)] = map[uint64]string{}
	}
	record := func(r publishReply) error {
		ackMu.Lock()
		defer ackMu.Unlock()
		if prev, dup := acks[r.Topic][r.Offset]; dup {
			return fmt.Errorf("offset %d of %s acknowledged twice (ids %s and %s)", r.Offset, r.Topic, prev, r.ID)
		}
		acks[r.Topic][r.Offset] = r.ID
		return nil
	}

	// Before shutdown: every publish must be accepted.
	var pubWG sync.WaitGroup
	for k := range topics {
		for p := range publishersPer {
			hc := newHTTPClient(t)
			pubWG.Go(func() {
				for i := range perTopic / publishersPer {
					status, r, err := publish(hc, n.addr, topicName(k), fmt.Sprintf(`{"publisher":%d,"n":%d}`, p, i))
					if err != nil || status != http.StatusOK {
						t.Errorf("publish to %s before shutdown: status %d, %v", topicName(k), status, err)
						return
					}
					if err := record(r); err != nil {
						t.Error(err)
					}
				}
			})
		}
	}
	pubWG.Wait()
	if t.Failed() {
		t.FailNow()
	}

	// During shutdown: publishers keep publishing until they are refused,
	// so that publishes are in flight when shutdown begins.
	var inflight, started sync.WaitGroup
	started.Add(topics * inflightPer)
	for j := range topics * inflightPer {
		k := j % topics
		hc := newHTTPClient(t)
		inflight.Go(func() {
			var once sync.Once
			defer once.Do(started.Done)
			topic := topicName(k)
			for i := range 10000 {
				status, r, err := publish(hc, n.addr, topic, fmt.Sprintf(`{"inflight":%d}`, i))
				switch {
				case err != nil:
					// Refused or cut: the message may or may not have been
					// accepted; it is not acknowledged.
					ackMu.Lock()
					unknown[topic]++
					ackMu.Unlock()
					return
				case status == http.StatusServiceUnavailable:
					return
				case status != http.StatusOK:
					t.Errorf("publish to %s during shutdown: status %d, want 200 or 503", topic, status)
					return
				}
				if err := record(r); err != nil {
					t.Error(err)
				}
				once.Do(started.Done)
			}
		})
	}
	started.Wait()

	elapsed, err := n.stop(t, shutdownBound+5*time.Second)
	if err != nil {
		t.Errorf("run returned %v, want nil", err)
	}
	if elapsed >= shutdownBound {
		t.Errorf("shutdown took %v, want less than -shutdown-timeout %v", elapsed, shutdownBound)
	}
	t.Logf("shutdown of %d sessions took %v", sessions, elapsed)
	inflight.Wait()

	clientsDone := make(chan struct{})
	go func() { clientsWG.Wait(); close(clientsDone) }()
	select {
	case <-clientsDone:
	case <-time.After(30 * time.Second):
		t.Fatalf("sessions still open 30s after run returned")
	}

	// Every subscription saw offsets 1..M of each of its topics, where M
	// is the same for every subscriber of the topic, covers every
	// acknowledged offset with the acknowledged id, and exceeds the
	// acknowledged count only by publishes of unknown outcome.
	delivered := map[string]int{} // topic → M, from the first stream seen
	errorsShown := 0
	fail := func(format string, args ...any) {
		errorsShown++
		if errorsShown <= maxErrorsShown {
			t.Errorf(format, args...)
		}
	}
	for i, c := range clients {
		if c.err != nil {
			fail("session %d: %v", i, c.err)
		}
		if c.close == nil || c.close.Code != ws.StatusGoingAway || c.close.Reason != "server shutting down" {
			fail("session %d: close %v, want 1001 \"server shutting down\"", i, c.close)
		}
		want := map[string]bool{}
		for _, sub := range c.subs {
			for k := range topics {
				switch sub {
				case topicName(k):
					want[topicName(k)+"|"] = true
				case "load.>", "load.*":
					want[topicName(k)+"|"+sub] = true
				}
			}
		}
		for key := range c.streams {
			if !want[key] {
				fail("session %d (subs %v): deliveries on %q, which it did not subscribe to", i, c.subs, key)
			}
		}
		for key := range want {
			topic, _, _ := strings.Cut(key, "|")
			stream := c.streams[key]
			for j, d := range stream {
				if d.offset != uint64(j+1) {
					fail("session %d, %s: delivery %d has offset %d, want %d (in order, no gap, no duplicate)", i, key, j, d.offset, j+1)
					break
				}
			}
			m, seen := delivered[topic]
			if !seen {
				delivered[topic] = len(stream)
			} else if len(stream) != m {
				fail("session %d, %s: %d messages, another subscriber got %d", i, key, len(stream), m)
			}
			for off, id := range acks[topic] {
				if off > uint64(len(stream)) {
					fail("session %d, %s: acknowledged offset %d never delivered (got %d messages)", i, key, off, len(stream))
					break
				}
				if stream[off-1].id != id {
					fail("session %d, %s: offset %d delivered with id %s, acknowledged as %s", i, key, off, stream[off-1].id, id)
					break
				}
			}
		}
	}
	keys := make([]string, 0, len(delivered))
	for topic := range delivered {
		keys = append(keys, topic)
	}
	sort.Strings(keys)
	for _, topic := range keys {
		m, acked := delivered[topic], len(acks[topic])
		t.Logf("%s: %d delivered to every subscriber, %d acknowledged, %d of unknown outcome", topic, m, acked, unknown[topic])
		if m < acked || m > acked+unknown[topic] {
			fail("%s: %d messages delivered, %d acknowledged and %d of unknown outcome", topic, m, acked, unknown[topic])
		}
		if acked < perTopic {
			fail("%s: only %d publishes acknowledged, want at least %d", topic, acked, perTopic)
		}
	}
	if errorsShown > maxErrorsShown {
		t.Errorf("… and %d more errors", errorsShown-maxErrorsShown)
	}
	if rec, err := n.log.waitRecord("shutdown complete", time.Second, nil); err != nil {
		t.Errorf("no \"shutdown complete\" log line: %v", err)
	} else {
		t.Logf("broker: shutdown complete after %v", rec["after"])
	}
}

// TestShutdownCutsSessionThatDoesNotAnswer holds one session that never
// answers the close frame: it still gets its queued message and then 1001,
// /readyz never answers 200 once shutdown has begun, and run returns once
// -shutdown-timeout has passed, having cut the connection, with an error
// saying so (the process exits 1).
func TestShutdownCutsSessionThatDoesNotAnswer(t *testing.T) {
	t.Parallel()
	// The margin allowed past the deadline is generous, for loaded
	// machines, but well short of what a session held until the
	// server's 5s close timeout would take.
	const timeout, margin = time.Second, 2500 * time.Millisecond
	n := startNode(t, nil, "-shutdown-timeout", timeout.String())
	hc := newHTTPClient(t)

	if status, err := getStatus(hc, n.addr, "/readyz"); err != nil || status != http.StatusOK {
		t.Fatalf("/readyz before shutdown: %d, %v; want 200", status, err)
	}
	deadline := time.Now().Add(30 * time.Second)
	c, _ := openSession(t, n.addr, deadline, "mute.a")
	status, ack, err := publish(hc, n.addr, "mute.a", `"last words"`)
	if err != nil || status != http.StatusOK {
		t.Fatalf("publish: %d, %v", status, err)
	}

	start := time.Now()
	n.cancel()

	f, err := c.Expect("message", deadline)
	if err != nil || f.ID != ack.ID || string(f.Data) != `"last words"` {
		t.Fatalf("first frame after cancel: %s, %v; want the acknowledged message %s", f.Raw, err, ack.ID)
	}
	_, err = c.Next(deadline)
	ce := wstest.AsClose(err)
	if ce == nil || ce.Code != ws.StatusGoingAway || ce.Reason != "server shutting down" {
		t.Fatalf("after the message: %v, want close 1001 \"server shutting down\"", err)
	}
	// The session does not answer. Shutdown has begun: from now until run
	// returns, /readyz must never say 200.
	polls, refused, unready := 0, 0, 0
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	bound := time.NewTimer(timeout + 5*time.Second)
	defer bound.Stop()
poll:
	for {
		status, err := getStatus(hc, n.addr, "/readyz")
		polls++
		switch {
		case err != nil:
			refused++
		case status == http.StatusServiceUnavailable:
			unready++
		default:
			t.Errorf("/readyz during shutdown answered %d, want 503 or a refused connection", status)
		}
		select {
		case <-n.done:
			break poll
		case <-tick.C:
		case <-bound.C:
			t.Fatalf("run did not return within %v of cancel", timeout+5*time.Second)
		}
	}
	elapsed := time.Since(start)
	t.Logf("/readyz during shutdown: %d polls, %d refused, %d 503", polls, refused, unready)
	if !errors.Is(n.err, errShutdownTimeout) || !strings.Contains(n.err.Error(), "WebSocket sessions") {
		t.Errorf("run returned %v, want the shutdown timeout, naming the WebSocket sessions", n.err)
	}
	if code := exitCode(n.err, io.Discard); code != 1 {
		t.Errorf("exit status %d after a shutdown that timed out, want 1", code)
	}
	if elapsed < timeout-100*time.Millisecond {
		t.Errorf("run returned after %v: it did not wait for the close reply until the %v deadline", elapsed, timeout)
	}
	if elapsed > timeout+margin {
		t.Errorf("run returned after %v, want within %v and a margin of %v", elapsed, timeout, margin)
	}
	if _, err := n.log.waitRecord("shutdown deadline reached; remaining connections were cut", time.Second, nil); err != nil {
		t.Error(err)
	}
	// The connection was cut: reading finds its end, not more frames.
	if err := c.Drain(time.Now().Add(5 * time.Second)); err != nil && !errors.Is(err, net.ErrClosed) && !isReset(err) {
		t.Errorf("reading after the cut: %v, want EOF or reset", err)
	}
}

// isReset reports whether err is a connection reset by the peer.
func isReset(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && !op.Timeout()
}

// TestShutdownNotHeldByIdleConnection: a TCP connection that never sends a
// request (a preconnect, a load balancer's TCP health check) must not hold
// back the sessions' graceful close. net/http waits up to five seconds for
// such a connection; with a shorter -shutdown-timeout the sessions used to
// be cut at the deadline without their queued messages or 1001. The HTTP
// server itself still waits for it until the deadline, which run reports:
// the sessions must not be among what timed out.
func TestShutdownNotHeldByIdleConnection(t *testing.T) {
	t.Parallel()
	const timeout = 3 * time.Second
	n := startNode(t, nil, "-shutdown-timeout", timeout.String())
	hc := newHTTPClient(t)
	deadline := time.Now().Add(30 * time.Second)
	c, _ := openSession(t, n.addr, deadline, "idle.a")
	idle, err := net.Dial("tcp", n.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	status, ack, err := publish(hc, n.addr, "idle.a", `{"k":"v"}`)
	if err != nil || status != http.StatusOK {
		t.Fatalf("publish: %d, %v", status, err)
	}

	start := time.Now()
	n.cancel()
	f, err := c.Expect("message", deadline)
	if err != nil || f.ID != ack.ID {
		t.Fatalf("after cancel: %s, %v; want the acknowledged message %s", f.Raw, err, ack.ID)
	}
	_, err = c.Next(deadline)
	if ce := wstest.AsClose(err); ce == nil || ce.Code != ws.StatusGoingAway || ce.Reason != "server shutting down" {
		t.Fatalf("after the message: %v, want close 1001 \"server shutting down\"", err)
	}
	if err := c.SendClose(ws.StatusGoingAway, ""); err != nil {
		t.Fatal(err)
	}
	select {
	case <-n.done:
	case <-time.After(timeout + 5*time.Second):
		t.Fatalf("run did not return within %v of cancel", timeout+5*time.Second)
	}
	if n.err != nil {
		if msg := n.err.Error(); !errors.Is(n.err, errShutdownTimeout) || !strings.Contains(msg, "HTTP server") || strings.Contains(msg, "WebSocket sessions") {
			t.Errorf("run returned %v, want nil or the shutdown timeout of the HTTP server alone", n.err)
		}
	}
	if elapsed := time.Since(start); elapsed > timeout+3*time.Second {
		t.Errorf("run returned after %v, want within %v and a margin", elapsed, timeout)
	}
	// The idle connection was closed by the server, at the latest at the
	// deadline.
	_ = idle.SetReadDeadline(time.Now().Add(5 * time.Second))
	if k, err := idle.Read(make([]byte, 1)); k != 0 || err == nil || isTimeout(err) {
		t.Errorf("the idle connection is still open after run returned: read %d, %v", k, err)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// failingCloser is a store whose Close fails, after closing the store.
type failingCloser struct {
	io.Closer
	err error
}

func (f failingCloser) Close() error {
	_ = f.Closer.Close()
	return f.err
}

// TestShutdownReportsWhatFailed calls shutdown on a node with nothing left
// to wait for: it returns nil, or the store's Close error (not a timeout)
// when that fails.
func TestShutdownReportsWhatFailed(t *testing.T) {
	t.Parallel()
	storeErr := errors.New("store close failed")
	for _, tc := range []struct {
		name     string
		closeErr error
	}{
		{"clean", nil},
		{"store fails to close", storeErr},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			st := memory.New(memory.Config{})
			b := broker.New(broker.Config{}, st, wstransport.Encoder{})
			wsrv := wstransport.New(wstransport.Config{}, b)
			api := httpapi.New(httpapi.Config{}, b, wsrv)
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			srv := &http.Server{Handler: api, ReadHeaderTimeout: time.Second}
			served := make(chan error, 1)
			go func() { served <- srv.Serve(ln) }()
			log := newLogSink()
			err = shutdown(api, srv, nil, []transport{{"WebSocket", wsrv}}, nil, failingCloser{st, tc.closeErr}, 10*time.Second, slog.New(slog.NewJSONHandler(log, nil)))
			if serveErr := <-served; !errors.Is(serveErr, http.ErrServerClosed) {
				t.Errorf("Serve returned %v, want http.ErrServerClosed", serveErr)
			}
			_, completeErr := log.waitRecord("shutdown complete", 0, nil)
			if tc.closeErr == nil {
				if err != nil {
					t.Errorf("shutdown = %v, want nil", err)
				}
				if completeErr != nil {
					t.Error(completeErr)
				}
				return
			}
			if !errors.Is(err, tc.closeErr) || errors.Is(err, errShutdownTimeout) {
				t.Errorf("shutdown = %v, want the store's error and no timeout", err)
			}
			if code := exitCode(err, io.Discard); code != 1 {
				t.Errorf("exit status %d after a failed shutdown, want 1", code)
			}
			if completeErr == nil {
				t.Error("shutdown complete logged although closing the store failed")
			}
		})
	}
}
