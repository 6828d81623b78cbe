package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tidings-io/tidings/internal/wstest"
	"go.uber.org/goleak"
)

// TestMain fails the package if any goroutine outlives its tests: every
// broker run in process must have stopped all of its goroutines.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// logSink is the stdout of a broker: it collects the log lines and lets a
// test wait for a line, without sleeping. It is safe for concurrent use.
type logSink struct {
	mu      sync.Mutex
	partial []byte
	lines   []string
	changed chan struct{} // closed and replaced whenever a line is added
}

func newLogSink() *logSink { return &logSink{changed: make(chan struct{})} }

func (s *logSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.partial = append(s.partial, p...)
	added := false
	for {
		i := bytes.IndexByte(s.partial, '\n')
		if i < 0 {
			break
		}
		s.lines = append(s.lines, string(s.partial[:i]))
		s.partial = s.partial[i+1:]
		added = true
	}
	if added {
		close(s.changed)
		s.changed = make(chan struct{})
	}
	return len(p), nil
}

// Lines returns the complete lines written so far.
func (s *logSink) Lines() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.lines...)
}

// String returns everything written so far.
func (s *logSink) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.lines, "\n") + string(s.partial)
}

// waitRecord waits for the first JSON log record whose "msg" is msg. It
// gives up when abort is closed (the broker stopped) or after within.
func (s *logSink) waitRecord(msg string, within time.Duration, abort <-chan struct{}) (map[string]any, error) {
	return s.waitMatch(strconv.Quote(msg), within, abort, func(rec map[string]any) bool { return rec["msg"] == msg })
}

// waitMatch waits for the first JSON log record that match accepts; what
// names it in the errors. It gives up when abort is closed or after
// within.
func (s *logSink) waitMatch(what string, within time.Duration, abort <-chan struct{}, match func(map[string]any) bool) (map[string]any, error) {
	timer := time.NewTimer(within)
	defer timer.Stop()
	for {
		s.mu.Lock()
		for _, l := range s.lines {
			var rec map[string]any
			if json.Unmarshal([]byte(l), &rec) == nil && match(rec) {
				s.mu.Unlock()
				return rec, nil
			}
		}
		changed := s.changed
		s.mu.Unlock()
		select {
		case <-changed:
		case <-abort:
			return nil, fmt.Errorf("stopped before logging %s", what)
		case <-timer.C:
			return nil, fmt.Errorf("no %s log line within %v", what, within)
		}
	}
}

// node is a broker started in process with run.
type node struct {
	addr   string
	log    *logSink
	cancel context.CancelFunc
	done   chan struct{} // closed when run returns
	err    error         // run's result, once done is closed
}

// noEnv is an environment without variables, so that the environment
// the tests run in cannot change the broker's configuration.
var noEnv = mapEnv(nil)

// envOf returns an environment of env's variables.
func envOf(env map[string]string) mapEnv { return mapEnv(env) }

// mapEnv is an environment of a test's variables.
type mapEnv map[string]string

func (e mapEnv) Getenv(name string) string { return e[name] }

func (e mapEnv) Environ() []string {
	out := make([]string, 0, len(e))
	for k, v := range e {
		out = append(out, k+"="+v)
	}
	return out
}

// startNode runs a broker in process on a free loopback port (unless the
// environment sets TIDINGS_ADDR) and returns once it logs that it listens.
// The broker is stopped when the test ends.
func startNode(t *testing.T, env map[string]string, args ...string) *node {
	t.Helper()
	if env["TIDINGS_ADDR"] == "" {
		args = append([]string{"-addr", "127.0.0.1:0"}, args...)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := &node{log: newLogSink(), cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(n.done)
		n.err = run(ctx, args, envOf(env), n.log)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-n.done:
		case <-time.After(60 * time.Second):
			t.Errorf("run did not return within 60s of cancel")
		}
		if t.Failed() {
			t.Logf("broker log:\n%s", n.log.String())
		}
	})
	rec, err := n.log.waitRecord("listening", 20*time.Second, n.done)
	if err != nil {
		<-n.done
		t.Fatalf("broker did not start: %v (run returned %v)", err, n.err)
	}
	addr, _ := rec["addr"].(string)
	if addr == "" {
		t.Fatalf("listening line has no addr: %v", rec)
	}
	n.addr = addr
	return n
}

// stop cancels the run context and waits for run to return, failing the
// test if that takes longer than within. It returns how long the shutdown
// took and run's result.
func (n *node) stop(t *testing.T, within time.Duration) (time.Duration, error) {
	t.Helper()
	start := time.Now()
	n.cancel()
	select {
	case <-n.done:
	case <-time.After(within):
		t.Fatalf("run did not return within %v of cancel", within)
	}
	return time.Since(start), n.err
}

// newHTTPClient returns a client with its own connection, closed when the
// test ends so that no transport goroutine outlives it. It holds at most
// one connection: a pool dials spare connections it may never use, and
// net/http's Shutdown waits up to five seconds for a connection that has
// not sent a request, which would only slow the tests down (that case has
// its own test, TestShutdownNotHeldByIdleConnection).
func newHTTPClient(t *testing.T) *http.Client {
	tr := &http.Transport{MaxConnsPerHost: 1, MaxIdleConnsPerHost: 1, DisableCompression: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 20 * time.Second}
}

// publishReply is the 200 body of POST /v1/publish.
type publishReply struct {
	ID     string `json:"id"`
	Topic  string `json:"topic"`
	Offset uint64 `json:"offset"`
	Epoch  string `json:"epoch"`
}

// publish posts one message. err is a transport error (no HTTP status).
func publish(hc *http.Client, addr, topic, data string) (int, publishReply, error) {
	body, _ := json.Marshal(map[string]json.RawMessage{"topic": json.RawMessage(fmt.Sprintf("%q", topic)), "data": json.RawMessage(data)})
	resp, err := hc.Post("http://"+addr+"/v1/publish", "application/json", bytes.NewReader(body))
	if err != nil {
		return 0, publishReply{}, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, publishReply{}, err
	}
	var r publishReply
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(raw, &r); err != nil {
			return resp.StatusCode, r, fmt.Errorf("200 body %q: %w", raw, err)
		}
	}
	return resp.StatusCode, r, nil
}

// getStatus returns the status of GET path.
func getStatus(hc *http.Client, addr, path string) (int, error) {
	resp, err := hc.Get("http://" + addr + path)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// dialWS opens a session at the broker listening on addr; the server must
// select the pubsub.v1 subprotocol.
func dialWS(ctx context.Context, addr string) (*wstest.Conn, error) {
	return wstest.Open(ctx, "ws://"+addr+"/v1/ws")
}

// dialHolding opens a session at addr before deadline, holding one of
// slots while it connects.
func dialHolding(addr string, slots chan struct{}, deadline time.Time) (*wstest.Conn, error) {
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	slots <- struct{}{}
	defer func() { <-slots }()
	c, err := dialWS(ctx, addr)
	if err != nil {
		return nil, fmt.Errorf("dial: %w", err)
	}
	return c, nil
}

// welcomed takes a session just opened, or the error of opening it, and
// reads its welcome within 20 s; on failure the session is closed.
func welcomed(c *wstest.Conn, err error) (*wstest.Conn, error) {
	if err != nil {
		return nil, err
	}
	if _, err := c.Expect("welcome", time.Now().Add(20*time.Second)); err != nil {
		_ = c.Close()
		return nil, err
	}
	return c, nil
}

// waitReady reads n reports from ready, each of one of n clients (what
// names them in failures) that has subscribed: an error, or fewer than n
// reports within timeout, fails t.
func waitReady(t *testing.T, ready <-chan error, n int, what string, timeout time.Duration) {
	t.Helper()
	deadline := time.After(timeout)
	for i := range n {
		select {
		case err := <-ready:
			if err != nil {
				t.Fatalf("%s %d of %d: %v", what, i, n, err)
			}
		case <-deadline:
			t.Fatalf("only %d of %d %ss subscribed within %v", i, n, what, timeout)
		}
	}
}

// openSession opens a session at the broker listening on addr, reads its
// welcome and subscribes to topics, all before deadline; an error fails
// t. It returns the session, closed when the test ends, and its welcome.
func openSession(t *testing.T, addr string, deadline time.Time, topics ...string) (*wstest.Conn, wstest.Frame) {
	t.Helper()
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	c, err := dialWS(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	w, err := c.Expect("welcome", deadline)
	if err != nil {
		t.Fatal(err)
	}
	if len(topics) > 0 {
		if err := c.Subscribe(deadline, topics...); err != nil {
			t.Fatal(err)
		}
	}
	return c, w
}

// everyVarX is an environment in which every variable is "x".
type everyVarX struct{}

func (everyVarX) Getenv(string) string { return "x" }
func (everyVarX) Environ() []string    { return nil }
