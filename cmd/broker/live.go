package main

import (
	"slices"
	"sync/atomic"
	"time"

	"github.com/tidings-io/tidings/broker"
	tdconfig "github.com/tidings-io/tidings/config"
	"github.com/tidings-io/tidings/session"
)

// live is the part of the configuration that a reload replaces at once:
// the namespaces, the options of the topics that match none, and what
// GET /v1/info shows.
type live struct {
	namespaces tdconfig.Namespaces
	fallback   tdconfig.Namespace
	snapshot   *tdconfig.Snapshot
}

// newLive is the live part of c.
func newLive(c config) *live {
	return &live{namespaces: c.namespaces, fallback: c.defaults().Namespace(), snapshot: c.snapshot()}
}

// liveConfig holds the live configuration; every package asks it of a
// topic's options through the funcs and interfaces below, so that a
// reload reaches them all at once (an atomic pointer: a publish or
// subscribe sees the old options or the new, never a mix).
type liveConfig struct {
	p atomic.Pointer[live]
}

func newLiveConfig(c config) *liveConfig {
	l := &liveConfig{}
	l.p.Store(newLive(c))
	return l
}

// of returns the options of topic: its namespace's, or the flags'.
func (l *liveConfig) of(topic string) *tdconfig.Namespace {
	cur := l.p.Load()
	if n := cur.namespaces.Match(topic); n != nil {
		return n
	}
	return &cur.fallback
}

// historyFor is the stores' Config.HistoryFor.
func (l *liveConfig) historyFor(topic string) (int, time.Duration) {
	n := l.of(topic)
	return n.HistorySize, n.HistoryTTL
}

// topicOptions is broker.Config.Topics.
func (l *liveConfig) topicOptions(topic string) broker.TopicOptions {
	n := l.of(topic)
	return broker.TopicOptions{NoRecovery: !n.Recovery, MaxDataSize: n.MaxMessageSize}
}

// presenceFor is control/node's Config.Topics.
func (l *liveConfig) presenceFor(topic string) (presence, joinLeave bool) {
	n := l.of(topic)
	return n.Presence, n.JoinLeave
}

// hookApplies is session.Config.HookApplies: a hook applies to a topic
// unless its namespace's proxy list leaves it out (no list: every hook
// that is on).
func (l *liveConfig) hookApplies(hook, topic string) bool {
	n := l.of(topic)
	return n.Proxy == nil || slices.Contains(n.Proxy, hook)
}

// AnonymousSubscribe implements session.Rules.
func (l *liveConfig) AnonymousSubscribe(pattern string) bool {
	return l.p.Load().namespaces.AllowAnonymous(pattern)
}

// ClientPublish implements session.Rules.
func (l *liveConfig) ClientPublish(topic string) session.ClientPublish {
	switch l.of(topic).ClientPublish {
	case tdconfig.PublishNone:
		return session.PublishNone
	case tdconfig.PublishAuthenticated:
		return session.PublishAuthenticated
	}
	return session.PublishAnyone
}

// settings is httpapi's Config.Settings: the effective configuration.
func (l *liveConfig) settings() any { return l.p.Load().snapshot }

var _ session.Rules = (*liveConfig)(nil)
