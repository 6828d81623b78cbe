package ws_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/tidings-io/tidings/broker"
	"github.com/tidings-io/tidings/internal/testkit"
	"github.com/tidings-io/tidings/store/memory"
	wsserver "github.com/tidings-io/tidings/transport/ws"
)

// messagesUntilMarker reads frames until the `message` on marker delivered
// through an exact subscription, and returns the messages read before it.
func (c *client) messagesUntilMarker(marker string) []event {
	c.t.Helper()
	var got []event
	for {
		e := c.expect("message")
		if e.Topic == marker && !e.Has("sub") {
			return got
		}
		if e.Topic != marker {
			got = append(got, e)
		}
	}
}

func TestWildcardSubscriptionsMatchLikeNATS(t *testing.T) {
	t.Parallel()
	tests := []struct {
		pattern string
		topic   string
		match   bool
	}{
		{pattern: "a.*", topic: "a.b", match: true},
		{pattern: "a.*", topic: "a.b.c", match: false},
		{pattern: "a.*", topic: "a", match: false},
		{pattern: "a.*", topic: "b.a", match: false},
		{pattern: "*", topic: "a", match: true},
		{pattern: "*", topic: "a.b", match: false},
		{pattern: "*.b", topic: "a.b", match: true},
		{pattern: "*.b", topic: "a.c", match: false},
		{pattern: "prices.*.usd", topic: "prices.eur.usd", match: true},
		{pattern: "prices.*.usd", topic: "prices.eur.gbp", match: false},
		{pattern: "prices.*.usd", topic: "prices.usd", match: false},
		{pattern: "*.*", topic: "x.y", match: true},
		{pattern: "a.>", topic: "a.b", match: true},
		{pattern: "a.>", topic: "a.b.c.d", match: true},
		{pattern: "a.>", topic: "a", match: false},
		{pattern: "a.>", topic: "ab.c", match: false},
		{pattern: ">", topic: "x", match: true},
		{pattern: ">", topic: "x.y.z", match: true},
		{pattern: "*.>", topic: "x", match: false},
		{pattern: "*.>", topic: "x.y", match: true},
		{pattern: "a.*.>", topic: "a.b.c", match: true},
		{pattern: "a.*.>", topic: "a.b", match: false},
		{pattern: "chat:room-42.*", topic: "chat:room-42.alice_1", match: true},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s/%s/%v", tt.pattern, tt.topic, tt.match), func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, config{})
			const marker = "zz.marker.x"
			c, _ := h.dialWelcome(t)
			c.subscribe(tt.pattern)
			c.subscribe(marker)
			m := h.mustPublish(t, tt.topic, `{"to":"`+tt.topic+`"}`)
			h.mustPublish(t, marker, `"marker"`)

			got := c.messagesUntilMarker(marker)
			if !tt.match {
				if len(got) != 0 {
					t.Fatalf("%s matched %s: got %s", tt.pattern, tt.topic, got[0])
				}
				return
			}
			if len(got) != 1 {
				t.Fatalf("%s on %s: got %d messages, want 1: %v", tt.pattern, tt.topic, len(got), got)
			}
			e := got[0]
			if e.Topic != tt.topic || e.Sub != tt.pattern || e.ID != m.ID || e.Offset != m.Offset || e.Epoch != m.Epoch {
				t.Fatalf("message = %s, want topic %s sub %s id %s offset %d", e, tt.topic, tt.pattern, m.ID, m.Offset)
			}
		})
	}
}

func TestExactAndWildcardSubscriptionsEachDeliverOnce(t *testing.T) {
	t.Parallel()
	h := newHarness(t, config{})
	c, _ := h.dialWelcome(t)
	c.subscribe("a.b")
	c.subscribe("a.*")
	c.subscribe("a.>")
	c.subscribe("marker")
	m := h.mustPublish(t, "a.b", `{"k":1}`)
	h.mustPublish(t, "marker", `0`)

	got := c.messagesUntilMarker("marker")
	bySub := map[string]int{}
	for _, e := range got {
		if e.ID != m.ID || e.Offset != m.Offset || string(e.Data) != `{"k":1}` {
			t.Errorf("delivery %s is not the published message %s", e, m.ID)
		}
		key := e.Sub
		if !e.Has("sub") {
			key = "(exact)"
		} else if e.Sub == "" {
			t.Errorf("delivery %s has an empty sub", e)
		}
		bySub[key]++
	}
	want := map[string]int{"(exact)": 1, "a.*": 1, "a.>": 1}
	if fmt.Sprint(bySub) != fmt.Sprint(want) {
		t.Fatalf("deliveries by subscription = %v, want %v", bySub, want)
	}
}

func TestSubscriberSeesThousandOffsetsInOrderEachOnce(t *testing.T) {
	t.Parallel()
	h := newHarness(t, config{})
	const topic = "order.t"
	const perPublisher = 500
	sub, _ := h.dialWelcome(t)
	sub.subscribe(topic)

	// Two publishers at once: one over HTTP, one over a second session.
	pub, _ := h.dialWelcome(t)
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	wg.Add(2)
	go func() {
		defer wg.Done()
		for i := 0; i < perPublisher; i++ {
			if _, err := h.publishHTTP(topic, `{"p":"http","i":`+strconv.Itoa(i)+`}`); err != nil {
				errs <- err
				return
			}
		}
	}()
	go func() {
		defer wg.Done()
		for i := 0; i < perPublisher; i++ {
			cmd := `{"op":"publish","topic":"` + topic + `","data":{"p":"ws","i":` + strconv.Itoa(i) + `}}`
			if err := pub.tryWriteRaw(textHeader(len(cmd)), []byte(cmd)); err != nil {
				errs <- err
				return
			}
		}
	}()
	t.Cleanup(wg.Wait)

	next := map[string]int{"http": 0, "ws": 0}
	for want := uint64(1); want <= 2*perPublisher; want++ {
		e := sub.expect("message")
		if e.Offset != want {
			t.Fatalf("message offset %d, want %d (in order, each once)", e.Offset, want)
		}
		var d struct {
			P string `json:"p"`
			I int    `json:"i"`
		}
		if err := json.Unmarshal(e.Data, &d); err != nil {
			t.Fatalf("data %s: %v", e.Data, err)
		}
		if d.I != next[d.P] {
			t.Fatalf("publisher %s: got message %d, want %d (its own order)", d.P, d.I, next[d.P])
		}
		next[d.P]++
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for i := 0; i < perPublisher; i++ {
		pub.expect("published")
	}
	sub.ping("no-more")
}

// textHeader is the header of a final, masked text frame of n bytes.
func textHeader(n int) ws.Header {
	return ws.Header{Fin: true, OpCode: ws.OpText, Masked: true, Length: int64(n)}
}

// resumeCmd is a subscribe command resuming topic after offset in epoch.
func resumeCmd(topic string, offset uint64, epoch string) string {
	return fmt.Sprintf(`{"op":"subscribe","topic":%q,"since":{"offset":%d,"epoch":%q},"ref":"r"}`, topic, offset, epoch)
}

func TestResumeReplaysHistoryThenLiveWithoutGapOrDuplicate(t *testing.T) {
	t.Parallel()
	const (
		topic  = "resume.merge"
		before = 10
		since  = 3
		// live is how many messages the subscriber must see beyond the
		// position it subscribed at before the publisher stops.
		live = 200
		// most bounds the publisher should the subscriber fall behind.
		most = 50000
	)
	h := newHarness(t, config{
		store:  memory.Config{HistorySize: most},
		broker: broker.Config{QueueSize: 2 * most, QueueBytes: 256 * most},
	})
	for i := 1; i <= before; i++ {
		h.mustPublish(t, topic, strconv.Itoa(i))
	}
	c, _ := h.dialWelcome(t)

	// Publish without pause while the session resumes, so that deliveries
	// arrive before, during and after the history read and the replay and
	// the live stream have to be merged.
	stop := make(chan struct{})
	var stopOnce sync.Once
	halt := func() { stopOnce.Do(func() { close(stop) }) }
	type result struct {
		last uint64
		err  error
	}
	done := make(chan result, 1)
	go func() {
		var last uint64
		for last < most {
			select {
			case <-stop:
				done <- result{last: last}
				return
			default:
			}
			m, err := h.publish(topic, "0")
			if err != nil {
				done <- result{err: err}
				return
			}
			last = m.Offset
		}
		done <- result{last: last}
	}()
	t.Cleanup(func() {
		halt()
		<-done
	})

	c.send(resumeCmd(topic, since, testkit.EpochOf(t, h.store, topic)))
	s := c.expect("subscribed")
	if !s.Recovered || s.Ref != "r" || s.Epoch != testkit.EpochOf(t, h.store, topic) || s.Offset < before {
		t.Fatalf("subscribed = %s, want recovered:true at offset >= %d", s, before)
	}
	want := uint64(since + 1)
	read := func() {
		t.Helper()
		e := c.expect("message")
		if e.Offset != want {
			t.Fatalf("message offset %d, want %d (no gap, no duplicate)", e.Offset, want)
		}
		if want <= before && string(e.Data) != strconv.FormatUint(want, 10) {
			t.Fatalf("replayed offset %d has data %s", want, e.Data)
		}
		want++
	}
	for want <= s.Offset+live {
		read()
	}
	halt()
	r := <-done
	done <- r // for the cleanup
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.last < s.Offset+live {
		t.Fatalf("publisher stopped at %d, before the live stream", r.last)
	}
	for want <= r.last {
		read()
	}
	c.ping("end")
	t.Logf("subscribed at offset %d; publisher stopped at %d", s.Offset, r.last)
}

func TestResumePositions(t *testing.T) {
	t.Parallel()
	const history = 5
	tests := []struct {
		name          string
		published     int
		since         uint64
		wrongEpoch    bool
		wantRecovered bool
		wantReplay    []uint64
	}{
		{name: "replays the rest of history", published: 8, since: 5, wantRecovered: true, wantReplay: []uint64{6, 7, 8}},
		{name: "history reaches exactly since+1", published: 10, since: 5, wantRecovered: true, wantReplay: []uint64{6, 7, 8, 9, 10}},
		{name: "history no longer reaches since+1", published: 10, since: 4, wantRecovered: false},
		{name: "history long gone", published: 10, since: 1, wantRecovered: false},
		{name: "wrong epoch", published: 3, since: 1, wrongEpoch: true, wantRecovered: false},
		{name: "since equals current offset", published: 4, since: 4, wantRecovered: true},
		{name: "since 0 on a fresh topic", published: 0, since: 0, wantRecovered: true},
		{name: "since 0 replays everything kept", published: 3, since: 0, wantRecovered: true, wantReplay: []uint64{1, 2, 3}},
		{name: "since beyond current offset", published: 2, since: 7, wantRecovered: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, config{store: memory.Config{HistorySize: history}})
			const topic = "resume.pos"
			// The topic gets its epoch on first subscribe, even unpublished.
			first, _ := h.dialWelcome(t)
			s0 := first.subscribe(topic)
			epoch := s0.Epoch
			if epoch == "" || !s0.Has("offset") || s0.Offset != 0 {
				t.Fatalf("first subscribe = %s, want offset 0 and an epoch", s0)
			}
			for i := 1; i <= tt.published; i++ {
				h.mustPublish(t, topic, strconv.Itoa(i))
			}
			if tt.wrongEpoch {
				epoch = "not-" + epoch
			}

			c, _ := h.dialWelcome(t)
			c.send(resumeCmd(topic, tt.since, epoch))
			s := c.expect("subscribed")
			if s.Recovered != tt.wantRecovered || !s.Has("recovered") {
				t.Fatalf("subscribed = %s, want recovered %v", s, tt.wantRecovered)
			}
			if s.Offset != uint64(tt.published) || !s.Has("offset") || s.Epoch != s0.Epoch {
				t.Fatalf("subscribed = %s, want the current position %d/%s", s, tt.published, s0.Epoch)
			}
			for _, want := range tt.wantReplay {
				if e := c.expect("message"); e.Offset != want {
					t.Fatalf("replayed offset %d, want %d", e.Offset, want)
				}
			}
			// Then the live stream, and nothing replayed in between.
			live := h.mustPublish(t, topic, `"live"`)
			if e := c.expect("message"); e.Offset != live.Offset || string(e.Data) != `"live"` {
				t.Fatalf("after the replay got %s, want the live message at offset %d", e, live.Offset)
			}
		})
	}
}

// withBacklog starts a server with the given write timeout, opens a
// session whose client socket has a fixed 64 KiB receive buffer (the
// kernel does not grow the window, so a backlog waits on the server's
// side), subscribes it to topic and publishes n messages of size bytes
// before the session reads any. It returns the harness, the session and
// the last offset.
func withBacklog(t *testing.T, topic string, n, size int, writeTimeout time.Duration) (*harness, *client, uint64) {
	t.Helper()
	h := newHarness(t, config{
		ws:     wsserver.Config{WriteTimeout: writeTimeout},
		broker: broker.Config{QueueSize: 2 * n, QueueBytes: 4 * n * size},
	})
	c := h.dialWith(t, ws.Dialer{Timeout: ioTimeout, NetDial: func(ctx context.Context, network, addr string) (net.Conn, error) {
		nc, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err == nil {
			err = nc.(*net.TCPConn).SetReadBuffer(64 << 10)
		}
		return nc, err
	}})
	c.expect("welcome")
	c.subscribe(topic)
	data := `"` + strings.Repeat("x", size) + `"`
	var last uint64
	for i := 0; i < n; i++ {
		last = h.mustPublish(t, topic, data).Offset
	}
	return h, c, last
}

// readBacklog reads messages 1 to last, in order and each once, calling
// after (when not nil) with each offset read.
func readBacklog(t *testing.T, c *client, last uint64, after func(offset uint64)) {
	t.Helper()
	for want := uint64(1); want <= last; want++ {
		f, err := c.readFrame()
		if err != nil {
			t.Fatalf("after %d of %d messages: %v", want-1, last, err)
		}
		if typ, off, err := peekMessage(f.Payload); err != nil || typ != "message" || off != want {
			t.Fatalf("frame %s, want message %d", describe(f), want)
		}
		if after != nil {
			after(want)
		}
	}
}

// TestWriteAfterAFullSocketHasNoStaleDeadline: once the server had to wait
// for a full socket, its later writes, which do not wait, must not meet the
// deadline that wait set: a message published after the write timeout has
// passed is delivered.
func TestWriteAfterAFullSocketHasNoStaleDeadline(t *testing.T) {
	t.Parallel()
	const (
		topic   = "stale.t"
		timeout = time.Second
	)
	h, c, last := withBacklog(t, topic, 2500, 4<<10, timeout)
	readBacklog(t, c, last, nil)
	// What is tested is the passing of the write timeout.
	time.Sleep(timeout + timeout/2)
	m := h.mustPublish(t, topic, `"later"`)
	if e := c.expect("message"); e.Offset != m.Offset {
		t.Fatalf("got %s, want offset %d", e, m.Offset)
	}
	c.ping("after")
}

// TestSteadyReaderOfALargeBacklogIsNotCut: the write timeout bounds a
// write that makes no progress, not the time a peer that keeps reading
// takes to read a large batch. The subscriber reads 12 MiB of backlog at
// a pace that makes the server's writes wait far longer than the write
// timeout in all, and gets every message, then a pong.
func TestSteadyReaderOfALargeBacklogIsNotCut(t *testing.T) {
	t.Parallel()
	// Long enough that a reader starved of CPU on a loaded machine does
	// not pause for a whole timeout.
	const timeout = time.Second
	h, c, last := withBacklog(t, "backlog.t", 3000, 4<<10, timeout)
	// About 4 MiB/s: the part of the backlog beyond the socket buffers
	// takes the server ~2 s to write, twice the write timeout,
	// while the reader never pauses for long.
	start := time.Now()
	readBacklog(t, c, last, func(offset uint64) {
		if offset%2 == 0 {
			time.Sleep(2 * time.Millisecond) // pacing the reader, not waiting for an event
		}
	})
	c.ping("after-backlog")
	if elapsed := time.Since(start); elapsed < 2*timeout {
		t.Fatalf("read the backlog in %v: it did not outlast the write timeout (%v), nothing was tested", elapsed, timeout)
	}
	if h.b.Stats().SlowConsumers != 0 {
		t.Fatal("counted as a slow consumer")
	}
}
