package session

import (
	"math"

	"github.com/tidings-io/tidings/broker"
	"github.com/tidings-io/tidings/internal/defaults"
	"golang.org/x/time/rate"
)

// ClientPublish says which sessions may publish to a topic.
type ClientPublish int

// Who may publish.
const (
	// PublishAnyone: any session its permissions allow.
	PublishAnyone ClientPublish = iota
	// PublishAuthenticated: sessions with a user (Info.Subject), within
	// their permissions.
	PublishAuthenticated
	// PublishNone: no session.
	PublishNone
)

// Rules are the options of topics' namespaces (the config file's) that
// sessions apply on top of their permissions. They may change while
// sessions run (Session.Recheck applies them to the subscriptions held).
type Rules interface {
	// AnonymousSubscribe reports whether a session without a user may
	// subscribe to pattern, or read the history or presence of a topic.
	AnonymousSubscribe(pattern string) bool
	// ClientPublish says which sessions may publish to topic.
	ClientPublish(topic string) ClientPublish
}

// anonymous is an anonymous session's permissions under the rules:
// what its own permissions allow, less the topics closed to anonymous
// subscribers.
type anonymous struct {
	perms broker.Permissions // nil: everything
	rules Rules
}

func (a anonymous) AllowSubscribe(pattern string) bool {
	return a.rules.AnonymousSubscribe(pattern) && (a.perms == nil || a.perms.AllowSubscribe(pattern))
}

func (a anonymous) AllowPublish(topic string) bool {
	return a.perms == nil || a.perms.AllowPublish(topic)
}

// effective returns the permissions the broker applies to a session with
// perms: perms, and for a session without a user the rules too. Call
// with s.mu held, or before the session is shared.
func (s *Session) effective(perms broker.Permissions) broker.Permissions {
	if s.cfg.Rules == nil || s.info.Subject != "" {
		return perms
	}
	return anonymous{perms: perms, rules: s.cfg.Rules}
}

// permissions returns the session's effective permissions (nil: all).
func (s *Session) permissions() broker.Permissions {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.effective(s.info.Permissions)
}

// Recheck applies the rules, which have changed, to the subscriptions
// the session holds: those no longer allowed end, each announced by an
// `unsubscribed` without ref, as after a refresh.
func (s *Session) Recheck() {
	if s.cfg.Rules == nil || s.info.Subject != "" {
		return
	}
	for _, p := range s.bs.SetPermissions(s.permissions()) {
		s.t.Reply(Unsubscribed{Type: "unsubscribed", Topic: p})
	}
}

// checkClientPublish returns an error wrapping broker.ErrForbidden when
// the rules close topic to the session's publishes.
func (s *Session) checkClientPublish(topic string) error {
	if s.cfg.Rules == nil || broker.ValidateTopic(topic) != nil {
		return nil // an invalid topic is the publish's to refuse
	}
	switch s.cfg.Rules.ClientPublish(topic) {
	case PublishNone:
		return broker.NewError(broker.ErrForbidden, "forbidden: clients may not publish to %s", topic)
	case PublishAuthenticated:
		if s.info.Subject == "" {
			return broker.NewError(broker.ErrForbidden, "forbidden: publishing to %s needs an authenticated session", topic)
		}
	}
	return nil
}

// OpLimits are a session's command rate. A transport's Config embeds
// them, and there the zero value of each field means its default
// (WithDefaults); a session (Config) takes them as they are.
type OpLimits struct {
	// OpRate is the sustained rate of commands (and pings) per second a
	// session may send; a command over it is answered with `error`
	// `rate_limited`, a ping is not answered. Default 500; negative (for
	// a session, 0 or less): no limit.
	OpRate float64
	// OpBurst is how many commands a session may send at once above
	// OpRate. Default 1000.
	OpBurst int
	// OpRefusals is how many commands over its rate a session may send,
	// an allowance that refills at a tenth of OpRate, before it is closed
	// with 1008 `rate limit exceeded` (CauseRateLimited). Default
	// OpBurst.
	OpRefusals int
}

// The defaults of OpLimits.
const (
	DefaultOpRate  = 500
	DefaultOpBurst = 1000
)

// WithDefaults returns l with its defaults where its fields are zero
// (OpBurst and OpRefusals: zero or negative).
func (l OpLimits) WithDefaults() OpLimits {
	defaults.Zero(&l.OpRate, DefaultOpRate)
	defaults.Positive(&l.OpBurst, DefaultOpBurst)
	defaults.Positive(&l.OpRefusals, l.OpBurst)
	return l
}

// opLimiter is a session's command rate: ops takes commands and pings,
// strikes the refusals of those over the rate; both nil: no limit.
type opLimiter struct {
	ops, strikes *rate.Limiter
}

// newOpLimiter returns the limiter of l, full.
func newOpLimiter(l OpLimits) *opLimiter {
	if l.OpRate <= 0 || math.IsInf(l.OpRate, 1) {
		return &opLimiter{}
	}
	return &opLimiter{
		ops:     rate.NewLimiter(rate.Limit(l.OpRate), l.OpBurst),
		strikes: rate.NewLimiter(rate.Limit(l.OpRate/10), l.OpRefusals),
	}
}

// SetOpLimits changes the session's command rate to l, starting full
// (the transport's limits were reloaded).
func (s *Session) SetOpLimits(l OpLimits) { s.lim.Store(newOpLimiter(l)) }
