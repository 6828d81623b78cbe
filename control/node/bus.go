package node

import (
	"context"
	"encoding/json"
	"time"

	"github.com/tidings-io/tidings/broker"
	"github.com/tidings-io/tidings/control"
	"github.com/tidings-io/tidings/protocol"
)

// The kinds of broadcast messages.
const (
	kindDisconnect  = "disconnect"
	kindUnsubscribe = "unsubscribe"
	kindSubscribe   = "subscribe"
	kindRevoke      = "revoke"
	kindTopics      = "topics"
	kindSessions    = "sessions"
	kindAck         = "ack"      // a node's answer to a request
	kindEvents      = "presence" // a node's batch of join and leave events
)

// envelope is a broadcast message between nodes.
type envelope struct {
	Kind       string              `json:"k"`
	ID         string              `json:"id,omitempty"` // a request's id; an ack's request
	From       string              `json:"from"`         // the sending node
	To         string              `json:"to,omitempty"` // an ack's requester
	Target     Target              `json:"target,omitzero"`
	Topic      string              `json:"topic,omitempty"` // or the topics' pattern
	Since      *broker.Position    `json:"since,omitempty"`
	Code       uint16              `json:"code,omitempty"`
	Reason     string              `json:"reason,omitempty"`
	Limit      int                 `json:"limit,omitempty"`
	Revocation *control.Revocation `json:"revocation,omitempty"`
	Topics     []broker.TopicCount `json:"topics,omitempty"`
	Sessions   []SessionInfo       `json:"sessions,omitempty"`
	Events     []event             `json:"events,omitempty"`
}

// event is a join or a leave, as its frame shows it.
type event struct {
	Type    string          `json:"type"`
	Topic   string          `json:"topic"`
	Session string          `json:"session"`
	User    string          `json:"user"`
	Info    json.RawMessage `json:"info,omitempty"`
}

// receive takes a broadcast message (control.Backend.OnBroadcast); it
// never blocks the store's receive loop: a full inbox drops the message,
// which is logged.
func (n *Node) receive(msg []byte) {
	select {
	case n.inbox <- msg:
	default:
		n.log.Warn("control inbox full: a broadcast message was dropped")
	}
}

// handleLoop handles the broadcast messages in order.
func (n *Node) handleLoop() {
	defer n.wg.Done()
	for {
		select {
		case <-n.ctx.Done():
			return
		case msg := <-n.inbox:
			n.handle(msg)
		}
	}
}

func (n *Node) handle(msg []byte) {
	var env envelope
	if err := json.Unmarshal(msg, &env); err != nil {
		n.log.Warn("undecodable control message", "err", err)
		return
	}
	switch env.Kind {
	case kindAck:
		if env.To == n.cfg.ID {
			n.requests.answer(env)
		}
		return
	case kindEvents:
		n.deliverEvents(env.Events)
		return
	}
	ack := envelope{Kind: kindAck, ID: env.ID, From: n.cfg.ID, To: env.From}
	switch env.Kind {
	case kindDisconnect:
		for _, s := range n.sessions.find(env.Target) {
			s.Disconnect(env.Code, env.Reason)
		}
	case kindUnsubscribe:
		for _, s := range n.sessions.find(env.Target) {
			s.ServerUnsubscribe(env.Topic)
		}
	case kindSubscribe:
		// A subscribe may wait on the store: it runs aside, and the ack
		// follows it.
		targets := n.sessions.find(env.Target)
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			for _, s := range targets {
				if err := s.ServerSubscribe(n.ctx, env.Topic, env.Since); err != nil {
					n.log.Warn("server-side subscribe failed", "session", s.ID(), "topic", env.Topic, "err", err)
				}
			}
			n.send(ack)
		}()
		return
	case kindRevoke:
		if env.Revocation != nil {
			n.revoked.add(*env.Revocation)
			n.closeRevoked()
		}
	case kindTopics:
		ack.Topics = n.cfg.Broker.LocalTopics(env.Topic, env.Limit)
	case kindSessions:
		ack.Sessions = n.localSessions(env.Target, min(max(env.Limit, 1), protocol.SessionsLimit.Max))
	default:
		return
	}
	n.send(ack)
}

// send broadcasts env without waiting for it.
func (n *Node) send(env envelope) {
	msg, err := json.Marshal(env)
	if err != nil {
		n.log.Error("encoding a control message", "err", err)
		return
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		ctx, cancel := context.WithTimeout(n.ctx, n.cfg.AckTimeout)
		defer cancel()
		if err := n.cfg.Backend.Broadcast(ctx, msg); err != nil && n.ctx.Err() == nil {
			n.log.Warn("broadcasting a control message failed", "kind", env.Kind, "err", err)
		}
	}()
}

// deliverEvents queues join and leave frames to the subscribers of their
// topics on this node.
func (n *Node) deliverEvents(events []event) {
	for _, e := range events {
		n.cfg.Broker.SendToTopic(e.Topic, e)
	}
}

// closeRevoked closes the live sessions whose token is revoked.
func (n *Node) closeRevoked() {
	now := time.Now()
	for _, s := range n.sessions.all() {
		if n.revoked.match(s.Subject(), s.TokenID(), now) {
			s.Revoke()
		}
	}
}
