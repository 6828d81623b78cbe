package httpstream

import (
	"context"
	"net/http"
	"sync"

	"github.com/tidings-io/tidings/internal/gate"
	"github.com/tidings-io/tidings/session"
)

// Session is a stream as a server's Sessions hold it: a transport's
// session, which embeds a *Conn.
type Session interface {
	comparable
	// Close ends the stream for cause, after what it queued.
	Close(cause session.Cause)
	// Cut ends the stream without waiting for its writes.
	Cut()
}

// Sessions are a server's streams, by key: a gate that admits them until
// Shutdown and counts those not yet ended, and the registered ones. The
// zero value is an empty, open registry.
type Sessions[K comparable, S Session] struct {
	gate gate.Gate

	// mu guards m, and orders Close with Register.
	mu sync.Mutex
	m  map[K]S
}

// Register adds s under key; false once Close was called.
func (r *Sessions[K, S]) Register(key K, s S) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.gate.Closed() {
		return false
	}
	if r.m == nil {
		r.m = make(map[K]S)
	}
	r.m[key] = s
	return true
}

// Unregister removes s, registered under key: the key is unknown from
// then on.
func (r *Sessions[K, S]) Unregister(key K, s S) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if cur, ok := r.m[key]; ok && cur == s {
		delete(r.m, key)
	}
}

// Lookup returns the stream registered under key.
func (r *Sessions[K, S]) Lookup(key K) (S, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s, ok := r.m[key]
	return s, ok
}

// Len returns the number of streams registered.
func (r *Sessions[K, S]) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.m)
}

// appendTo appends the registered streams to dst.
func (r *Sessions[K, S]) appendTo(dst []S) []S {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.m {
		dst = append(dst, s)
	}
	return dst
}

// Close refuses new streams: Serve and Register refuse them from now on.
// It is idempotent.
func (r *Sessions[K, S]) Close() {
	r.mu.Lock()
	r.gate.Close()
	r.mu.Unlock()
}

// Shutdown refuses new streams, then ends every stream with
// session.CauseShutdown, after what it queued, and waits for them to end.
// At ctx's deadline the streams still writing are cut; it returns
// ctx.Err() then.
func (r *Sessions[K, S]) Shutdown(ctx context.Context) error {
	r.Close()
	return session.Drain(ctx, &r.gate, r.appendTo, S.Cut)
}

// Door admits the requests that open streams (an *admit.Door): Admit
// answers a request it refuses and returns the zero P.
type Door[P Pass] interface {
	Admit(w http.ResponseWriter, r *http.Request) P
}

// Pass is what an admitted request holds until its stream has ended (an
// *admit.Pass).
type Pass interface {
	comparable
	// Release gives the admission back.
	Release()
}

// Stream is a transport's session as Serve runs it.
type Stream[P Pass] interface {
	Session
	// Serve writes the stream of the request admitted with pass until
	// the stream ends.
	Serve(pass P)
	// Discard releases a stream that never opened.
	Discard()
}

// Serve runs the request r, which opens a stream, until the stream ends,
// unless Shutdown has begun: then refuse answers it (503). door admits it
// (or answers it); open makes its stream, which is registered under key
// while it is served.
func Serve[K comparable, S Stream[P], P Pass](reg *Sessions[K, S], door Door[P], w http.ResponseWriter, r *http.Request,
	open func(pass P) (key K, s S), refuse func(http.ResponseWriter)) {
	if !reg.gate.Enter() {
		refuse(w)
		return
	}
	defer reg.gate.Leave()
	var none P
	pass := door.Admit(w, r)
	if pass == none {
		return
	}
	defer pass.Release()

	key, s := open(pass)
	if !reg.Register(key, s) {
		s.Discard()
		refuse(w)
		return
	}
	defer reg.Unregister(key, s)
	s.Serve(pass)
}
