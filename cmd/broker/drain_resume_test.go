package main

import (
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/tidings-io/tidings/internal/redistest"
	"github.com/tidings-io/tidings/internal/wstest"
)

// resumeDelivery is one message a drain client received.
type resumeDelivery struct {
	offset uint64
	id     string
	fresh  bool // received on the new connection, to the second node
}

// drainClient is one of TestDrainResumeGivesEveryClientEachOffsetOnce's
// clients: subscribed on the first node, it follows the 1001 of its
// shutdown to the second node and resumes every topic there. Its result
// fields are written by its own goroutine and read by the test after the
// goroutine has ended.
type drainClient struct {
	n      int
	topics []string

	mu      sync.Mutex // guards conn and aborted, for the test to unblock the reader
	conn    *wstest.Conn
	aborted bool

	start    map[string]uint64 // topic → offset of the first `subscribed`
	epoch    map[string]string // topic → epoch of the first `subscribed`
	since    map[string]uint64 // topic → offset resumed from on the second node
	resumed  map[string]uint64 // topic → offset of the resume's `subscribed`
	got      map[string][]resumeDelivery
	oldClose *wstest.CloseError
	errs     []string
}

// setConn makes c the connection abort closes. It reports false, having
// closed c, when the client was aborted already.
func (d *drainClient) setConn(c *wstest.Conn) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.aborted {
		c.Close()
		return false
	}
	d.conn = c
	return true
}

// abort closes the client's connection, ending its read.
func (d *drainClient) abort() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.aborted = true
	if d.conn != nil {
		d.conn.Close()
	}
}

func (d *drainClient) wasAborted() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.aborted
}

func (d *drainClient) fail(format string, args ...any) {
	d.errs = append(d.errs, fmt.Sprintf(format, args...))
}

// lastOffsets describes the last offset received on each topic.
func (d *drainClient) lastOffsets() string {
	parts := make([]string, 0, len(d.topics))
	for _, topic := range d.topics {
		last := d.start[topic]
		if g := d.got[topic]; len(g) > 0 {
			last = g[len(g)-1].offset
		}
		parts = append(parts, fmt.Sprintf("%s at %d", topic, last))
	}
	return strings.Join(parts, ", ")
}

// record appends a message frame to the topic's deliveries.
func (d *drainClient) record(f wstest.Frame, fresh bool) {
	if f.Epoch != d.epoch[f.Topic] {
		d.fail("%s offset %d in epoch %q, want %q", f.Topic, f.Offset, f.Epoch, d.epoch[f.Topic])
	}
	d.got[f.Topic] = append(d.got[f.Topic], resumeDelivery{offset: f.Offset, id: f.ID, fresh: fresh})
}

// run subscribes on node1, reports on ready, records messages until
// node1's close frame, then resumes every topic on node2 and records
// messages until each topic has reached final and a ping has been
// answered.
func (d *drainClient) run(node1, node2 string, final uint64, dialSlots chan struct{}, ready chan<- error) {
	deadline := time.Now().Add(90 * time.Second) // a backstop: the test aborts long before
	d.start, d.epoch, d.since = map[string]uint64{}, map[string]string{}, map[string]uint64{}
	d.resumed = map[string]uint64{}
	d.got = map[string][]resumeDelivery{}

	c, err := d.dial(node1, dialSlots, deadline)
	if err != nil {
		ready <- fmt.Errorf("node 1: %w", err)
		return
	}
	for _, topic := range d.topics {
		if err := c.Send(map[string]any{"op": "subscribe", "topic": topic, "ref": "s:" + topic}); err != nil {
			c.Close()
			ready <- fmt.Errorf("subscribe %s: %w", topic, err)
			return
		}
	}
	for range d.topics {
		f, err := c.Expect("subscribed", deadline)
		if err == nil && (f.Ref != "s:"+f.Topic || d.epoch[f.Topic] != "" || f.Epoch == "") {
			err = fmt.Errorf("unexpected answer %s", f.Raw)
		}
		if err != nil {
			c.Close()
			ready <- fmt.Errorf("subscribe %v: %w", d.topics, err)
			return
		}
		d.start[f.Topic], d.epoch[f.Topic] = f.Offset, f.Epoch
	}
	ready <- nil

	// The old connection: messages until the 1001 of the shutdown.
	for {
		f, err := c.Next(deadline)
		if ce := wstest.AsClose(err); ce != nil {
			d.oldClose = ce
			// Answer the close as a well-behaved client does; the server
			// then ends the connection.
			if err := c.SendClose(ce.Code, ""); err != nil {
				d.fail("answering the close of node 1: %v", err)
			}
			_ = c.Drain(time.Now().Add(10 * time.Second))
			break
		}
		if err != nil {
			if d.wasAborted() {
				d.fail("aborted on node 1 (no close frame yet); last offsets: %s", d.lastOffsets())
				c.Close()
				return
			}
			d.fail("node 1 connection ended without a close frame: %v", err)
			break
		}
		if f.Type != "message" {
			d.fail("node 1: unexpected %s", f.Raw)
			continue
		}
		d.record(f, false)
	}
	c.Close()

	// The new connection: resume every topic from the last message seen.
	c, err = d.dial(node2, dialSlots, deadline)
	if err != nil {
		d.fail("node 2: %v", err)
		return
	}
	defer c.Close()
	pending := map[string]bool{}
	for _, topic := range d.topics {
		last := d.start[topic]
		if g := d.got[topic]; len(g) > 0 {
			last = g[len(g)-1].offset
		}
		d.since[topic] = last
		pending[topic] = true
		cmd := map[string]any{"op": "subscribe", "topic": topic, "ref": "r:" + topic,
			"since": map[string]any{"offset": last, "epoch": d.epoch[topic]}}
		if err := c.Send(cmd); err != nil {
			d.fail("resume %s: %v", topic, err)
			return
		}
	}
	complete := func() bool {
		for _, topic := range d.topics {
			g := d.got[topic]
			if pending[topic] || len(g) == 0 || g[len(g)-1].offset < final {
				return false
			}
		}
		return true
	}
	pinged := false
	for {
		f, err := c.Next(deadline)
		if err != nil {
			if d.wasAborted() {
				d.fail("aborted while waiting on node 2 for offset %d of every topic; last offsets: %s", final, d.lastOffsets())
			} else {
				d.fail("node 2 connection ended: %v; last offsets: %s", err, d.lastOffsets())
			}
			return
		}
		switch f.Type {
		case "subscribed":
			if f.Ref != "r:"+f.Topic || !pending[f.Topic] {
				d.fail("node 2: unexpected %s", f.Raw)
				continue
			}
			delete(pending, f.Topic)
			d.resumed[f.Topic] = f.Offset
			if !f.Recovered || f.Epoch != d.epoch[f.Topic] {
				d.fail("resume of %s since %d: answered %s, want recovered:true in epoch %q", f.Topic, d.since[f.Topic], f.Raw, d.epoch[f.Topic])
			}
		case "message":
			if pending[f.Topic] {
				d.fail("node 2: %s offset %d before the resume's `subscribed` answer", f.Topic, f.Offset)
			}
			d.record(f, true)
		case "pong":
			if pinged && f.Ref == "done" {
				return
			}
			d.fail("node 2: unexpected %s", f.Raw)
		default:
			d.fail("node 2: unexpected %s", f.Raw)
		}
		// Every topic reached its last offset: a ping's answer is queued
		// after anything still to come, duplicates included.
		if !pinged && complete() {
			if err := c.Send(map[string]any{"op": "ping", "ref": "done"}); err != nil {
				d.fail("ping: %v", err)
				return
			}
			pinged = true
		}
	}
}

// dial opens a session at addr, holding one of dialSlots while it
// connects, and reads its welcome.
func (d *drainClient) dial(addr string, dialSlots chan struct{}, deadline time.Time) (*wstest.Conn, error) {
	c, err := dialHolding(addr, dialSlots, deadline)
	if err != nil {
		return nil, err
	}
	if !d.setConn(c) {
		return nil, fmt.Errorf("aborted")
	}
	if _, err := c.Expect("welcome", deadline); err != nil {
		c.Close()
		return nil, fmt.Errorf("welcome: %w", err)
	}
	return c, nil
}

// describeAround lists the deliveries around index j, each with the
// connection it came on, and marks where the new connection starts.
func describeAround(g []resumeDelivery, j int) string {
	from, to := max(0, j-6), min(len(g), j+6)
	var b strings.Builder
	if from > 0 {
		b.WriteString("… ")
	}
	for k := from; k < to; k++ {
		if k > from {
			b.WriteString(", ")
			if g[k].fresh && !g[k-1].fresh {
				b.WriteString("| ")
			}
		}
		conn := "old"
		if g[k].fresh {
			conn = "new"
		}
		if k == j {
			fmt.Fprintf(&b, "[%d %s]", g[k].offset, conn)
		} else {
			fmt.Fprintf(&b, "%d %s", g[k].offset, conn)
		}
	}
	if to < len(g) {
		b.WriteString(" …")
	}
	return b.String()
}

// TestDrainResumeGivesEveryClientEachOffsetOnce drains one node of a
// two-node cluster under load. 200 sessions are subscribed on node 1 (half
// to two topics, half to one) while a publisher publishes over HTTP to
// node 2 at about 200 messages a second, round-robin over the topics.
// Node 1 gets SIGTERM after about two seconds; each session, on its 1001,
// reconnects to node 2 and resumes every topic since the last message it
// received there. Each resume must be recovered, and every session must
// receive on every topic each offset after its subscribe exactly once, in
// order, across both connections: no gap at the resume point and no
// duplicate on the new connection, where the history replay and the live
// stream meet.
func TestDrainResumeGivesEveryClientEachOffsetOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs two broker processes and Redis")
	}
	t.Parallel()
	const (
		clients        = 200
		topics         = 4
		perTopic       = 250              // messages published to each topic
		rate           = 200              // publishes per second, all topics together
		signalAfter    = 2 * rate         // publishes before node 1 gets SIGTERM (~2 s)
		shutdownBound  = 15 * time.Second // node 1's -shutdown-timeout
		settleBound    = 15 * time.Second // for the clients after the last publish
		maxErrorsShown = 20
	)
	// The broker is built with the race detector, as the in-process nodes
	// of the other tests run: besides checking the broker for races under
	// this load, its slower relay widens the window in which a resume's
	// replay is ahead of what Redis pub/sub has delivered to the node.
	bin := filepath.Join(t.TempDir(), "broker")
	if out, err := exec.Command("go", "build", "-race", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	srv := redistest.Start(t)
	// History holds the whole test, so that every resume can be recovered.
	args := []string{"-redis", srv.URL(), "-demo=false", "-history-size", "1000", "-shutdown-timeout", shutdownBound.String()}
	node1 := startProc(t, bin, args...)
	node2 := startProc(t, bin, args...)

	topicName := func(k int) string { return fmt.Sprintf("drain.resume.%d", k) }
	cs := make([]*drainClient, clients)
	for i := range cs {
		subs := []string{topicName(i % topics)}
		if i%2 == 1 {
			subs = append(subs, topicName((i+1)%topics))
		}
		cs[i] = &drainClient{n: i, topics: subs}
	}
	var clientsWG sync.WaitGroup
	ready := make(chan error, clients)
	dialSlots := make(chan struct{}, 32)
	for _, c := range cs {
		clientsWG.Go(func() { c.run(node1.addr, node2.addr, perTopic, dialSlots, ready) })
	}
	abortAll := func() {
		for _, c := range cs {
			c.abort()
		}
	}
	t.Cleanup(func() {
		abortAll()
		clientsWG.Wait()
	})
	waitReady(t, ready, clients, "client", 30*time.Second)

	// The publisher: round-robin over the topics, paced by a ticker, to
	// node 2. acks[topic][offset-1] is the id acknowledged for offset.
	var (
		acks    = make(map[string][]string, topics)
		pubErr  error
		stop    = make(chan struct{})
		halfway = make(chan struct{})
		pubDone = make(chan struct{})
	)
	hc := newHTTPClient(t)
	go func() {
		defer close(pubDone)
		var once sync.Once
		defer once.Do(func() { close(halfway) })
		tick := time.NewTicker(time.Second / rate)
		defer tick.Stop()
		for i := range perTopic * topics {
			select {
			case <-tick.C:
			case <-stop:
				pubErr = fmt.Errorf("stopped after %d publishes", i)
				return
			}
			topic := topicName(i % topics)
			status, r, err := publish(hc, node2.addr, topic, fmt.Sprintf(`{"n":%d}`, i))
			if err != nil || status != http.StatusOK {
				pubErr = fmt.Errorf("publish %d to %s on node 2: status %d, %v", i, topic, status, err)
				return
			}
			if want := uint64(i/topics + 1); r.Offset != want {
				pubErr = fmt.Errorf("publish %d to %s: offset %d, want %d", i, topic, r.Offset, want)
				return
			}
			acks[topic] = append(acks[topic], r.ID)
			if i+1 == signalAfter {
				once.Do(func() { close(halfway) })
			}
		}
	}()
	t.Cleanup(func() {
		close(stop)
		<-pubDone
	})

	<-halfway
	node1.signal(t, syscall.SIGTERM)
	<-pubDone
	if pubErr != nil {
		t.Fatalf("publisher: %v", pubErr)
	}
	node1.wait(t, shutdownBound+5*time.Second)
	if node1.err != nil {
		t.Errorf("node 1 exited with %v after SIGTERM, want status 0", node1.err)
	}

	clientsDone := make(chan struct{})
	go func() { clientsWG.Wait(); close(clientsDone) }()
	select {
	case <-clientsDone:
	case <-time.After(settleBound):
		// Those still waiting report what they miss.
		abortAll()
		<-clientsDone
	}

	// Every client received on every topic exactly start+1..perTopic, each
	// once, in order, across both connections, with the acknowledged ids.
	shown := 0
	fail := func(format string, args ...any) {
		shown++
		if shown <= maxErrorsShown {
			t.Errorf(format, args...)
		}
	}
	var dupClients, failedClients []int
	resumes, replays, replayed, fresh := 0, 0, uint64(0), 0
	for _, c := range cs {
		for _, topic := range c.topics {
			resumes++
			if p, s := c.resumed[topic], c.since[topic]; p > s {
				replays++
				replayed += p - s
			}
			for _, d := range c.got[topic] {
				if d.fresh {
					fresh++
				}
			}
		}
	}
	t.Logf("%d resumes, %d with a replay (%d messages replayed), %d messages on the new connections", resumes, replays, replayed, fresh)
	for _, c := range cs {
		bad, dup := len(c.errs) > 0, false
		for _, e := range c.errs {
			fail("client %d (%v): %s", c.n, c.topics, e)
		}
		if c.oldClose == nil || c.oldClose.Code != ws.StatusGoingAway || c.oldClose.Reason != "server shutting down" {
			bad = true
			fail("client %d: node 1 closed with %v, want 1001 \"server shutting down\"", c.n, c.oldClose)
		}
		for _, topic := range c.topics {
			g, start := c.got[topic], c.start[topic]
			topicBad := false
			seen := map[uint64]bool{}
			for _, d := range g {
				if d.fresh && seen[d.offset] {
					dup = true
				}
				if d.fresh {
					seen[d.offset] = true
				}
			}
			for j, d := range g {
				want := start + uint64(j) + 1
				if d.offset == want {
					if k := d.offset - 1; k < uint64(len(acks[topic])) && d.id != acks[topic][k] {
						topicBad = true
						fail("client %d, %s: offset %d delivered with id %s, acknowledged as %s", c.n, topic, d.offset, d.id, acks[topic][k])
						break
					}
					continue
				}
				topicBad = true
				what := fmt.Sprintf("offset %d missing: got %d", want, d.offset)
				switch {
				case d.offset < want && d.fresh && j > 0 && g[j-1].fresh:
					what = fmt.Sprintf("offset %d received twice on the new connection (%d after the resume point)", d.offset, d.offset-c.since[topic])
				case d.offset < want && d.fresh:
					what = fmt.Sprintf("offset %d received on both connections", d.offset)
				case d.offset < want:
					what = fmt.Sprintf("offset %d received again on the old connection", d.offset)
				}
				fail("client %d, %s (subscribed at %d, resumed since %d, recovered): delivery %d: %s; deliveries: %s",
					c.n, topic, start, c.since[topic], j, what, describeAround(g, j))
				break
			}
			if n := uint64(len(g)); n < perTopic-start && !topicBad {
				topicBad = true
				fail("client %d, %s: %d messages, want offsets %d..%d", c.n, topic, n, start+1, perTopic)
			}
			bad = bad || topicBad
		}
		if dup {
			dupClients = append(dupClients, c.n)
		}
		if bad || dup {
			failedClients = append(failedClients, c.n)
		}
	}
	if shown > maxErrorsShown {
		t.Errorf("… and %d more errors", shown-maxErrorsShown)
	}
	if len(failedClients) > 0 {
		t.Errorf("%d of %d clients did not receive each offset once, in order; %d received an offset twice on the new connection: %v",
			len(failedClients), clients, len(dupClients), dupClients)
	}
}
