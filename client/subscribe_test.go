package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/tidings-io/tidings/client"
	"github.com/tidings-io/tidings/hooks"
	"github.com/tidings-io/tidings/protocol"
	"github.com/tidings-io/tidings/session"
	wstransport "github.com/tidings-io/tidings/transport/ws"
)

// publishN publishes n messages to topic, whose data are the numbers
// from..from+n-1.
func publishN(t testing.TB, c *client.Client, topic string, from, n int) {
	t.Helper()
	for i := from; i < from+n; i++ {
		if _, err := c.Publish(ctxT(t), topic, i); err != nil {
			t.Fatalf("publish %s %d: %v", topic, i, err)
		}
	}
}

// expectRun reads n deliveries of topic, which must have the offsets
// from..from+n-1 and those numbers as data, in order.
func expectRun(t testing.TB, sub *client.Subscription, topic string, from, n int) {
	t.Helper()
	for i := from; i < from+n; i++ {
		d := next(t, sub)
		if d.Topic != topic || d.Offset != uint64(i) || string(d.Data) != strconv.Itoa(i) {
			t.Fatalf("got %s offset %d data %s, want %s offset %d data %d", d.Topic, d.Offset, d.Data, topic, i, i)
		}
	}
}

// resets records the resets a subscription reports.
type resets struct {
	mu  sync.Mutex
	got []client.Reset
}

func (r *resets) add(x client.Reset) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, x)
}

func (r *resets) list() []client.Reset {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got)
}

// Exact topics and wildcards on one subscription: wildcard deliveries
// carry their pattern, and a message matching several patterns comes
// once (through the exact topic).
func TestSubscribeWildcards(t *testing.T) {
	n := startNode(t, nodeConfig{})
	c := newClient(t, n.URL, client.Config{})
	sub := subscribe(t, c, []string{"sw.a", "sw.*", "sw.x.>", "sw.*"}, client.SubscribeOptions{})

	for _, topic := range []string{"sw.a", "sw.b", "sw.x.y", "sw.c.d", "sw.b", "sw.x.y.z"} {
		if _, err := c.Publish(ctxT(t), topic, topic); err != nil {
			t.Fatal(err)
		}
	}
	type key struct {
		topic, sub string
		offset     uint64
	}
	want := []key{{"sw.a", "", 1}, {"sw.b", "sw.*", 1}, {"sw.x.y", "sw.x.>", 1}, {"sw.b", "sw.*", 2}, {"sw.x.y.z", "sw.x.>", 1}}
	var got []key
	for range want {
		d := next(t, sub)
		if string(d.Data) != strconv.Quote(d.Topic) || d.ID == "" || d.Epoch == "" || d.Time.IsZero() {
			t.Errorf("delivery %+v", d)
		}
		got = append(got, key{d.Topic, d.Sub, d.Offset})
	}
	if !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	// Nothing else came: the next delivery is the next message.
	if _, err := c.Publish(ctxT(t), "sw.a", "sw.a"); err != nil {
		t.Fatal(err)
	}
	if d := next(t, sub); d.Topic != "sw.a" || d.Offset != 2 || d.Sub != "" {
		t.Fatalf("got %s %d via %q, want sw.a 2 (no copy through sw.*)", d.Topic, d.Offset, d.Sub)
	}
	pos := sub.Positions()
	for topic, offset := range map[string]uint64{"sw.a": 2, "sw.b": 2, "sw.x.y": 1, "sw.x.y.z": 1} {
		if pos[topic].Offset != offset || pos[topic].Epoch == "" {
			t.Errorf("Positions()[%s] = %+v, want offset %d", topic, pos[topic], offset)
		}
	}
	if _, ok := pos["sw.c.d"]; ok {
		t.Errorf("Positions() has sw.c.d, which no pattern matches")
	}
}

// Concurrent publishers on several topics: each topic's messages come in
// offset order, each once.
func TestSubscribeOrdered(t *testing.T) {
	n := startNode(t, nodeConfig{})
	c := newClient(t, n.URL, client.Config{})
	sub := subscribe(t, c, []string{"ord.>"}, client.SubscribeOptions{Buffer: 8})
	const topics, each = 4, 150
	var wg sync.WaitGroup
	errs := make(chan error, topics)
	for i := range topics {
		wg.Go(func() {
			topic := fmt.Sprintf("ord.t%d", i)
			for j := 1; j <= each; j += 3 {
				// Batches and single publishes, interleaved.
				msgs := []client.Message{{Topic: topic, Data: j}, {Topic: topic, Data: j + 1}}
				if _, err := c.PublishBatch(ctxT(t), msgs); err != nil {
					errs <- err
					return
				}
				if _, err := c.Publish(ctxT(t), topic, j+2); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	last := make(map[string]uint64)
	for range topics * each {
		d := next(t, sub)
		if d.Offset != last[d.Topic]+1 || string(d.Data) != strconv.FormatUint(d.Offset, 10) {
			t.Fatalf("%s: offset %d (data %s) after %d", d.Topic, d.Offset, d.Data, last[d.Topic])
		}
		last[d.Topic] = d.Offset
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// A connection cut without a close frame: the client reconnects, resumes
// with since and gets what was published meanwhile, once, in order.
func TestSubscribeResumesAfterCut(t *testing.T) {
	n := startNode(t, nodeConfig{})
	p := startProxy(t, hostOf(n.URL))
	pub := newClient(t, n.URL, client.Config{})
	var rs resets
	sub := subscribe(t, newClient(t, p.URL(), client.Config{}), []string{"cut.a"}, client.SubscribeOptions{OnReset: rs.add})

	publishN(t, pub, "cut.a", 1, 5)
	expectRun(t, sub, "cut.a", 1, 5)
	first := sub.Session()

	p.Cut()
	eventually(t, n.sessions(0))
	publishN(t, pub, "cut.a", 6, 10)
	p.Restore()
	expectRun(t, sub, "cut.a", 6, 10)
	publishN(t, pub, "cut.a", 16, 1)
	expectRun(t, sub, "cut.a", 16, 1)

	if s := sub.Session(); s == first || s == "" {
		t.Errorf("session %q after the cut, want a new one (was %q)", s, first)
	}
	if got := sub.Positions()["cut.a"]; got.Offset != 16 {
		t.Errorf("position %+v, want offset 16", got)
	}
	if r := rs.list(); len(r) != 0 {
		t.Errorf("resets %+v, want none", r)
	}
}

// A connection that goes silent (a black hole) is dropped after two
// heartbeats, and the client resumes on a new one.
func TestSubscribeHeartbeatWatchdog(t *testing.T) {
	n := startNode(t, nodeConfig{WS: wstransport.Config{Heartbeat: 200 * time.Millisecond}})
	p := startProxy(t, hostOf(n.URL))
	pub := newClient(t, n.URL, client.Config{})
	sub := subscribe(t, newClient(t, p.URL(), client.Config{}), []string{"hb.a"}, client.SubscribeOptions{})
	publishN(t, pub, "hb.a", 1, 2)
	expectRun(t, sub, "hb.a", 1, 2)
	first := sub.Session()

	p.Freeze()
	publishN(t, pub, "hb.a", 3, 5)
	expectRun(t, sub, "hb.a", 3, 5)
	if s := sub.Session(); s == first {
		t.Errorf("still on session %s", s)
	}
}

// The client answers the broker's pings: a session with nothing to say
// is not cut for silence.
func TestSubscribeAnswersPings(t *testing.T) {
	const beat = 100 * time.Millisecond
	n := startNode(t, nodeConfig{WS: wstransport.Config{Heartbeat: beat}})
	c := newClient(t, n.URL, client.Config{})
	sub := subscribe(t, c, []string{"ping.a"}, client.SubscribeOptions{})
	first := sub.Session()
	// Twelve heartbeats (what is tested is a duration): the broker cuts
	// a session silent for two.
	time.Sleep(12 * beat)
	publishN(t, c, "ping.a", 1, 1)
	expectRun(t, sub, "ping.a", 1, 1)
	if s := sub.Session(); s != first {
		t.Errorf("session %s, want the first one %s", s, first)
	}
}

// A consumer that does not read: the client stops reading too, the
// broker cuts the session, and once the consumer reads again the client
// resumes with nothing lost.
func TestSubscribeBackpressure(t *testing.T) {
	n := startNode(t, nodeConfig{WS: wstransport.Config{Heartbeat: 100 * time.Millisecond}})
	c := newClient(t, n.URL, client.Config{})
	sub := subscribe(t, c, []string{"bp.a"}, client.SubscribeOptions{Buffer: 1})
	publishN(t, c, "bp.a", 1, 40)
	// Not reading: the broker cuts the session, silent since its reader
	// waits for the consumer.
	eventually(t, n.sessions(0))
	publishN(t, c, "bp.a", 41, 20)
	expectRun(t, sub, "bp.a", 1, 60)
}

// since resumes from a saved position; a position of another epoch is
// not recovered, and OnReset says where the stream continues.
func TestSubscribeSince(t *testing.T) {
	n := startNode(t, nodeConfig{})
	c := newClient(t, n.URL, client.Config{})
	publishN(t, c, "since.a", 1, 3)
	h, err := c.History(ctxT(t), "since.a", client.HistoryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	epoch := h.Position.Epoch

	sub := subscribe(t, c, []string{"since.a"}, client.SubscribeOptions{Since: map[string]client.Position{"since.a": {Offset: 1, Epoch: epoch}}})
	expectRun(t, sub, "since.a", 2, 2)
	publishN(t, c, "since.a", 4, 1)
	expectRun(t, sub, "since.a", 4, 1)
	_ = sub.Close()

	var rs resets
	sub = subscribe(t, c, []string{"since.a"}, client.SubscribeOptions{OnReset: rs.add,
		Since: map[string]client.Position{"since.a": {Offset: 1, Epoch: "another"}}})
	want := client.Reset{Topic: "since.a", Offset: 4, Epoch: epoch, Reason: client.ResetNotRecovered}
	// The pump runs OnReset once it reaches the reset in the stream.
	eventually(t, func() error {
		if got := rs.list(); len(got) != 1 || got[0] != want {
			return fmt.Errorf("resets %+v, want %+v", got, want)
		}
		return nil
	})
	if got := sub.Positions()["since.a"]; got != (client.Position{Offset: 4, Epoch: epoch}) {
		t.Errorf("position %+v after the reset, want 4 in %s", got, epoch)
	}
	publishN(t, c, "since.a", 5, 1)
	expectRun(t, sub, "since.a", 5, 1)
}

// fillHistory publishes 50 messages to fill.a and returns the position
// before the first, to resume from.
func fillHistory(t *testing.T, c *client.Client) map[string]client.Position {
	t.Helper()
	publishN(t, c, "fill.a", 1, 50)
	h, err := c.History(ctxT(t), "fill.a", client.HistoryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return map[string]client.Position{"fill.a": {Offset: 0, Epoch: h.Position.Epoch}}
}

// A resume that replays more than Buffer before every pattern is
// answered does not hold Subscribe up (nobody can read C before it
// returns), and Subscribe returns with every pattern accepted: a message
// published then reaches the others.
func TestSubscribeReturnsWhenBufferFills(t *testing.T) {
	n := startNode(t, nodeConfig{})
	c := newClient(t, n.URL, client.Config{})
	since := fillHistory(t, c)
	sub := subscribe(t, c, []string{"fill.a", "fill.b", "fill.>"}, client.SubscribeOptions{Buffer: 1, Since: since})
	expectRun(t, sub, "fill.a", 1, 50)
	publishN(t, c, "fill.b", 1, 1)
	expectRun(t, sub, "fill.b", 1, 1)
}

// Subscribe does not return while the broker has not accepted a pattern,
// even once a resumed topic's history has filled Buffer: the subscribe
// hook holds fill.b's acceptance until the test lets it go. A message
// published once Subscribe returns reaches fill.b.
func TestSubscribeWaitsForEveryPattern(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Topic string `json:"topic"`
		}
		_ = json.NewDecoder(r.Body).Decode(&req)
		if req.Topic == "fill.b" {
			once.Do(func() { close(entered) })
			<-release
		}
		_, _ = w.Write([]byte(`{"allow":true}`))
	}))
	t.Cleanup(backend.Close)
	var released sync.Once
	letGo := func() { released.Do(func() { close(release) }) }
	t.Cleanup(letGo) // before backend.Close, should the test fail first
	hk, err := hooks.New(hooks.Config{Subscribe: backend.URL, Timeout: wait})
	if err != nil {
		t.Fatal(err)
	}
	n := startNode(t, nodeConfig{WS: wstransport.Config{Services: session.Services{Hooks: hk}}})
	c := newClient(t, n.URL, client.Config{})
	since := fillHistory(t, c)
	type result struct {
		sub *client.Subscription
		err error
	}
	done := make(chan result, 1)
	go func() {
		sub, err := c.Subscribe(ctxT(t), []string{"fill.a", "fill.b"}, client.SubscribeOptions{Buffer: 1, Since: since, Backoff: fastBackoff})
		done <- result{sub, err}
	}()
	<-entered
	// fill.a was accepted, and its 50 messages sent, before the hook was
	// asked about fill.b. Subscribe returning within this window, while
	// fill.b waits, is the fault; its absence cannot be awaited as an
	// event.
	select {
	case r := <-done:
		if r.sub != nil {
			_ = r.sub.Close()
		}
		t.Fatalf("Subscribe returned (%v) before the broker accepted fill.b", r.err)
	case <-time.After(300 * time.Millisecond):
	}
	letGo()
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	t.Cleanup(func() { _ = r.sub.Close() })
	publishN(t, c, "fill.b", 1, 1)
	expectRun(t, r.sub, "fill.a", 1, 50)
	expectRun(t, r.sub, "fill.b", 1, 1)
}

// A subscription the broker refuses fails Subscribe with its error.
func TestSubscribeRefused(t *testing.T) {
	n := startNode(t, nodeConfig{})
	c := newClient(t, n.URL, client.Config{})
	for _, patterns := range [][]string{{"bad..topic"}, {"ok.a", "a.>.b"}} {
		sub, err := c.Subscribe(ctxT(t), patterns, client.SubscribeOptions{})
		if !client.IsCode(err, protocol.CodeBadRequest) || sub != nil {
			t.Errorf("Subscribe(%q) = %v, %v; want bad_request", patterns, sub, err)
		}
	}
	_, err := c.Subscribe(ctxT(t), []string{"a.b"}, client.SubscribeOptions{Since: map[string]client.Position{"a.b": {}}})
	if err != nil {
		t.Errorf("since with a zero position: %v", err)
	}

	down := startNode(t, nodeConfig{})
	url := down.URL
	down.shutdown()
	_, err = newClient(t, url, client.Config{}).Subscribe(ctxT(t), []string{"a.b"}, client.SubscribeOptions{})
	if !client.IsCode(err, protocol.CodeUnavailable) {
		t.Errorf("Subscribe to a stopped broker: %v, want unavailable", err)
	}
}

// jwtKey signs the tests' session tokens.
var jwtKey = []byte("client-test-key-0123456789abcdef-0123456789")

// sign returns a token for sub allowed to subscribe to subscribe.
func sign(t testing.TB, sub string, subscribe ...string) string {
	t.Helper()
	tk, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": sub, "exp": time.Now().Add(time.Hour).Unix(),
		"subscribe": subscribe}).SignedString(jwtKey)
	if err != nil {
		t.Fatal(err)
	}
	return tk
}

// Tokens: a refused upgrade fails Subscribe with its status; a pattern
// the token does not allow is forbidden.
func TestSubscribeTokens(t *testing.T) {
	n := startNode(t, nodeConfig{JWTKey: jwtKey})
	_, err := newClient(t, n.URL, client.Config{Token: "not-a-jwt"}).Subscribe(ctxT(t), []string{"a.b"}, client.SubscribeOptions{})
	var e *client.Error
	if !errors.As(err, &e) || e.Code != protocol.CodeUnauthorized || e.Status != 401 {
		t.Errorf("a bad token: %v, want 401 unauthorized", err)
	}
	c := newClient(t, n.URL, client.Config{Token: sign(t, "ada", "rooms.>")})
	if _, err := c.Subscribe(ctxT(t), []string{"rooms.1", "news.>"}, client.SubscribeOptions{}); !client.IsCode(err, protocol.CodeForbidden) {
		t.Errorf("a pattern outside the token: %v, want forbidden", err)
	}
	calls := 0
	var mu sync.Mutex
	c = newClient(t, n.URL, client.Config{TokenFunc: func(ctx context.Context) (string, error) {
		mu.Lock()
		calls++
		mu.Unlock()
		return sign(t, "ada", "rooms.>"), nil
	}})
	sub := subscribe(t, c, []string{"rooms.1"}, client.SubscribeOptions{})
	if sub.Session() == "" {
		t.Error("no session")
	}
	mu.Lock()
	defer mu.Unlock()
	if calls != 1 {
		t.Errorf("TokenFunc called %d times, want 1", calls)
	}
}

// Close ends the subscription: C closes, Err is ErrClosed, the session
// ends; a done context does the same with its error.
func TestSubscriptionClose(t *testing.T) {
	n := startNode(t, nodeConfig{})
	c := newClient(t, n.URL, client.Config{})
	sub := subscribe(t, c, []string{"close.a"}, client.SubscribeOptions{})
	eventually(t, n.sessions(1))
	if err := sub.Close(); err != nil {
		t.Fatal(err)
	}
	expectClosed(t, sub)
	if !errors.Is(sub.Err(), client.ErrClosed) {
		t.Errorf("Err() = %v, want ErrClosed", sub.Err())
	}
	_ = sub.Close()
	eventually(t, n.sessions(0))

	ctx, cancel := context.WithCancel(context.Background())
	sub, err := c.Subscribe(ctx, []string{"close.a"}, client.SubscribeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	expectClosed(t, sub)
	if !errors.Is(sub.Err(), context.Canceled) {
		t.Errorf("Err() = %v, want context.Canceled", sub.Err())
	}

	// Close from OnReset does not deadlock.
	publishN(t, c, "close.b", 1, 1)
	var s2 *client.Subscription
	ready := make(chan struct{})
	s2, err = c.Subscribe(ctxT(t), []string{"close.b"}, client.SubscribeOptions{
		Since:   map[string]client.Position{"close.b": {Offset: 7, Epoch: "old"}},
		OnReset: func(client.Reset) { <-ready; _ = s2.Close() },
	})
	if err != nil {
		t.Fatal(err)
	}
	close(ready)
	expectClosed(t, s2)
	eventually(t, n.sessions(0))
}
