package httpstream_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/tidings-io/tidings/broker"
	"github.com/tidings-io/tidings/session"
	"github.com/tidings-io/tidings/transport/httpstream"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// queue is a broker session of its own outbox.
type queue struct{ out *broker.Outbox }

func (q queue) Outbox() *broker.Outbox { return q.out }
func (q queue) Close()                 { q.out.Close() }

// copyWire writes frames as they are and the close as "close <code>".
type copyWire struct{}

func (copyWire) AppendFrames(b []byte, frames [][]byte, limit int) ([]byte, [][]byte) {
	for i, f := range frames {
		if len(b) >= limit {
			return b, frames[i:]
		}
		b = append(b, f...)
	}
	return b, nil
}

func (copyWire) AppendClose(b []byte, cause session.Cause, code uint16, reason string) []byte {
	return append(b, "close "+cause.Label()+" "+reason...)
}

// recorder is a response that keeps each write apart, and tells written
// once it holds want bytes.
type recorder struct {
	*httptest.ResponseRecorder
	mu      sync.Mutex
	writes  [][]byte
	total   int
	want    int
	written chan struct{}
}

func newRecorder(want int) *recorder {
	return &recorder{ResponseRecorder: httptest.NewRecorder(), want: want, written: make(chan struct{})}
}

func (r *recorder) Write(b []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.writes = append(r.writes, bytes.Clone(b))
	before := r.total
	r.total += len(b)
	if before < r.want && r.total >= r.want {
		close(r.written)
	}
	return r.ResponseRecorder.Write(b)
}

// backlog queues n frames of size bytes each, every one different, to
// out, and returns them in order.
func backlog(t *testing.T, out *broker.Outbox, n, size int) []byte {
	t.Helper()
	var all []byte
	for i := range n {
		f := bytes.Repeat([]byte{byte('a' + i%26)}, size)
		if !out.Push(f) {
			t.Fatalf("push %d refused", i)
		}
		all = append(all, f...)
	}
	return all
}

// checkBursts checks that no write of rec exceeds a burst and its last
// frame, and that the writes hold want.
func checkBursts(t *testing.T, rec *recorder, frame int, want []byte) {
	t.Helper()
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.writes) < 2 {
		t.Errorf("%d bytes in %d writes, want bursts", len(want), len(rec.writes))
	}
	var got []byte
	for i, w := range rec.writes {
		if len(w) > httpstream.MaxBurst+frame+len("close shutdown server shutting down") {
			t.Errorf("write %d holds %d bytes, more than a burst (%d) and a frame", i, len(w), httpstream.MaxBurst)
		}
		got = append(got, w...)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("written %d bytes, not the %d queued then the close", len(got), len(want))
	}
}

func newConn(rec *recorder, out *broker.Outbox, opt *httpstream.Options) *httpstream.Conn {
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	log := slog.New(slog.DiscardHandler)
	return httpstream.New(opt, copyWire{}, rec, r, queue{out}, func() *slog.Logger { return log })
}

func TestBacklogIsWrittenInBursts(t *testing.T) {
	t.Parallel()
	const n, size = 300, 1000
	out := broker.NewOutbox(1<<20, 1<<30, nil)
	want := backlog(t, out, n, size)
	rec := newRecorder(len(want))
	var sent []uint16
	c := newConn(rec, out, &httpstream.Options{Heartbeat: 1 << 40, WriteTimeout: 1 << 40, Ping: []byte("ping"),
		CloseSent: func(code uint16) { sent = append(sent, code) }})
	if err := c.Open(); err != nil {
		t.Fatal(err)
	}
	ran := make(chan struct{})
	go func() { defer close(ran); c.Run() }()
	<-rec.written
	c.RequestClose(session.CauseShutdown, 0, "server shutting down")
	<-ran
	checkBursts(t, rec, size, append(want, "close shutdown server shutting down"...))
	if len(sent) != 1 || sent[0] != 1001 {
		t.Errorf("close sent %v, want [1001]", sent)
	}
}

func TestCloseWritesTheBacklogInBurstsFirst(t *testing.T) {
	t.Parallel()
	const n, size = 300, 1000
	out := broker.NewOutbox(1<<20, 1<<30, nil)
	want := backlog(t, out, n, size)
	rec := newRecorder(len(want))
	c := newConn(rec, out, &httpstream.Options{Heartbeat: 1 << 40, WriteTimeout: 1 << 40, Ping: []byte("ping")})
	// Not opened: the outbox wakes no one, the close request alone is
	// served, and it writes what was queued first.
	c.RequestClose(session.CauseShutdown, 0, "server shutting down")
	c.Run()
	checkBursts(t, rec, size, append(want, "close shutdown server shutting down"...))
}

// stream is a session that ignores Close and ends once cut.
type stream struct {
	served chan struct{}
	cut    chan struct{}
	closed chan session.Cause
}

func (s *stream) Close(cause session.Cause) { s.closed <- cause }
func (s *stream) Cut()                      { close(s.cut) }
func (s *stream) Discard()                  {}
func (s *stream) Serve(*pass) {
	close(s.served)
	<-s.cut
}

type pass struct{ released chan struct{} }

func (p *pass) Release() { close(p.released) }

type door struct{ p *pass }

func (d door) Admit(http.ResponseWriter, *http.Request) *pass { return d.p }

func TestShutdownCutsStreamsAtTheDeadline(t *testing.T) {
	t.Parallel()
	var reg httpstream.Sessions[int, *stream]
	s := &stream{served: make(chan struct{}), cut: make(chan struct{}), closed: make(chan session.Cause, 1)}
	p := &pass{released: make(chan struct{})}
	done := make(chan struct{})
	go func() {
		defer close(done)
		httpstream.Serve(&reg, door{p}, httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/", nil),
			func(*pass) (int, *stream) { return 1, s }, func(http.ResponseWriter) { t.Error("refused") })
	}()
	<-s.served
	if n := reg.Len(); n != 1 {
		t.Fatalf("%d streams registered, want 1", n)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := reg.Shutdown(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Shutdown: %v, want context.Canceled", err)
	}
	if cause := <-s.closed; cause != session.CauseShutdown {
		t.Errorf("closed for %v, want shutdown", cause)
	}
	<-done
	<-p.released
	if n := reg.Len(); n != 0 {
		t.Errorf("%d streams registered after Shutdown, want 0", n)
	}
	refused := false
	httpstream.Serve(&reg, door{p}, httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/", nil),
		func(*pass) (int, *stream) { t.Error("opened after Shutdown"); return 2, s }, func(http.ResponseWriter) { refused = true })
	if !refused {
		t.Error("a request after Shutdown was not refused")
	}
}
