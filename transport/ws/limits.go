package ws

import (
	"github.com/tidings-io/tidings/internal/defaults"
	"github.com/tidings-io/tidings/session"
)

// Limits are the server's limits that may change while it runs: the
// Config fields of the same names (session.OpLimits for the Op ones),
// with the same defaults.
type Limits struct {
	MaxMessageSize      int
	OpRate              float64
	OpBurst, OpRefusals int
}

// SetLimits changes the server's limits, for the sessions already open
// too: a message being read when the bound changes is held to the new
// one from its next frame; each session's command rate changes at once.
func (s *Server) SetLimits(l Limits) {
	defaults.Positive(&l.MaxMessageSize, DefaultMaxMessageSize)
	s.maxMessage.Store(int64(l.MaxMessageSize))
	ops := session.OpLimits{OpRate: l.OpRate, OpBurst: l.OpBurst, OpRefusals: l.OpRefusals}.WithDefaults()
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
