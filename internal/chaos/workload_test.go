package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/gobwas/ws"
	"github.com/tidings-io/tidings/internal/wstest"
)

// The topics the workload publishes to. chaos.* matches the first six,
// chaos.deep.* the last two, chaos.> all of them.
var topics = []string{"chaos.t0", "chaos.t1", "chaos.t2", "chaos.t3", "chaos.t4", "chaos.t5", "chaos.deep.t6", "chaos.deep.t7"}

var patterns = []string{"chaos.*", "chaos.>", "chaos.deep.*"}

// Key modes: which idempotency keys the publishers send.
const (
	keysAll    = "all"    // header, body fields, batch items and WebSocket field
	keysHeader = "header" // the Idempotency-Key header and the WebSocket field only
	keysNone   = "none"   // no key at all
)

// attemptTimeout bounds one try of a publish.
const attemptTimeout = 3 * time.Second

// makeData returns a JSON value holding key, with what a re-encoding
// would change: HTML characters, U+2028 and U+2029, non-ASCII, escapes,
// numbers no float64 holds, -0, big integers and inner whitespace.
func makeData(rng *rand.Rand, key string) []byte {
	sp := func() string { return []string{"", " ", "  ", "\t", "\n ", " \r\n"}[rng.IntN(6)] }
	pad := strings.Repeat("xyz", rng.IntN(40))
	var s string
	switch rng.IntN(4) {
	case 0:
		s = fmt.Sprintf(`{"k":%s"%s",%s"html":"<b>a&amp;b</b> <script>&</script>",%s"sep":"`+"\u2028"+`line`+"\u2029"+`para",`+
			`"utf8":"日本語 é ü 🎉","n":[1e400,%s-0,%s123456789012345678901234567890123456789,%s1.50E+2,0.1e-400,-0.0],`+
			`"esc":"\"\u00e9\n\/\u2028 \\","pad":"%s"%s}`, sp(), key, sp(), sp(), sp(), sp(), sp(), pad, sp())
	case 1:
		s = fmt.Sprintf(`[%s"%s",%s-0,%s1e400,"<>&'`+"\u2028"+`",%s{ "a" :null , "b":[ ] },%s18446744073709551616,"%s"%s]`,
			sp(), key, sp(), sp(), sp(), sp(), pad, sp())
	case 2:
		s = fmt.Sprintf(`"%s <tag> & \u003c \\ \" `+"\u2028 \u2029"+` ñ %s"`, key, pad)
	default:
		s = fmt.Sprintf(`{%s"k"%s:%s"%s"%s,%s"v":%s-0%s,"w":[%s1e400%s,%s1E-7,%s12345678901234567890123456789]%s}`,
			sp(), sp(), sp(), key, sp(), sp(), sp(), sp(), sp(), sp(), sp(), sp(), sp())
	}
	return []byte(s)
}

// publisher publishes messages one operation at a time, each retried with
// the same keys until it is acknowledged or refused for good.
type publisher struct {
	r     *run
	idx   int
	api   string     // "http", "batch" or "ws"
	opRng *rand.Rand // what to publish: the same for the same seed
	net   *rand.Rand // where to send each try, and backoffs
	seq   int
	http  *http.Client

	// mu guards conn and its node; the fault injector may close conn.
	mu     sync.Mutex
	conn   *wstest.Conn
	connAt int
	refs   int
}

// next builds the messages of the next operation and registers them.
func (p *publisher) next() []*pubRecord {
	n := 1
	if p.api == "batch" {
		n = 2 + p.opRng.IntN(3)
	}
	recs := make([]*pubRecord, n)
	for i := range recs {
		p.seq++
		key := fmt.Sprintf("ck.p%d.%d", p.idx, p.seq)
		topic := topics[p.opRng.IntN(len(topics))]
		keyed := p.r.cfg.keys == keysAll || p.r.cfg.keys == keysHeader && p.api != "batch"
		recs[i] = &pubRecord{Key: key, Topic: topic, Data: makeData(p.opRng, key), Keyed: keyed}
		p.r.chk.register(recs[i])
	}
	return recs
}

// loop runs operations at the publisher's pace until stop is closed.
func (p *publisher) loop(ctx context.Context, stop <-chan struct{}, pace time.Duration) {
	tick := time.NewTicker(pace) // pacing the rate, not synchronising
	defer tick.Stop()
	defer p.dropConn()
	defer p.http.CloseIdleConnections()
	for {
		select {
		case <-stop:
			return
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		recs := p.next()
		p.r.ops.Add(1)
		// In keysAll mode a third of single HTTP publishes also carry the
		// key in the body.
		bodyKey := p.api == "http" && p.r.cfg.keys == keysAll && p.opRng.IntN(3) == 0
		p.publish(ctx, recs, bodyKey)
	}
}

// publish tries recs until they are acknowledged, refused, or ctx ends.
func (p *publisher) publish(ctx context.Context, recs []*pubRecord, bodyKey bool) {
	for try := 0; ctx.Err() == nil; try++ {
		node := p.net.IntN(len(p.r.nodes))
		if try == 0 && p.api == "ws" {
			p.mu.Lock()
			if p.conn != nil {
				node = p.connAt
			}
			p.mu.Unlock()
		}
		if try > 0 {
			p.r.retries.Add(1)
		}
		var done bool
		switch p.api {
		case "ws":
			done = p.tryWS(ctx, node, recs[0])
		default:
			done = p.tryHTTP(ctx, node, recs, bodyKey)
		}
		if done {
			return
		}
		backoff := time.Duration(30+p.net.IntN(200)) * time.Millisecond
		select {
		case <-ctx.Done():
		case <-time.After(backoff): // retry pacing
		}
	}
}

// result is one entry of a publish answer.
type result struct {
	ID     string          `json:"id"`
	Offset uint64          `json:"offset"`
	Epoch  string          `json:"epoch"`
	Error  json.RawMessage `json:"error"`
}

// tryHTTP sends recs once, to /v1/publish or /v1/publish/batch, and
// reports whether the operation is over (acknowledged or refused).
func (p *publisher) tryHTTP(ctx context.Context, node int, recs []*pubRecord, bodyKey bool) bool {
	n := p.r.nodes[node]
	var body bytes.Buffer
	url := n.httpURL() + "/v1/publish"
	api := "http"
	item := func(rec *pubRecord, withKey bool) {
		fmt.Fprintf(&body, `{"topic":"%s","data": %s`, rec.Topic, rec.Data)
		if withKey {
			fmt.Fprintf(&body, `,"idempotency_key":"%s"`, rec.Key)
		}
		body.WriteString("}")
	}
	if p.api == "batch" {
		url += "/batch"
		api = "batch"
		body.WriteString(`{"messages":[`)
		for i, rec := range recs {
			if i > 0 {
				body.WriteString(",")
			}
			item(rec, p.r.cfg.keys == keysAll)
		}
		body.WriteString("]}")
	} else {
		item(recs[0], bodyKey)
		if bodyKey {
			api = "http+body-key"
		}
	}
	ctx, cancel := context.WithTimeout(ctx, attemptTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, &body)
	if err != nil {
		panic(err)
	}
	// One try is one transmission: net/http would resend a POST that
	// carries an Idempotency-Key by itself after a network error on a
	// reused connection, hiding that the first one may have been applied.
	req.GetBody = nil
	req.Header.Set("Content-Type", "application/json")
	if p.api != "batch" && p.r.cfg.keys != keysNone {
		req.Header.Set("Idempotency-Key", recs[0].Key)
	}
	start := p.r.chk.since()
	record := func(i int, outcome string, a *ack) {
		p.r.chk.tried(recs[i].Key, attempt{API: api, Node: n.id, Start: start, End: p.r.chk.since(), Outcome: outcome, Ack: a})
	}
	resp, err := p.http.Do(req)
	if err != nil {
		for i := range recs {
			record(i, "error: "+shortErr(err), nil)
		}
		return false
	}
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	_ = resp.Body.Close()
	if err != nil {
		for i := range recs {
			record(i, "reading the answer: "+shortErr(err), nil)
		}
		return false
	}
	var ans struct {
		result
		Results []result `json:"results"`
	}
	decodeErr := json.Unmarshal(raw, &ans)
	status := fmt.Sprintf("%d %s", resp.StatusCode, bytes.TrimSpace(raw))
	if resp.StatusCode == http.StatusOK {
		if decodeErr != nil {
			for i := range recs {
				record(i, "200 with an unreadable body: "+status, nil)
			}
			return false
		}
		if p.api != "batch" {
			ans.Results = []result{ans.result}
		}
		if len(ans.Results) != len(recs) {
			for i := range recs {
				record(i, "200 with the wrong number of results: "+status, nil)
				p.r.chk.rejected(recs[i].Key, "answer "+status)
			}
			return true
		}
		for i, res := range ans.Results {
			record(i, "200", &ack{ID: res.ID, Offset: res.Offset, Epoch: res.Epoch})
		}
		return true
	}
	retry := resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests
	partial := false
	for i := range recs {
		var a *ack
		if i < len(ans.Results) && ans.Results[i].ID != "" && len(ans.Results[i].Error) == 0 {
			// Stored, in a batch that failed as a whole.
			a = &ack{ID: ans.Results[i].ID, Offset: ans.Results[i].Offset, Epoch: ans.Results[i].Epoch}
			partial = true
		}
		record(i, status, a)
		if !retry {
			p.r.chk.rejected(recs[i].Key, fmt.Sprintf("%s to %s answered %s", api, n.id, status))
		}
	}
	if partial {
		p.r.partialBatches.Add(1)
		if p.r.cfg.backend != "cluster" {
			keys := make([]string, len(recs))
			for i, rec := range recs {
				keys[i] = rec.Key
			}
			p.r.chk.violate(&violation{Kind: kBatch, Where: "batch " + strings.Join(keys, " "),
				Detail: "a batch through one Redis was partly stored: " + status, Keys: keys})
		}
	}
	return !retry
}

// tryWS sends rec once as a WebSocket publish and reports whether it is
// over.
func (p *publisher) tryWS(ctx context.Context, node int, rec *pubRecord) bool {
	start := p.r.chk.since()
	n := p.r.nodes[node]
	record := func(outcome string, a *ack) {
		p.r.chk.tried(rec.Key, attempt{API: "ws", Node: n.id, Start: start, End: p.r.chk.since(), Outcome: outcome, Ack: a})
	}
	conn, err := p.connTo(ctx, node)
	if err != nil {
		record("connecting: "+shortErr(err), nil)
		return false
	}
	p.refs++
	ref := fmt.Sprintf("p%d", p.refs)
	var cmd bytes.Buffer
	fmt.Fprintf(&cmd, `{"op":"publish","ref":"%s","topic":"%s"`, ref, rec.Topic)
	if p.r.cfg.keys != keysNone {
		fmt.Fprintf(&cmd, `,"idempotency_key":"%s"`, rec.Key)
	}
	fmt.Fprintf(&cmd, `,"data": %s }`, rec.Data)
	if err := conn.WriteFrame(ws.NewTextFrame(cmd.Bytes())); err != nil {
		p.dropConn()
		record("sending: "+shortErr(err), nil)
		return false
	}
	deadline := time.Now().Add(attemptTimeout)
	for {
		f, err := conn.Next(deadline)
		if err != nil {
			p.dropConn()
			record("waiting for the answer: "+shortErr(err), nil)
			return false
		}
		if f.Ref != ref {
			continue
		}
		switch {
		case f.Type == "published":
			record("published", &ack{ID: f.ID, Offset: f.Offset, Epoch: f.Epoch})
			return true
		case f.Type == "error" && (f.Code == "unavailable" || f.Code == "rate_limited" || f.Code == "internal"):
			record(string(f.Raw), nil)
			return false
		default:
			record(string(f.Raw), nil)
			p.r.chk.rejected(rec.Key, "ws publish to "+n.id+" answered "+string(f.Raw))
			return true
		}
	}
}

// connTo returns the publisher's session on node, opening it if needed.
func (p *publisher) connTo(ctx context.Context, node int) (*wstest.Conn, error) {
	p.mu.Lock()
	if p.conn != nil && p.connAt == node {
		c := p.conn
		p.mu.Unlock()
		return c, nil
	}
	p.mu.Unlock()
	p.dropConn()
	ctx, cancel := context.WithTimeout(ctx, attemptTimeout)
	defer cancel()
	c, err := wstest.Open(ctx, p.r.nodes[node].wsURL())
	if err != nil {
		return nil, err
	}
	if _, err := c.Expect("welcome", time.Now().Add(attemptTimeout)); err != nil {
		_ = c.Close()
		return nil, err
	}
	p.mu.Lock()
	p.conn, p.connAt = c, node
	p.mu.Unlock()
	return c, nil
}

// dropConn closes the publisher's session, if any, without a close frame.
func (p *publisher) dropConn() {
	p.mu.Lock()
	c := p.conn
	p.conn = nil
	p.mu.Unlock()
	if c != nil {
		_ = c.Close()
	}
}

func shortErr(err error) string {
	if errors.Is(err, context.DeadlineExceeded) {
		return "timeout"
	}
	s := err.Error()
	if len(s) > 160 {
		s = s[:160] + "…"
	}
	return s
}

// subscriber is one raw WebSocket client that holds a few subscriptions,
// reconnects to a random node whenever its session ends, and resumes each
// exact topic from the last position it received.
type subscriber struct {
	r    *run
	name string
	subs []string   // topics and patterns
	net  *rand.Rand // which node, and backoffs; used by the loop only

	// mu guards chk, conn, conns and changed. wmu orders writes to conn.
	mu      sync.Mutex
	chk     *subChecker
	conn    *wstest.Conn
	conns   int
	changed chan struct{} // closed and replaced at every event
	wmu     sync.Mutex
}

// event runs fn on the checker and wakes those waiting for a change.
func (s *subscriber) event(fn func(*subChecker)) {
	s.mu.Lock()
	fn(s.chk)
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
}

// waitFor waits until cond holds on the checker, or deadline.
func (s *subscriber) waitFor(deadline time.Time, cond func(*subChecker) bool) bool {
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	for {
		s.mu.Lock()
		ok := cond(s.chk)
		ch := s.changed
		s.mu.Unlock()
		if ok {
			return true
		}
		select {
		case <-ch:
		case <-timer.C:
			return false
		}
	}
}

// drop closes the current session without a close frame.
func (s *subscriber) drop() {
	s.mu.Lock()
	c := s.conn
	s.mu.Unlock()
	if c != nil {
		_ = c.Close()
	}
}

// send writes a command on the current session.
func (s *subscriber) send(c *wstest.Conn, v any) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	return c.Send(v)
}

// ping sends a ping with ref on the current session.
func (s *subscriber) ping(ref string) error {
	s.mu.Lock()
	c := s.conn
	s.mu.Unlock()
	if c == nil {
		return errors.New("no session")
	}
	return s.send(c, map[string]any{"op": "ping", "ref": ref})
}

// loop keeps a session open until ctx ends.
func (s *subscriber) loop(ctx context.Context) {
	for ctx.Err() == nil {
		s.session(ctx)
		select {
		case <-ctx.Done():
		case <-time.After(time.Duration(20+s.net.IntN(200)) * time.Millisecond): // reconnect pacing
		}
	}
}

// session runs one session: open, subscribe, read every frame into the
// checker until the session ends.
func (s *subscriber) session(ctx context.Context) {
	node := s.r.nodes[s.net.IntN(len(s.r.nodes))]
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	c, err := wstest.Open(dctx, node.wsURL())
	cancel()
	if err != nil {
		return
	}
	s.mu.Lock()
	s.conn = c
	s.conns++
	conn := s.conns
	s.mu.Unlock()
	s.r.sessions.Add(1)
	defer func() {
		_ = c.Close()
		s.mu.Lock()
		s.conn = nil
		s.mu.Unlock()
	}()
	if ctx.Err() != nil {
		return
	}
	w, err := c.Expect("welcome", time.Now().Add(5*time.Second))
	if err != nil {
		return
	}
	s.event(func(chk *subChecker) { chk.open(conn, w.Node) })
	for _, topic := range s.subs {
		cmd := map[string]any{"op": "subscribe", "topic": topic, "ref": "s:" + topic}
		var since *streamPos
		s.event(func(chk *subChecker) {
			if !isPattern(topic) {
				since = chk.since(topic)
			}
			chk.subscribe(topic, since)
		})
		if since != nil {
			cmd["since"] = map[string]any{"offset": since.Offset, "epoch": since.Epoch}
		}
		if err := s.send(c, cmd); err != nil {
			s.event(func(chk *subChecker) { chk.closed("sending subscribe: " + shortErr(err)) })
			return
		}
	}
	for {
		// The deadline only bounds a silent session; the test ends a
		// session by closing it.
		f, err := c.Next(time.Now().Add(2 * time.Minute))
		if err != nil {
			why := shortErr(err)
			if ce := wstest.AsClose(err); ce != nil {
				why = ce.Error()
				s.wmu.Lock()
				_ = c.SendClose(ce.Code, "")
				s.wmu.Unlock()
			}
			s.event(func(chk *subChecker) { chk.closed(why) })
			return
		}
		refused := false
		s.event(func(chk *subChecker) {
			chk.frame(f)
			refused = f.Type == "error" && strings.HasPrefix(f.Ref, "s:")
		})
		if refused {
			// A subscribe failed (Redis away): start over elsewhere.
			s.event(func(chk *subChecker) { chk.closed("subscribe refused") })
			return
		}
	}
}
