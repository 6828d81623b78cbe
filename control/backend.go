// Package control is a node's control plane: the sessions it holds by id
// and user, presence and join/leave, revocations, the node's announcement
// for the cluster view, and the actions of the server API (disconnect,
// subscribe, unsubscribe, revoke) carried to every node. Stores implement
// Backend: in process for the memory store, through Redis for a cluster.
package control

import (
	"context"
	"encoding/json"
	"strings"
	"time"

	"github.com/tidings-io/tidings/protocol"
)

// Backend is what the control plane needs of the store all nodes share.
// Every method is safe for concurrent use.
type Backend interface {
	// Broadcast sends msg, an opaque control message, to every node
	// sharing the store, this one included; it returns once the store has
	// taken it. Delivery is best effort: a node disconnected from the
	// store at that moment misses it.
	Broadcast(ctx context.Context, msg []byte) error
	// OnBroadcast sets the function that receives every broadcast
	// message, in the order the store relays them. It is called before
	// the node starts and never concurrently with itself.
	OnBroadcast(func(msg []byte))

	// UpdatePresence applies u in one round trip to the store (one per
	// shard on a cluster).
	UpdatePresence(ctx context.Context, u PresenceUpdate) error
	// Presence lists the live presence entries of topic (not expired).
	Presence(ctx context.Context, topic string) ([]PresenceEntry, error)
	// PresenceStats counts the live entries of topic and their distinct
	// non-empty users, at a cost that does not grow with their number
	// (beyond removing the entries that expired since the last call).
	PresenceStats(ctx context.Context, topic string) (PresenceStats, error)

	// Revoke records r until r.Until.
	Revoke(ctx context.Context, r Revocation) error
	// Revocations lists the revocations whose Until is still ahead.
	Revocations(ctx context.Context) ([]Revocation, error)

	// Announce records n as live for ttl; announcing again extends it.
	Announce(ctx context.Context, n NodeInfo, ttl time.Duration) error
	// Nodes lists the nodes whose last announcement has not expired.
	Nodes(ctx context.Context) ([]NodeInfo, error)
}

// PresenceEntry is one session on a topic.
type PresenceEntry struct {
	// Topic is the exact topic.
	Topic string `json:"-"`
	// Session is the session id.
	Session string `json:"session"`
	// User is the session's user; "" for anonymous sessions.
	User string `json:"user"`
	// Info is the token's info claim, or nil.
	Info json.RawMessage `json:"info,omitempty"`
	// Node is the id of the node that holds the session.
	Node string `json:"node"`
}

// PresenceKey names one entry to remove.
type PresenceKey struct {
	// Topic is the exact topic.
	Topic string
	// Session is the session id.
	Session string
}

// PresenceUpdate is a node's batch of presence changes.
type PresenceUpdate struct {
	// Add adds entries, or extends them when present: every entry a node
	// holds is added again each refresh interval, so that an entry lost
	// by the store comes back and one whose node died expires.
	Add []PresenceEntry
	// Remove removes entries; an absent entry is no error.
	Remove []PresenceKey
	// TTL is how long the added entries live unless added again; a zero
	// TTL is a defect of the caller.
	TTL time.Duration
}

// PresenceStats counts a topic's presence.
type PresenceStats struct {
	// Sessions is the number of live entries.
	Sessions int `json:"sessions"`
	// Users is the number of distinct non-empty users among them.
	Users int `json:"users"`
}

// Revocation refuses the tokens of a user, or one token by its jti, until
// a time. Exactly one of User and TokenID is set.
type Revocation struct {
	// User is the revoked user (the tokens' sub).
	User string `json:"user,omitempty"`
	// TokenID is the revoked token's jti.
	TokenID string `json:"jti,omitempty"`
	// Until is when the revocation ends.
	Until time.Time `json:"until"`
}

// Key is where a store keeps r: "user:<U>" or "jti:<J>"; "" when r does
// not name exactly one of a user and a token id.
func (r Revocation) Key() string {
	switch {
	case r.User != "" && r.TokenID == "":
		return "user:" + r.User
	case r.TokenID != "" && r.User == "":
		return "jti:" + r.TokenID
	default:
		return ""
	}
}

// RevocationOf is the revocation kept at key (see Key) until until; ok is
// false for a key Key does not make.
func RevocationOf(key string, until time.Time) (r Revocation, ok bool) {
	if user, found := strings.CutPrefix(key, "user:"); found && user != "" {
		return Revocation{User: user, Until: until}, true
	}
	if jti, found := strings.CutPrefix(key, "jti:"); found && jti != "" {
		return Revocation{TokenID: jti, Until: until}, true
	}
	return Revocation{}, false
}

// NodeInfo is what a node announces of itself: the figures GET /v1/info
// lists (see protocol.NodeInfo).
type NodeInfo = protocol.NodeInfo
