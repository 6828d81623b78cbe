package session

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tidings-io/tidings/auth"
	"github.com/tidings-io/tidings/broker"
	"github.com/tidings-io/tidings/control"
	"github.com/tidings-io/tidings/hooks"
	"github.com/tidings-io/tidings/internal/gate"
	"github.com/tidings-io/tidings/limit"
	"github.com/tidings-io/tidings/protocol"
	"go.opentelemetry.io/otel/trace"
)

// Transport is what a session needs of the connection that carries it.
type Transport interface {
	// Reply queues reply, a JSON value (one of this package's reply
	// types), to the client, after what is queued already.
	Reply(reply any)
	// Close ends the session for cause: the transport tells the client
	// (on a WebSocket, a close frame with the cause's code and reason)
	// and closes the connection. The first close wins.
	Close(cause Cause)
	// Disconnect closes as Close(CauseDisconnected) does, with code
	// (4000–4999) and reason in place of the cause's.
	Disconnect(code uint16, reason string)
}

// Registry is told of every session of a transport while it lives: the
// node's control plane, which finds sessions by id and user.
type Registry interface {
	// Add registers s, a session that has begun.
	Add(s *Session)
	// Remove unregisters s, a session that has ended.
	Remove(s *Session)
}

// PresenceReader reads presence for the presence ops.
type PresenceReader interface {
	// Presence lists the sessions on topic; an error wrapping
	// broker.ErrBadRequest when the topic has no presence.
	Presence(ctx context.Context, topic string) ([]control.PresenceEntry, error)
	// PresenceStats counts them.
	PresenceStats(ctx context.Context, topic string) (control.PresenceStats, error)
}

// TokenVerifier checks session tokens; *auth.Verifier implements it.
type TokenVerifier interface {
	// Verify returns what token grants, or an error whose text may be
	// shown to the client.
	Verify(ctx context.Context, token string) (*auth.Claims, error)
	// Leeway is the clock skew allowed on expiry: a session ends at its
	// token's exp plus Leeway.
	Leeway() time.Duration
}

// RefusalReasons lists the sessions' refusal reasons, for a transport's
// tally.
var RefusalReasons = []limit.Reason{
	limit.ReasonOpRate, limit.ReasonOpAbuse, limit.ReasonForbidden, limit.ReasonSubscriptions,
	limit.ReasonTokenExpired, limit.ReasonRefresh, limit.ReasonTokenRevoked,
}

// Services are what a node gives the sessions of its transports: token
// verification, the control plane, presence, the namespaces' rules and
// the backend's hooks. Config and each transport's Config embed them; a
// transport passes them on to its sessions, and Tokens and Hooks to the
// door of its own when it is given none.
type Services struct {
	// Tokens verifies session tokens: the token of a `refresh` and, at a
	// transport's own door, that of the request that opens a session
	// (the `token` query parameter or `Authorization: Bearer`; a missing
	// or refused token gets 401). nil: sessions are anonymous, may
	// subscribe to anything and may publish only from a loopback
	// address; refresh is refused.
	Tokens TokenVerifier
	// Registry, when set, is told of every session (see Registry): the
	// node's control plane (disconnect, revoke, server-side
	// subscriptions).
	Registry Registry
	// Presence answers the presence ops; nil: presence is off.
	Presence PresenceReader
	// Rules are the namespaces' rules on subscribing and publishing; nil:
	// none.
	Rules Rules
	// Hooks asks the application's backend about subscribes, publishes
	// and refreshes (and, at a transport's own door, connects); nil: no
	// hook.
	Hooks *hooks.Hooks
	// HookApplies reports whether the hook named (subscribe, publish)
	// applies to topic (its namespace's proxy list); nil: every hook that
	// is on applies everywhere.
	HookApplies func(hook, topic string) bool
}

// Config is what every session of a transport shares.
type Config struct {
	// Services are what the node gives the sessions.
	Services
	// OpLimits are the command rate of each session, taken as they are
	// (no defaults), unless Limits is set.
	OpLimits
	// Broker runs the sessions' subscriptions and publishes.
	Broker *broker.Broker
	// Publishes admits publishes until shutdown and waits for them.
	Publishes *gate.Gate
	// Refused counts refusals by reason (limit.Reason*); it must know
	// RefusalReasons.
	Refused *limit.Tally
	// Tracer starts the publish spans; nil: tracing off.
	Tracer trace.Tracer
	// Protocol names the transport in spans (network.protocol.name).
	Protocol string
	// API is what the transport's publishes are counted under (broker.APIWS, …).
	API string
	// Limits, when set, returns the command rate of a new session in
	// place of OpLimits: the transport's current limits, which a reload
	// may change.
	Limits func() OpLimits
}

// Info is what a transport knows of a session when it begins.
type Info struct {
	// ID is the session id the client was told.
	ID string
	// Remote is the peer's address, for spans and logs.
	Remote string
	// Subject is the token's sub, the session's user; "" for anonymous
	// sessions.
	Subject string
	// UserInfo is the token's info claim (a JSON object), or nil.
	UserInfo json.RawMessage
	// TokenID is the token's jti, or "".
	TokenID string
	// Claims are what the session's token grants (nil without one), for
	// the backend hooks.
	Claims *auth.Claims
	// Headers and Cookies are the ones of the request that opened the
	// session that the hooks forward (hooks.Forwarded).
	Headers, Cookies map[string]string
	// Permissions are what the session may subscribe and publish to.
	Permissions broker.Permissions
	// Link is the trace of the request that opened the session, when it
	// carried one; publish spans link to it.
	Link trace.SpanContext
	// Log returns the session's logger (made on first use: most sessions
	// never log).
	Log func() *slog.Logger
}

// Session is what a client's session does with its commands, on any
// transport: subscribe, unsubscribe, publish, ping and refresh, within
// its permissions and command rate, and the end of its token.
type Session struct {
	cfg   *Config
	t     Transport
	bs    *broker.Session
	info  Info
	ctx   context.Context // ended with the session
	pubCx context.Context // ctx, counted under cfg.API

	lim atomic.Pointer[opLimiter] // the command rate; SetOpLimits replaces it

	started time.Time // when New made the session

	// mu guards expiry and the permissions a refresh replaces.
	mu     sync.Mutex
	expiry *time.Timer
	ended  bool
}

// New returns the session of bs carried by t; ctx ends with it.
func New(ctx context.Context, cfg *Config, t Transport, bs *broker.Session, info Info) *Session {
	s := &Session{cfg: cfg, t: t, bs: bs, info: info, ctx: ctx, pubCx: broker.WithAPI(ctx, cfg.API), started: time.Now()}
	limits := cfg.OpLimits
	if cfg.Limits != nil {
		limits = cfg.Limits()
	}
	s.lim.Store(newOpLimiter(limits))
	bs.SetPermissions(s.effective(info.Permissions))
	bs.SetIdentity(info.ID, info.Subject, info.UserInfo)
	if cfg.Registry != nil {
		cfg.Registry.Add(s)
	}
	return s
}

// ID returns the session's id.
func (s *Session) ID() string { return s.info.ID }

// TokenID returns the jti of the session's token, or "" ("" too for an
// anonymous session). A refresh may change it.
func (s *Session) TokenID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.info.TokenID
}

// Remote returns the peer's address the transport gave (Info.Remote).
func (s *Session) Remote() string { return s.info.Remote }

// Transport names the transport that carries the session
// (Config.Protocol: "websocket", "sse", ...).
func (s *Session) Transport() string { return s.cfg.Protocol }

// Started returns when the session began.
func (s *Session) Started() time.Time { return s.started }

// Broker returns the broker session.
func (s *Session) Broker() *broker.Session { return s.bs }

// Subject returns the subject of the session's token, its user ("" when
// anonymous).
func (s *Session) Subject() string { return s.info.Subject }

// UserInfo returns the token's info claim, or nil.
func (s *Session) UserInfo() json.RawMessage { return s.info.UserInfo }

// SubscribeChannels subscribes the session to the exact topics of its
// token's channels claim (server-side subscriptions): each answered with
// `subscribed` without ref. The transport calls it once the welcome is
// queued, before the client's first command. A subscription that fails
// is answered with an `error` without ref that names the topic.
func (s *Session) SubscribeChannels(topics []string) {
	for _, t := range topics {
		if err := s.bs.Subscribe(s.ctx, "", t, nil); err != nil {
			if errors.Is(err, broker.ErrUnavailable) {
				s.info.Log().Warn("server-side subscription failed", "topic", t, "err", err)
			}
			e := broker.ClientError(err)
			s.t.Reply(Error{Type: "error", Code: e.Code, Message: "subscription to " + t + " from the token: " + e.Message})
		}
	}
}

// Handle runs one client message, a command. It reports whether the
// session was closed (the message was not a JSON object, or the client
// kept going over its rate): the transport then reads no more.
func (s *Session) Handle(p []byte) (closed bool) {
	cmd, err := DecodeCommand(p)
	if errors.Is(err, ErrNotObject) {
		s.t.Close(CauseNotObject)
		return true
	}
	if ok, abuse := s.allowOp(); !ok {
		return s.opRefused(cmd.Ref, abuse)
	}
	if err != nil {
		s.replyError(cmd.Ref, err)
		return false
	}
	switch cmd.Op {
	case "ping":
		s.t.Reply(Pong{Type: "pong", Ref: cmd.Ref})
	case "subscribe":
		s.subscribe(cmd)
	case "unsubscribe":
		s.unsubscribe(cmd)
	case "publish":
		s.publish(cmd)
	case "refresh":
		s.refresh(cmd)
	case "history":
		s.history(cmd)
	case "presence", "presence_stats":
		s.presence(cmd)
	}
	return false
}

// AllowPing takes a transport-level ping (a WebSocket ping frame) from the
// session's command rate. answer is false over the rate: the ping is not
// answered; closed is true when the session was closed for going over it
// repeatedly.
func (s *Session) AllowPing() (answer, closed bool) {
	ok, abuse := s.allowOp()
	if ok {
		return true, false
	}
	return false, abuse && s.opRefused("", abuse)
}

func (s *Session) subscribe(cmd Command) {
	if _, _, err := s.hook(s.ctx, hooks.Subscribe, cmd.Topic, nil, nil); s.hookRefused(cmd.Ref, hooks.Subscribe, err) {
		return
	}
	if err := s.bs.Subscribe(s.ctx, cmd.Ref, cmd.Topic, cmd.Since); err != nil {
		if errors.Is(err, broker.ErrUnavailable) {
			s.info.Log().Warn("subscribe failed", "err", err)
		}
		s.countRefusal(err)
		s.replyError(cmd.Ref, err)
	}
}

func (s *Session) unsubscribe(cmd Command) {
	if _, err := broker.ValidatePattern(cmd.Topic); err != nil {
		s.replyError(cmd.Ref, err)
		return
	}
	if err := s.bs.Unsubscribe(cmd.Topic); err != nil {
		s.replyError(cmd.Ref, err)
		return
	}
	s.t.Reply(Unsubscribed{Type: "unsubscribed", Ref: cmd.Ref, Topic: cmd.Topic})
}

// replyError queues an `error` reply: what the client is told of err.
func (s *Session) replyError(ref string, err error) {
	e := broker.ClientError(err)
	s.t.Reply(Error{Type: "error", Ref: ref, Code: e.Code, Message: e.Message})
}

// countRefusal counts an error of a subscribe or publish that is a
// refusal by permission or limit.
func (s *Session) countRefusal(err error) {
	switch {
	case errors.Is(err, broker.ErrForbidden):
		s.cfg.Refused.Add(limit.ReasonForbidden)
	case errors.Is(err, broker.ErrTooManySubscriptions):
		s.cfg.Refused.Add(limit.ReasonSubscriptions)
	}
}

// allowOp takes one command (or ping) from the session's rate. When the
// rate is exceeded it counts the refusal and reports whether the session
// has now used up its allowance of refusals: then it must be closed.
func (s *Session) allowOp() (ok, abuse bool) {
	l := s.lim.Load()
	if l.ops == nil || l.ops.Allow() {
		return true, false
	}
	if l.strikes.Allow() {
		s.cfg.Refused.Add(limit.ReasonOpRate)
		return false, false
	}
	s.cfg.Refused.Add(limit.ReasonOpAbuse)
	return false, true
}

// opRefused answers a command over the rate, or closes an abusive
// session; it reports whether the session was closed.
func (s *Session) opRefused(ref string, abuse bool) bool {
	if abuse {
		s.info.Log().Info("rate limit exceeded repeatedly", "sub", s.info.Subject)
		s.t.Close(CauseRateLimited)
		return true
	}
	var limit float64
	if l := s.lim.Load(); l.ops != nil {
		limit = float64(l.ops.Limit())
	}
	s.replyError(ref, broker.NewError(broker.ErrRateLimited, "too many commands: at most %g per second", limit))
	return false
}

// ArmExpiry (re)schedules the close of the session at its token's expiry,
// exp (plus the verifier's leeway).
func (s *Session) ArmExpiry(exp time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return
	}
	var leeway time.Duration
	if s.cfg.Tokens != nil {
		leeway = s.cfg.Tokens.Leeway()
	}
	d := time.Until(exp.Add(leeway))
	if s.expiry == nil {
		s.expiry = time.AfterFunc(d, s.expire)
		return
	}
	s.expiry.Reset(d)
}

// expire closes the session: its token has expired.
func (s *Session) expire() {
	s.mu.Lock()
	ended := s.ended
	s.mu.Unlock()
	if ended {
		return
	}
	s.cfg.Refused.Add(limit.ReasonTokenExpired)
	s.info.Log().Info("token expired", "sub", s.info.Subject)
	s.t.Close(CauseTokenExpired)
}

// End stops what the session has scheduled (its token's expiry). The
// transport calls it when the session ends.
func (s *Session) End() {
	s.mu.Lock()
	already := s.ended
	s.ended = true
	if s.expiry != nil {
		s.expiry.Stop()
	}
	s.mu.Unlock()
	if !already && s.cfg.Registry != nil {
		s.cfg.Registry.Remove(s)
	}
}

// refresh replaces the session's token. Subscriptions the new token does
// not allow are dropped, each announced by an `unsubscribed` without ref;
// then `refreshed` answers. A refused token leaves the session as it was.
func (s *Session) refresh(cmd Command) {
	if s.cfg.Tokens == nil {
		s.replyError(cmd.Ref, broker.NewError(broker.ErrBadRequest, "refresh needs token authentication, which this server does not use"))
		return
	}
	claims, err := s.cfg.Tokens.Verify(s.ctx, cmd.Token)
	if err != nil {
		if errors.Is(err, auth.ErrTokenRevoked) {
			s.cfg.Refused.Add(limit.ReasonTokenRevoked)
		} else {
			s.cfg.Refused.Add(limit.ReasonRefresh)
		}
		if broker.ClientError(err).Code != protocol.CodeUnauthorized {
			err = broker.WrapErrorf(broker.ErrUnauthorized, err, "token is not valid")
		}
		s.replyError(cmd.Ref, err)
		return
	}
	if claims.Subject != s.info.Subject {
		s.cfg.Refused.Add(limit.ReasonRefresh)
		s.replyError(cmd.Ref, broker.NewError(broker.ErrForbidden, "the token is for another subject than the session's"))
		return
	}
	if a, asked, err := s.hook(s.ctx, hooks.Refresh, "", nil, claims); s.hookRefused(cmd.Ref, hooks.Refresh, err) {
		s.cfg.Refused.Add(limit.ReasonRefresh)
		return
	} else if asked && !a.Expires.IsZero() {
		claims.Expires = a.Expires // the backend sets when the session ends
	}
	s.mu.Lock()
	s.info.Permissions = claims.Permissions
	s.info.TokenID = claims.TokenID
	s.info.Claims = claims
	perms := s.effective(claims.Permissions)
	s.mu.Unlock()
	for _, p := range s.bs.SetPermissions(perms) {
		s.t.Reply(Unsubscribed{Type: "unsubscribed", Topic: p})
	}
	s.ArmExpiry(claims.Expires)
	s.t.Reply(Refreshed{Type: "refreshed", Ref: cmd.Ref, Expires: claims.Expires.UTC().Format(time.RFC3339)})
}

// Drain ends at shutdown the sessions of a transport, which g counts:
// it closes those list returns with CauseShutdown (each after what it
// queued) and waits for g; at ctx's deadline it cuts those list returns
// then, and waits for them to end. It returns ctx.Err() if the deadline
// was reached, else nil. list appends the transport's sessions to dst.
func Drain[S interface{ Close(Cause) }](ctx context.Context, g *gate.Gate, list func(dst []S) []S, cut func(S)) error {
	all := list(nil)
	for _, s := range all {
		s.Close(CauseShutdown)
	}
	if g.Wait(ctx) == nil {
		return nil
	}
	for _, s := range list(all[:0]) {
		cut(s)
	}
	_ = g.Wait(context.Background())
	return ctx.Err()
}
