// Package node runs a node's control plane on a control.Backend: the
// registry of its sessions, presence and join/leave, revocations, its
// announcement for GET /v1/info, and the server API's actions, which reach
// every node through the backend's broadcast and are answered once every
// live node has acknowledged them.
package node

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/tidings-io/tidings/auth"
	"github.com/tidings-io/tidings/broker"
	"github.com/tidings-io/tidings/control"
	"github.com/tidings-io/tidings/internal/defaults"
	"github.com/tidings-io/tidings/session"
)

// Defaults of Config: what a zero field means.
const (
	DefaultPresenceTTL      = 30 * time.Second
	DefaultFlushInterval    = 100 * time.Millisecond
	DefaultAnnounceInterval = time.Second
	DefaultRevokeFor        = 24 * time.Hour
	DefaultAckTimeout       = time.Second
	DefaultRevocationSync   = 5 * time.Second
)

// Config tunes a Node. A zero field means its default.
type Config struct {
	// Broker holds the node's subscriptions; required.
	Broker *broker.Broker
	// Backend is the store the nodes share; required.
	Backend control.Backend
	// ID names the node (the welcome frame's node); required.
	ID string
	// Version is the build version GET /v1/info reports.
	Version string
	// Presence keeps the presence of every exact topic; JoinLeave sends
	// join and leave frames to every topic's subscribers.
	Presence, JoinLeave bool
	// Topics, when set, says of each topic whether it keeps presence and
	// sends join and leave frames, in place of Presence and JoinLeave
	// (the config file's namespaces). Its answers may change: Reload
	// applies them to the subscriptions already held.
	Topics func(topic string) (presence, joinLeave bool)
	// PresenceTTL is how long a presence entry lives unless its node
	// refreshes it (every third of it): how long the sessions of a node
	// that died stay listed. Default DefaultPresenceTTL.
	PresenceTTL time.Duration
	// FlushInterval is how often the node writes its presence changes,
	// in one round trip, and broadcasts its join/leave events. Default
	// DefaultFlushInterval.
	FlushInterval time.Duration
	// AnnounceInterval is how often the node announces itself; an
	// announcement lives three intervals. Default DefaultAnnounceInterval.
	AnnounceInterval time.Duration
	// RevokeFor is how long a revocation without until lasts: the
	// longest token lifetime the deployment issues. Default
	// DefaultRevokeFor.
	RevokeFor time.Duration
	// AckTimeout bounds the wait for the other nodes' acknowledgements of
	// an action. Default DefaultAckTimeout.
	AckTimeout time.Duration
	// RevocationSync is how often revocations are read again from the
	// backend (a broadcast missed while disconnected is caught then).
	// Default DefaultRevocationSync.
	RevocationSync time.Duration
	// Logger receives the node's events; nil: slog.Default().
	Logger *slog.Logger
}

// configDefaults is the default of each Config field that has one.
var configDefaults = Config{
	PresenceTTL:      DefaultPresenceTTL,
	FlushInterval:    DefaultFlushInterval,
	AnnounceInterval: DefaultAnnounceInterval,
	RevokeFor:        DefaultRevokeFor,
	AckTimeout:       DefaultAckTimeout,
	RevocationSync:   DefaultRevocationSync,
}

func (c Config) withDefaults() Config {
	defaults.Zero(&c.Logger, slog.Default()) // the default when New runs
	return defaults.Fill(c, configDefaults)
}

// Node is a node's control plane. It implements session.Registry,
// session.PresenceReader and broker.SubscriptionObserver.
type Node struct {
	cfg     Config
	log     *slog.Logger
	started time.Time

	sessions registry
	presence tracker
	revoked  revocations
	requests requests

	rateMu sync.Mutex // guards last
	last   rates

	inbox  chan []byte // broadcast messages, handled in order
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

var (
	_ session.Registry            = (*Node)(nil)
	_ session.PresenceReader      = (*Node)(nil)
	_ broker.SubscriptionObserver = (*Node)(nil)
)

// New returns the node's control plane; Start runs it.
func New(cfg Config) *Node {
	cfg = cfg.withDefaults()
	n := &Node{cfg: cfg, log: cfg.Logger, started: time.Now(), inbox: make(chan []byte, 4096)}
	n.sessions.init()
	n.presence.init()
	n.revoked.init()
	n.requests.init()
	n.ctx, n.cancel = context.WithCancel(context.Background())
	return n
}

// Start subscribes to the broadcasts, observes the broker's
// subscriptions, announces the node and reads the revocations, then runs
// the node's loops until Close. It fails when the backend cannot be
// reached for the first announcement.
func (n *Node) Start(ctx context.Context) error {
	n.cfg.Backend.OnBroadcast(n.receive)
	n.cfg.Broker.SetObserver(n)
	if err := n.announce(ctx); err != nil {
		return err
	}
	if err := n.syncRevocations(ctx); err != nil {
		n.log.Warn("reading revocations failed", "err", err)
	}
	n.wg.Add(4)
	go n.handleLoop()
	go n.flushLoop()
	go n.announceLoop()
	go n.revocationLoop()
	return nil
}

// Close writes the presence changes still pending (the removal of the
// sessions that have ended) and stops the node's loops.
func (n *Node) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	n.flush(ctx)
	n.cancel()
	n.wg.Wait()
}

// Check reports whether claims were revoked, for auth.Verifier's
// CheckRevocation.
func (n *Node) Check(c *auth.Claims) bool { return n.revoked.match(c.Subject, c.TokenID, time.Now()) }

// Add registers s (session.Registry).
func (n *Node) Add(s *session.Session) { n.sessions.add(s) }

// Remove unregisters s (session.Registry).
func (n *Node) Remove(s *session.Session) { n.sessions.remove(s) }

// Target names the sessions an action applies to: those of User, or the
// one with id Session. Exactly one is set.
type Target struct {
	// User selects every session of the user.
	User string `json:"user,omitempty"`
	// Session selects one session by id.
	Session string `json:"session,omitempty"`
}

func (t Target) validate() error {
	if (t.User == "") == (t.Session == "") {
		return broker.NewError(broker.ErrBadRequest, "name exactly one of user and session")
	}
	return nil
}

// Disconnect closes the sessions of t, on every node, with code
// (4000–4999; 0: 4000) and reason.
func (n *Node) Disconnect(ctx context.Context, t Target, code uint16, reason string) error {
	if err := t.validate(); err != nil {
		return err
	}
	if code == 0 {
		code = session.CauseDisconnected.Code()
	}
	if code < 4000 || code > 4999 {
		return broker.NewError(broker.ErrBadRequest, "code must be from 4000 to 4999")
	}
	if len(reason) > maxReason {
		return broker.NewError(broker.ErrBadRequest, "reason is longer than %d bytes", maxReason)
	}
	if reason == "" {
		reason = session.CauseDisconnected.Reason()
	}
	_, err := n.request(ctx, envelope{Kind: kindDisconnect, Target: t, Code: code, Reason: reason})
	return err
}

// maxReason bounds a close reason: a close frame's payload is at most 125
// bytes, two of them the code.
const maxReason = 123

// Unsubscribe ends the subscriptions of t's sessions to topic, on every
// node; each is told with `unsubscribed` without ref.
func (n *Node) Unsubscribe(ctx context.Context, t Target, topic string) error {
	if err := t.validate(); err != nil {
		return err
	}
	if _, err := broker.ValidatePattern(topic); err != nil {
		return err
	}
	_, err := n.request(ctx, envelope{Kind: kindUnsubscribe, Target: t, Topic: topic})
	return err
}

// Subscribe subscribes t's sessions to topic, on every node: `subscribed`
// without ref, then the stream, after since when given.
func (n *Node) Subscribe(ctx context.Context, t Target, topic string, since *broker.Position) error {
	if err := t.validate(); err != nil {
		return err
	}
	wildcard, err := broker.ValidatePattern(topic)
	if err != nil {
		return err
	}
	if wildcard && since != nil {
		return broker.ErrSinceOnWildcard
	}
	_, err = n.request(ctx, envelope{Kind: kindSubscribe, Target: t, Topic: topic, Since: since})
	return err
}

// Revoke refuses r's tokens until r.Until (zero: RevokeFor from now): it
// is stored for every node, and the live sessions it names are closed
// with 1008 `token revoked` on every node.
func (n *Node) Revoke(ctx context.Context, r control.Revocation) error {
	if (r.User == "") == (r.TokenID == "") {
		return broker.NewError(broker.ErrBadRequest, "name exactly one of user and jti")
	}
	now := time.Now()
	if r.Until.IsZero() {
		r.Until = now.Add(n.cfg.RevokeFor)
	}
	if !r.Until.After(now) {
		return broker.NewError(broker.ErrBadRequest, "until is in the past")
	}
	if err := n.cfg.Backend.Revoke(ctx, r); err != nil {
		return broker.WrapError(broker.ErrUnavailable, err)
	}
	_, err := n.request(ctx, envelope{Kind: kindRevoke, Revocation: &r})
	return err
}

// Presence lists the sessions on topic, of every node
// (session.PresenceReader).
func (n *Node) Presence(ctx context.Context, topic string) ([]control.PresenceEntry, error) {
	if err := n.presenceOn(topic); err != nil {
		return nil, err
	}
	entries, err := n.cfg.Backend.Presence(ctx, topic)
	if err != nil {
		return nil, broker.WrapError(broker.ErrUnavailable, err)
	}
	if entries == nil {
		entries = []control.PresenceEntry{}
	}
	return entries, nil
}

// PresenceStats counts the sessions and users on topic, of every node
// (session.PresenceReader).
func (n *Node) PresenceStats(ctx context.Context, topic string) (control.PresenceStats, error) {
	if err := n.presenceOn(topic); err != nil {
		return control.PresenceStats{}, err
	}
	st, err := n.cfg.Backend.PresenceStats(ctx, topic)
	if err != nil {
		return control.PresenceStats{}, broker.WrapError(broker.ErrUnavailable, err)
	}
	return st, nil
}

func (n *Node) presenceOn(topic string) error {
	if err := broker.ValidateTopic(topic); err != nil {
		return err
	}
	if presence, _ := n.topic(topic); !presence {
		return broker.NewError(broker.ErrBadRequest, "presence is not enabled for %s", topic)
	}
	return nil
}

// Topics lists the topics with exact subscribers on any node that match
// pattern ("": all), busiest first, at most limit.
func (n *Node) Topics(ctx context.Context, pattern string, limit int) ([]broker.TopicCount, error) {
	if pattern != "" {
		if _, err := broker.ValidatePattern(pattern); err != nil {
			return nil, err
		}
	}
	replies, err := n.request(ctx, envelope{Kind: kindTopics, Topic: pattern, Limit: limit})
	if err != nil {
		return nil, err
	}
	sum := make(map[string]int)
	for _, r := range replies {
		for _, t := range r.Topics {
			sum[t.Topic] += t.Subscribers
		}
	}
	out := make([]broker.TopicCount, 0, len(sum))
	for t, c := range sum {
		out = append(out, broker.TopicCount{Topic: t, Subscribers: c})
	}
	broker.SortTopics(out)
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// Nodes lists the live nodes with their figures, by id.
func (n *Node) Nodes(ctx context.Context) ([]control.NodeInfo, error) {
	nodes, err := n.cfg.Backend.Nodes(ctx)
	if err != nil {
		return nil, broker.WrapError(broker.ErrUnavailable, err)
	}
	sortNodes(nodes)
	return nodes, nil
}

// request broadcasts env as a request and waits until every live node has
// answered it, or AckTimeout; it returns the answers.
func (n *Node) request(ctx context.Context, env envelope) ([]envelope, error) {
	nodes, err := n.cfg.Backend.Nodes(ctx)
	if err != nil {
		return nil, broker.WrapError(broker.ErrUnavailable, err)
	}
	want := make(map[string]bool, len(nodes)+1)
	for _, nd := range nodes {
		want[nd.ID] = true
	}
	want[n.cfg.ID] = true
	env.ID, env.From = uuid.NewString(), n.cfg.ID
	p := n.requests.open(env.ID, want)
	defer n.requests.close(env.ID)
	msg, err := json.Marshal(env)
	if err != nil {
		return nil, err
	}
	if err := n.cfg.Backend.Broadcast(ctx, msg); err != nil {
		return nil, broker.WrapError(broker.ErrUnavailable, err)
	}
	t := time.NewTimer(n.cfg.AckTimeout)
	defer t.Stop()
	select {
	case <-p.done:
		return p.replies(), nil
	case <-t.C:
		missing := p.missing()
		n.log.Warn("nodes did not acknowledge an action in time", "action", env.Kind, "nodes", missing)
		return p.replies(), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}
