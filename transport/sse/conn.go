package sse

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"sync"

	"github.com/tidings-io/tidings/broker"
	"github.com/tidings-io/tidings/session"
	"github.com/tidings-io/tidings/transport/admit"
	"github.com/tidings-io/tidings/transport/httpstream"
)

// conn is one stream: the stream's plumbing (httpstream.Conn), which
// writes the broker session's outbox with this package's events, and the
// session it carries. Its handler goroutine (ServeHTTP's) subscribes and
// then writes: the outbox, heartbeats, and the close event. Other
// goroutines only queue to the outbox (Reply) or ask for the close
// (Close, Disconnect).
type conn struct {
	*httpstream.Conn
	srv     *Server
	w       http.ResponseWriter
	r       *http.Request
	bs      *broker.Session
	session *session.Session
	id      string
	topics  []string // the topics the request asks for

	logger func() *slog.Logger // the session's logger, made on first use

	// The handler goroutine alone uses cur, the positions the stream's
	// events carried.
	cur cursor
}

var (
	_ session.Transport = (*conn)(nil)
	_ httpstream.Wire   = (*conn)(nil)
)

// newConn returns the session of an admitted request, which asks for
// topics.
func (s *Server) newConn(w http.ResponseWriter, r *http.Request, pass *admit.Pass, topics []string) *conn {
	c := &conn{
		srv:    s,
		w:      w,
		r:      r,
		bs:     s.b.NewSessionEncoded(s.enc),
		id:     newSessionID(),
		topics: topics,
	}
	var logOnce sync.Once
	var log *slog.Logger
	c.logger = func() *slog.Logger {
		logOnce.Do(func() { log = s.log.With("session", c.id, "remote", r.RemoteAddr) })
		return log
	}
	c.Conn = httpstream.New(&s.streams, c, w, r, c.bs, c.logger)
	// Receive-only: an anonymous stream may subscribe to what an
	// anonymous WebSocket session may; it sends no publish.
	info := pass.Info(session.Info{ID: c.id, Remote: r.RemoteAddr, Log: c.logger})
	c.session = session.New(c.Context(), &s.sessionCfg, c, c.bs, info)
	return c
}

// Reply queues reply as an event (session.Transport).
func (c *conn) Reply(reply any) { c.bs.Send(encodeReply(reply)) }

// Close ends the stream for cause with a `close` event (session.Transport).
func (c *conn) Close(cause session.Cause) { c.RequestClose(cause, cause.Code(), cause.Reason()) }

// Disconnect ends the stream for the server API with code and reason
// (session.Transport).
func (c *conn) Disconnect(code uint16, reason string) {
	c.RequestClose(session.CauseDisconnected, code, reason)
}

// Discard releases the session of a stream that never opened
// (httpstream.Stream).
func (c *conn) Discard() { c.End(c.session) }

// Serve subscribes the stream to its topics, resuming the exact ones its
// Last-Event-ID names, and writes it until it ends (httpstream.Stream).
func (c *conn) Serve(pass *admit.Pass) {
	defer c.End(c.session)
	claims := pass.Claims
	s := c.srv
	h := c.w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	if c.r.ProtoMajor == 1 {
		h.Set("Connection", "keep-alive")
	}
	if err := c.Open(); err != nil {
		s.log.Warn("the response cannot be flushed: no event stream", "err", err)
		return
	}

	var user string
	if claims != nil {
		user = claims.Subject
	}
	c.bs.Send(encodeReply(session.Welcome{
		Type: "welcome", Session: c.id, Node: s.cfg.NodeID, Heartbeat: s.cfg.Heartbeat.Seconds(), User: user,
	}))
	if claims != nil {
		if !claims.Expires.IsZero() {
			c.session.ArmExpiry(claims.Expires)
		}
		c.session.SubscribeChannels(claims.Channels)
	}
	last := lastEventID(c.r)
	resume, ok := parseCursor(last)
	if !ok && last != "" {
		c.logger().Debug("Last-Event-ID is not a cursor: ignored")
	}
	for _, t := range c.topics {
		cmd := subscribeCommand{Op: "subscribe", Topic: t}
		if pos, ok := resume[t]; ok {
			cmd.Since = &sinceJSON{Offset: pos.Offset, Epoch: pos.Epoch}
			c.cur.set(t, pos)
		}
		p, _ := json.Marshal(cmd)
		if c.session.Handle(p) {
			break
		}
	}
	c.Run()
}

// subscribeCommand is the `subscribe` a stream runs for each topic.
type subscribeCommand struct {
	Op    string     `json:"op"`
	Topic string     `json:"topic"`
	Since *sinceJSON `json:"since,omitempty"`
}

type sinceJSON struct {
	Offset uint64 `json:"offset"`
	Epoch  string `json:"epoch"`
}

// AppendFrames appends frames, each position marker replaced with the
// `id:` of the stream's cursor once moved to that position, until b holds
// limit bytes or more; it returns b and the frames left
// (httpstream.Wire).
func (c *conn) AppendFrames(b []byte, frames [][]byte, limit int) ([]byte, [][]byte) {
	for i, f := range frames {
		if len(b) >= limit {
			return b, frames[i:]
		}
		kind, topic, pos, rest, ok := parseMark(f)
		if !ok {
			b = append(b, rest...)
			continue
		}
		if kind != markKeep {
			c.cur.set(topic, pos)
		} else if _, held := c.cur.pos[topic]; !held {
			c.cur.set(topic, pos)
		}
		b = append(b, "id: "...)
		b = append(b, c.cur.String()...)
		b = append(b, '\n')
		b = append(b, rest...)
	}
	return b, nil
}

// AppendClose appends the `close` event (httpstream.Wire).
func (c *conn) AppendClose(b []byte, _ session.Cause, code uint16, reason string) []byte {
	return append(b, closeEvent(code, reason)...)
}

// lastEventID returns the cursor the request resumes from: its
// Last-Event-ID header, which an EventSource sends when it reconnects by
// itself, else its `last_event_id` query parameter, with which a client
// opening a new stream (other topics) carries its cursor over.
func lastEventID(r *http.Request) string {
	if id := r.Header.Get("Last-Event-ID"); id != "" {
		return id
	}
	return r.URL.Query().Get("last_event_id")
}
