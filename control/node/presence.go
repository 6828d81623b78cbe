package node

import (
	"context"
	"encoding/json"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/tidings-io/tidings/broker"
	"github.com/tidings-io/tidings/control"
)

// tracker is the node's presence: its sessions' entries, the changes not
// yet written and the join/leave events not yet broadcast.
type tracker struct {
	mu      sync.Mutex
	local   map[control.PresenceKey]control.PresenceEntry
	changes map[control.PresenceKey]bool // true: add, false: remove
	events  []event
}

func (t *tracker) init() {
	t.local = make(map[control.PresenceKey]control.PresenceEntry)
	t.changes = make(map[control.PresenceKey]bool)
}

// Subscribed records s's presence on topic and its join
// (broker.SubscriptionObserver).
func (n *Node) Subscribed(s *broker.Session, topic string) {
	presence, joinLeave := n.topic(topic)
	if !presence && !joinLeave {
		return
	}
	e := control.PresenceEntry{Topic: topic, Session: s.ID(), User: s.User(), Info: s.UserInfo(), Node: n.cfg.ID}
	key := control.PresenceKey{Topic: topic, Session: e.Session}
	t := &n.presence
	t.mu.Lock()
	defer t.mu.Unlock()
	if presence {
		t.local[key] = e
		t.changes[key] = true
	}
	if joinLeave {
		t.events = append(t.events, event{Type: "join", Topic: topic, Session: e.Session, User: e.User, Info: e.Info})
	}
}

// Unsubscribed removes s's presence on topic and records its leave
// (broker.SubscriptionObserver). The entry goes whether or not the topic
// keeps presence now: a reload may have changed that.
func (n *Node) Unsubscribed(s *broker.Session, topic string) {
	_, joinLeave := n.topic(topic)
	key := control.PresenceKey{Topic: topic, Session: s.ID()}
	t := &n.presence
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.local[key]; ok {
		delete(t.local, key)
		t.changes[key] = false
	}
	if joinLeave {
		t.events = append(t.events, event{Type: "leave", Topic: topic, Session: key.Session, User: s.User(), Info: s.UserInfo()})
	}
}

// topic says whether topic keeps presence and sends join and leave
// frames.
func (n *Node) topic(topic string) (presence, joinLeave bool) {
	if n.cfg.Topics != nil {
		return n.cfg.Topics(topic)
	}
	return n.cfg.Presence, n.cfg.JoinLeave
}

// Reload applies the new answers of Config.Topics and the sessions' new
// rules (session.Rules) to what the node holds: the presence entries of
// topics that no longer keep presence are removed, the exact
// subscriptions to topics that now do are added (no join or leave is
// sent for either), and each session's subscriptions are checked again
// (session.Session.Recheck). Sessions stay open.
func (n *Node) Reload() {
	t := &n.presence
	t.mu.Lock()
	for key := range t.local {
		if presence, _ := n.topic(key.Topic); !presence {
			delete(t.local, key)
			t.changes[key] = false
		}
	}
	t.mu.Unlock()
	n.cfg.Broker.EachObserved(func(s *broker.Session, topic string) {
		if presence, _ := n.topic(topic); !presence {
			return
		}
		key := control.PresenceKey{Topic: topic, Session: s.ID()}
		t.mu.Lock()
		if _, ok := t.local[key]; !ok {
			t.local[key] = control.PresenceEntry{Topic: topic, Session: key.Session, User: s.User(), Info: s.UserInfo(), Node: n.cfg.ID}
			t.changes[key] = true
		}
		t.mu.Unlock()
	})
	for _, s := range n.sessions.all() {
		s.Recheck()
	}
}

// flushLoop writes the presence changes every FlushInterval, and every
// entry again every third of PresenceTTL.
func (n *Node) flushLoop() {
	defer n.wg.Done()
	tick := time.NewTicker(n.cfg.FlushInterval)
	defer tick.Stop()
	lastRefresh := time.Now()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-tick.C:
		}
		ctx, cancel := context.WithTimeout(n.ctx, n.cfg.PresenceTTL/3)
		if time.Since(lastRefresh) >= n.cfg.PresenceTTL/3 {
			lastRefresh = time.Now()
			n.refresh(ctx)
		}
		n.flush(ctx)
		cancel()
	}
}

// flush writes the pending presence changes in one update and broadcasts
// the pending join/leave events in one message. Changes that fail are
// kept for the next flush unless newer ones replaced them.
func (n *Node) flush(ctx context.Context) {
	t := &n.presence
	t.mu.Lock()
	changes, events := t.changes, t.events
	t.changes, t.events = make(map[control.PresenceKey]bool), nil
	var u control.PresenceUpdate
	for key, add := range changes {
		if !add {
			u.Remove = append(u.Remove, key)
		} else if e, ok := t.local[key]; ok {
			u.Add = append(u.Add, e)
		}
	}
	t.mu.Unlock()
	if len(events) > 0 {
		n.broadcastEvents(ctx, events)
	}
	if len(u.Add) == 0 && len(u.Remove) == 0 {
		return
	}
	u.TTL = n.cfg.PresenceTTL
	if err := n.cfg.Backend.UpdatePresence(ctx, u); err != nil {
		if n.ctx.Err() == nil {
			n.log.Warn("writing presence failed", "err", err)
		}
		t.mu.Lock()
		for key, add := range changes {
			if _, newer := t.changes[key]; !newer {
				t.changes[key] = add
			}
		}
		t.mu.Unlock()
	}
}

// refresh writes every entry of the node again, extending it.
func (n *Node) refresh(ctx context.Context) {
	t := &n.presence
	t.mu.Lock()
	entries := slices.Collect(maps.Values(t.local))
	t.mu.Unlock()
	if len(entries) == 0 {
		return
	}
	if err := n.cfg.Backend.UpdatePresence(ctx, control.PresenceUpdate{Add: entries, TTL: n.cfg.PresenceTTL}); err != nil && n.ctx.Err() == nil {
		n.log.Warn("refreshing presence failed", "err", err)
	}
}

// broadcastEvents sends a batch of join and leave events to every node.
func (n *Node) broadcastEvents(ctx context.Context, events []event) {
	msg, err := json.Marshal(envelope{Kind: kindEvents, From: n.cfg.ID, Events: events})
	if err == nil {
		err = n.cfg.Backend.Broadcast(ctx, msg)
	}
	if err != nil && n.ctx.Err() == nil {
		n.log.Warn("broadcasting join and leave events failed", "events", len(events), "err", err)
	}
}
