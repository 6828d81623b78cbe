package ws

import (
	"github.com/tidings-io/tidings/internal/defaults"
	"github.com/tidings-io/tidings/session"
)

// Limits are the server's limits that may change while it runs: see the
// Config fields of the same names, whose defaults they share.
type Limits struct {
	// MaxMessageSize is the largest inbound message in bytes; zero or
	// negative: DefaultMaxMessageSize.
	MaxMessageSize int
	// OpRate is the commands per second of each session; zero:
	// DefaultOpRate, negative: no limit.
	OpRate float64
	// OpBurst is how many commands a session may send at once above
	// OpRate; zero or negative: DefaultOpBurst.
	OpBurst int
	// OpRefusals is how many commands over its rate a session may send
	// before it is closed; zero or negative: OpBurst.
	OpRefusals int
}

// SetLimits changes the server's limits, for the sessions already open
// too: a message being read when the bound changes is held to the new
// one from its next frame; each session's command rate changes at once.
func (s *Server) SetLimits(l Limits) {
	defaults.Positive(&l.MaxMessageSize, DefaultMaxMessageSize)
	defaults.Zero(&l.OpRate, DefaultOpRate)
	defaults.Positive(&l.OpBurst, DefaultOpBurst)
	defaults.Positive(&l.OpRefusals, l.OpBurst)
	s.maxMessage.Store(int64(l.MaxMessageSize))
	ops := session.OpLimits{Rate: l.OpRate, Burst: l.OpBurst, Refusals: l.OpRefusals}
	s.opLimits.Store(&ops)
	s.mu.Lock()
	sessions := make([]*session.Session, 0, len(s.conns))
	for c := range s.conns {
		if c.session != nil {
			sessions = append(sessions, c.session)
		}
	}
	s.mu.Unlock()
	for _, ss := range sessions {
		ss.SetOpLimits(ops)
	}
}
