package node

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/tidings-io/tidings/broker"
	"github.com/tidings-io/tidings/protocol"
)

// MaxSessionTopics is the most subscriptions listed per session; its
// SubscriptionsTotal counts them all.
const MaxSessionTopics = 100

// SessionInfo describes one live session, on whichever node holds it.
type SessionInfo struct {
	// Session is the session id.
	Session string `json:"session"`
	// User is the session's user; "" when anonymous.
	User string `json:"user"`
	// Node is the id of the node that holds the session.
	Node string `json:"node"`
	// Remote is the client's address as the node saw it.
	Remote string `json:"remote"`
	// Transport names the session's transport: websocket, sse,
	// http-stream.
	Transport string `json:"transport"`
	// Subscriptions are the session's topics and patterns, sorted, at
	// most MaxSessionTopics.
	Subscriptions []string `json:"subscriptions"`
	// SubscriptionsTotal counts every topic and pattern of the session.
	SubscriptionsTotal int `json:"subscriptions_total"`
	// ConnectedAt is when the session began.
	ConnectedAt time.Time `json:"connected_at"`
}

// Sessions lists the live sessions of t, on every node, oldest first,
// at most limit (protocol.SessionsLimit: 0 for its default). Each
// node answers with at most limit of its own.
func (n *Node) Sessions(ctx context.Context, t Target, limit int) ([]SessionInfo, error) {
	if err := t.validate(); err != nil {
		return nil, err
	}
	limit, ok := protocol.SessionsLimit.Of(limit)
	if !ok {
		return nil, broker.NewError(broker.ErrBadRequest, "limit must be a whole number from 1 to %d", protocol.SessionsLimit.Max)
	}
	replies, err := n.request(ctx, envelope{Kind: kindSessions, Target: t, Limit: limit})
	if err != nil {
		return nil, err
	}
	out := []SessionInfo{}
	for _, r := range replies {
		out = append(out, r.Sessions...)
	}
	sortSessions(out)
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// localSessions describes this node's sessions of t, oldest first, at
// most limit.
func (n *Node) localSessions(t Target, limit int) []SessionInfo {
	found := n.sessions.find(t)
	out := make([]SessionInfo, 0, min(len(found), limit))
	for _, s := range found {
		topics, total := s.Broker().Subscriptions(MaxSessionTopics)
		out = append(out, SessionInfo{
			Session: s.ID(), User: s.Subject(), Node: n.cfg.ID, Remote: s.Remote(),
			Transport: s.Transport(), Subscriptions: topics, SubscriptionsTotal: total,
			ConnectedAt: s.Started().UTC(),
		})
	}
	sortSessions(out)
	if len(out) > limit {
		out = out[:limit]
	}
	return out
}

func sortSessions(s []SessionInfo) {
	slices.SortFunc(s, func(a, b SessionInfo) int {
		if c := a.ConnectedAt.Compare(b.ConnectedAt); c != 0 {
			return c
		}
		return strings.Compare(a.Session, b.Session)
	})
}
