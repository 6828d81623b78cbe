package client

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/tidings-io/tidings/protocol"
)

// The server API (docs/PROTOCOL.md, "Server API"): calls an operator's
// backend makes with an API key marked admin (a broker with no key
// configured accepts them from loopback only). Each action reaches every
// node and returns once they have all been told.

// Target names the sessions an action applies to: every session of User,
// or the one session Session. Set exactly one.
type Target struct {
	User, Session string
}

// Revocation names the tokens Revoke refuses: those of User, or the one
// token whose jti is JTI (set exactly one), until Until (zero: the
// broker's default, the longest token lifetime it allows).
type Revocation struct {
	User, JTI string
	Until     time.Time
}

// HistoryOptions select what History returns.
type HistoryOptions struct {
	// Since, when set, returns only the messages after it; when its
	// epoch is not the topic's current one, or history no longer reaches
	// it, History has Recovered false and no messages.
	Since *Position
	// Limit is the most messages returned, 1 to 1000; zero: the broker's
	// default (100).
	Limit int
	// Reverse returns the newest first.
	Reverse bool
}

// History is what the broker still keeps of a topic.
type History struct {
	// Topic is the topic; Position its current position (the last
	// offset stored, in its epoch).
	Topic    string
	Position Position
	// Recovered is false, with no messages, when HistoryOptions.Since is
	// of another epoch or older than history.
	Recovered bool
	// Messages are oldest first, unless HistoryOptions.Reverse. Sub is
	// always empty.
	Messages []Delivery
}

// PresenceClient is one session present on a topic.
type PresenceClient struct {
	// Session is its id, User its token's sub ("" when anonymous), Node
	// the node it is connected to.
	Session, User, Node string
	// Info is its token's info claim, nil without one.
	Info json.RawMessage
}

// PresenceStats counts the sessions present on a topic.
type PresenceStats struct {
	// Topic is the topic.
	Topic string
	// Sessions is the number of sessions, Users the number of distinct
	// non-empty users.
	Sessions, Users int
}

// TopicCount is a topic with exact subscribers.
type TopicCount struct {
	// Topic is the topic; Subscribers its exact subscribers on every node.
	Topic       string
	Subscribers int
}

// NodeInfo describes one live node.
type NodeInfo struct {
	// ID is the node's id, Version its build version.
	ID, Version string
	// Uptime is how long the node has run.
	Uptime time.Duration
	// Sessions, Subscriptions and Topics are the node's current counts.
	Sessions, Subscriptions, Topics int64
	// PublishedPerSecond and DeliveredPerSecond are its recent rates.
	PublishedPerSecond, DeliveredPerSecond float64
}

// History returns the messages the broker still keeps of an exact topic
// (GET /v1/history).
func (c *Client) History(ctx context.Context, topic string, opts HistoryOptions) (History, error) {
	q := url.Values{"topic": {topic}}
	if opts.Since != nil {
		q.Set("since", strconv.FormatUint(opts.Since.Offset, 10))
		q.Set("epoch", opts.Since.Epoch)
	}
	if opts.Limit != 0 {
		q.Set("limit", strconv.Itoa(opts.Limit))
	}
	if opts.Reverse {
		q.Set("reverse", "true")
	}
	var res struct {
		Topic     string           `json:"topic"`
		Offset    uint64           `json:"offset"`
		Epoch     string           `json:"epoch"`
		Recovered bool             `json:"recovered"`
		Messages  []protocol.Frame `json:"messages"`
	}
	if _, err := c.call(ctx, request{method: http.MethodGet, path: "/v1/history", query: q}, &res); err != nil {
		return History{}, err
	}
	h := History{Topic: res.Topic, Position: Position{Offset: res.Offset, Epoch: res.Epoch}, Recovered: res.Recovered,
		Messages: make([]Delivery, len(res.Messages))}
	for i, m := range res.Messages {
		h.Messages[i] = deliveryOf(m)
	}
	return h, nil
}

// Presence lists the sessions subscribed to an exact topic, on every node
// (GET /v1/presence). The broker must have presence on for the topic;
// otherwise the error is protocol.CodeBadRequest.
func (c *Client) Presence(ctx context.Context, topic string) ([]PresenceClient, error) {
	var res struct {
		Clients []struct {
			Session string          `json:"session"`
			User    string          `json:"user"`
			Info    json.RawMessage `json:"info"`
			Node    string          `json:"node"`
		} `json:"clients"`
	}
	if _, err := c.call(ctx, request{method: http.MethodGet, path: "/v1/presence", query: url.Values{"topic": {topic}}}, &res); err != nil {
		return nil, err
	}
	out := make([]PresenceClient, len(res.Clients))
	for i, p := range res.Clients {
		out[i] = PresenceClient{Session: p.Session, User: p.User, Node: p.Node, Info: p.Info}
	}
	return out, nil
}

// PresenceStats counts the sessions and users present on an exact topic
// (GET /v1/presence/stats), cheaply at any size.
func (c *Client) PresenceStats(ctx context.Context, topic string) (PresenceStats, error) {
	var res struct {
		Topic    string `json:"topic"`
		Sessions int    `json:"sessions"`
		Users    int    `json:"users"`
	}
	if _, err := c.call(ctx, request{method: http.MethodGet, path: "/v1/presence/stats", query: url.Values{"topic": {topic}}}, &res); err != nil {
		return PresenceStats{}, err
	}
	return PresenceStats(res), nil
}

// Topics lists the topics with exact subscribers on any node, busiest
// first (GET /v1/topics): those matching pattern (a topic or a pattern;
// empty: all), at most limit (zero: the broker's default, 100).
func (c *Client) Topics(ctx context.Context, pattern string, limit int) ([]TopicCount, error) {
	q := url.Values{}
	if pattern != "" {
		q.Set("pattern", pattern)
	}
	if limit != 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	var res struct {
		Topics []struct {
			Topic       string `json:"topic"`
			Subscribers int    `json:"subscribers"`
		} `json:"topics"`
	}
	if _, err := c.call(ctx, request{method: http.MethodGet, path: "/v1/topics", query: q}, &res); err != nil {
		return nil, err
	}
	out := make([]TopicCount, len(res.Topics))
	for i, t := range res.Topics {
		out[i] = TopicCount(t)
	}
	return out, nil
}

// Info describes every live node (GET /v1/info), by id.
func (c *Client) Info(ctx context.Context) ([]NodeInfo, error) {
	var res struct {
		Nodes []protocol.NodeInfo `json:"nodes"`
	}
	if _, err := c.call(ctx, request{method: http.MethodGet, path: "/v1/info"}, &res); err != nil {
		return nil, err
	}
	out := make([]NodeInfo, len(res.Nodes))
	for i, n := range res.Nodes {
		out[i] = NodeInfo{ID: n.ID, Version: n.Version, Uptime: time.Duration(n.Uptime * float64(time.Second)),
			Sessions: n.Sessions, Subscriptions: n.Subscriptions, Topics: n.Topics,
			PublishedPerSecond: n.PublishedPerSecond, DeliveredPerSecond: n.DeliveredPerSecond}
	}
	return out, nil
}

// Disconnect closes the target's sessions on every node (POST
// /v1/disconnect) with code, 4000 to 4999 (zero: 4000), and reason
// (empty: "disconnected"). Clients reconnect after 4000–4499 and stop
// after 4500–4999.
func (c *Client) Disconnect(ctx context.Context, t Target, code int, reason string) error {
	body := map[string]any{}
	t.put(body)
	if code != 0 {
		body["code"] = code
	}
	if reason != "" {
		body["reason"] = reason
	}
	return c.post(ctx, "/v1/disconnect", body)
}

// Unsubscribe ends the target's subscription to topic (a topic or a
// pattern, as subscribed) on every node (POST /v1/unsubscribe): each
// session gets `unsubscribed` without ref.
func (c *Client) Unsubscribe(ctx context.Context, t Target, topic string) error {
	body := map[string]any{"topic": topic}
	t.put(body)
	return c.post(ctx, "/v1/unsubscribe", body)
}

// ServerSubscribe subscribes the target's sessions to topic (POST
// /v1/subscribe), after since when set (exact topics): each session gets
// `subscribed` without ref, then the stream. A Subscription of this
// package adopts such topics: their messages come on its channel, and it
// resumes them after a reconnect.
func (c *Client) ServerSubscribe(ctx context.Context, t Target, topic string, since *Position) error {
	body := map[string]any{"topic": topic}
	t.put(body)
	if since != nil {
		body["since"] = map[string]any{"offset": since.Offset, "epoch": since.Epoch}
	}
	return c.post(ctx, "/v1/subscribe", body)
}

// Revoke refuses tokens (POST /v1/revoke): the live sessions using them
// are closed with 1008 `token revoked`, and new connections with them get
// 401 until r.Until.
func (c *Client) Revoke(ctx context.Context, r Revocation) error {
	body := map[string]any{}
	if r.User != "" {
		body["user"] = r.User
	}
	if r.JTI != "" {
		body["jti"] = r.JTI
	}
	if !r.Until.IsZero() {
		body["until"] = r.Until.UTC().Format(time.RFC3339)
	}
	return c.post(ctx, "/v1/revoke", body)
}

func (t Target) put(body map[string]any) {
	if t.User != "" {
		body["user"] = t.User
	}
	if t.Session != "" {
		body["session"] = t.Session
	}
}

// post sends a server API action.
func (c *Client) post(ctx context.Context, path string, body map[string]any) error {
	raw, err := json.Marshal(body)
	if err != nil {
		return &Error{Code: protocol.CodeBadRequest, Message: err.Error(), err: err}
	}
	_, err = c.call(ctx, request{method: http.MethodPost, path: path, body: raw}, nil)
	return err
}
