package sse_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/tidings-io/tidings/auth"
	"github.com/tidings-io/tidings/broker"
	"github.com/tidings-io/tidings/internal/testkit"
	"github.com/tidings-io/tidings/limit"
	"github.com/tidings-io/tidings/protocol"
	"github.com/tidings-io/tidings/session"
	"github.com/tidings-io/tidings/store/memory"
	"github.com/tidings-io/tidings/transport/httpstream"
	"github.com/tidings-io/tidings/transport/sse"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type env struct {
	b   *broker.Broker
	srv *sse.Server
	ts  *httptest.Server
}

func newEnv(t *testing.T, cfg sse.Config, bcfg broker.Config) *env {
	t.Helper()
	return startEnv(t, cfg, bcfg, (*httptest.Server).Start)
}

// startEnv is newEnv with the server started by start.
func startEnv(t *testing.T, cfg sse.Config, bcfg broker.Config, start func(*httptest.Server)) *env {
	t.Helper()
	store := memory.New(memory.Config{})
	b := broker.New(bcfg, store, sse.Encoder{})
	srv := sse.New(cfg, b)
	ts := httptest.NewUnstartedServer(srv)
	start(ts)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		ts.Close()
		_ = store.Close()
	})
	return &env{b: b, srv: srv, ts: ts}
}

// event is one event as a client reads it.
type event struct {
	typ, id, data string
	comments      []string
}

// stream reads a response's events on a goroutine of its own.
type stream struct {
	t      *testing.T
	resp   *http.Response
	events chan event
	errc   chan error
}

func (e *env) url(q url.Values) string { return e.ts.URL + "/v1/sse?" + q.Encode() }

func topics(ts ...string) url.Values { return url.Values{"topic": ts} }

// open opens a stream that must answer 200.
func (e *env) open(t *testing.T, q url.Values, header http.Header) *stream {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, e.url(q), nil)
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := e.ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	s := &stream{t: t, resp: resp, events: make(chan event, 1024), errc: make(chan error, 1)}
	go s.read()
	t.Cleanup(s.close)
	return s
}

func (s *stream) close() { _ = s.resp.Body.Close() }

// subscribed opens a stream on ts and reads its welcome, then a
// subscribed event for each topic.
func (e *env) subscribed(t *testing.T, ts ...string) *stream {
	t.Helper()
	s := e.open(t, topics(ts...), nil)
	s.expect("welcome")
	for range ts {
		s.expect("subscribed")
	}
	return s
}

// read parses the event stream, checking every line.
func (s *stream) read() {
	defer close(s.events)
	r := bufio.NewReader(s.resp.Body)
	var ev event
	var data []string
	started := false
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			if line != "" {
				s.errc <- fmt.Errorf("stream ended inside a line: %q", line)
			} else if started {
				s.errc <- fmt.Errorf("stream ended inside an event")
			} else if errors.Is(err, io.EOF) {
				s.errc <- io.EOF
			} else {
				s.errc <- err
			}
			return
		}
		line = strings.TrimSuffix(line, "\n")
		if line == "" {
			ev.data = strings.Join(data, "\n")
			s.events <- ev
			ev, data, started = event{}, nil, false
			continue
		}
		started = true
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "":
			ev.comments = append(ev.comments, value)
		case "event":
			ev.typ = value
		case "data":
			data = append(data, value)
		case "id":
			ev.id = value
		default:
			s.errc <- fmt.Errorf("unknown field in %q", line)
			return
		}
	}
}

// next returns the next event that is not a heartbeat.
func (s *stream) next() event {
	s.t.Helper()
	for {
		ev := s.nextAny()
		if ev.typ == "" && ev.data == "" && len(ev.comments) > 0 {
			continue
		}
		return ev
	}
}

func (s *stream) nextAny() event {
	s.t.Helper()
	select {
	case ev, ok := <-s.events:
		if !ok {
			s.t.Fatalf("stream ended: %v", <-s.errc)
		}
		for _, c := range ev.comments {
			if c != "ping" {
				s.t.Fatalf("unexpected comment %q (a position marker leaked?)", c)
			}
		}
		if ev.data != "" && !json.Valid([]byte(ev.data)) {
			s.t.Fatalf("event data is not JSON: %q", ev.data)
		}
		return ev
	case <-time.After(5 * time.Second):
		s.t.Fatal("no event within 5s")
		return event{}
	}
}

// expect returns the next event, which must be of type typ, its data
// decoded.
func (s *stream) expect(typ string) (event, map[string]any) {
	s.t.Helper()
	ev := s.next()
	if ev.typ != typ {
		s.t.Fatalf("event %q (%s), want %q", ev.typ, ev.data, typ)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(ev.data), &m); err != nil {
		s.t.Fatal(err)
	}
	if typ != "close" && m["type"] != typ {
		s.t.Fatalf("event %q carries type %v", typ, m["type"])
	}
	return ev, m
}

// ended waits for the end of the stream.
func (s *stream) ended() {
	s.t.Helper()
	select {
	case ev, ok := <-s.events:
		if ok {
			s.t.Fatalf("event %q (%s) where the stream should end", ev.typ, ev.data)
		}
		if err := <-s.errc; err != io.EOF {
			s.t.Fatalf("stream ended with %v, want a clean end", err)
		}
	case <-time.After(5 * time.Second):
		s.t.Fatal("stream did not end within 5s")
	}
}

// expectMessage reads a message event for m and checks that its data is
// the JSON of a WebSocket `message` frame, byte for byte.
func (s *stream) expectMessage(m *broker.Message, sub string) event {
	s.t.Helper()
	ev := s.next()
	want := string(session.AppendMessageEnd(session.AppendMessageStart(nil, m), sub))
	if ev.typ != "message" || ev.data != want {
		s.t.Fatalf("got %q %s, want message %s", ev.typ, ev.data, want)
	}
	if sub == "" && ev.id == "" {
		s.t.Fatalf("message on exact topic has no id")
	}
	if sub != "" && ev.id != "" {
		s.t.Fatalf("message through %s has id %q", sub, ev.id)
	}
	return ev
}

func TestHeadersWelcomeSubscribedAndMessagesInOrder(t *testing.T) {
	e := newEnv(t, sse.Config{Settings: httpstream.Settings{NodeID: "n1", Heartbeat: time.Hour}}, broker.Config{})
	s := e.open(t, topics("news"), nil)
	h := s.resp.Header
	for k, v := range map[string]string{
		"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
		"X-Accel-Buffering": "no", "Connection": "keep-alive",
	} {
		if got := h.Get(k); got != v {
			t.Errorf("header %s = %q, want %q", k, got, v)
		}
	}
	_, w := s.expect("welcome")
	if w["node"] != "n1" || w["session"] == "" || w["heartbeat"] != float64(3600) {
		t.Fatalf("welcome %v", w)
	}
	ev, sub := s.expect("subscribed")
	if sub["topic"] != "news" || sub["recovered"] != false || sub["offset"] != float64(0) || ev.id == "" {
		t.Fatalf("subscribed %v id %q", sub, ev.id)
	}
	var ids []string
	for i := 1; i <= 5; i++ {
		m := testkit.Publish(t, e.b, "news", fmt.Sprintf(`{"n":%d}`, i))
		ids = append(ids, s.expectMessage(m, "").id)
	}
	for i := 1; i < len(ids); i++ {
		if ids[i] == ids[i-1] {
			t.Fatalf("ids do not move: %q", ids)
		}
	}
}

func TestDataWithLineBreaksSpansDataLines(t *testing.T) {
	e := newEnv(t, sse.Config{}, broker.Config{})
	s := e.subscribed(t, "t")
	m := testkit.Publish(t, e.b, "t", "{\n  \"a\": [1,\n 2]\n}")
	s.expectMessage(m, "")
}

func TestResumeWithLastEventID(t *testing.T) {
	e := newEnv(t, sse.Config{}, broker.Config{})
	s := e.subscribed(t, "a", "b", "quiet")
	s.expectMessage(testkit.Publish(t, e.b, "a", `1`), "")
	s.expectMessage(testkit.Publish(t, e.b, "b", `1`), "")
	last := s.expectMessage(testkit.Publish(t, e.b, "a", `2`), "").id
	s.close()

	// While the client is away.
	missed := []*broker.Message{testkit.Publish(t, e.b, "a", `3`), testkit.Publish(t, e.b, "b", `2`), testkit.Publish(t, e.b, "quiet", `1`)}

	s2 := e.open(t, topics("a", "b", "quiet"), http.Header{"Last-Event-Id": {last}})
	s2.expect("welcome")
	got := map[string][]*broker.Message{}
	for _, m := range missed {
		got[m.Topic] = append(got[m.Topic], m)
	}
	// Each topic: subscribed (recovered), then its missed messages.
	for _, topic := range []string{"a", "b", "quiet"} {
		_, sub := s2.expect("subscribed")
		if sub["topic"] != topic || sub["recovered"] != true {
			t.Fatalf("subscribed %v, want %s recovered", sub, topic)
		}
		for _, m := range got[topic] {
			s2.expectMessage(m, "")
		}
	}
	s2.expectMessage(testkit.Publish(t, e.b, "a", `4`), "")
}

func TestResumeWithLastEventIDQueryOnOtherTopics(t *testing.T) {
	e := newEnv(t, sse.Config{}, broker.Config{})
	s := e.subscribed(t, "a")
	last := s.expectMessage(testkit.Publish(t, e.b, "a", `1`), "").id
	s.close()
	missed := testkit.Publish(t, e.b, "a", `2`)

	// A client that opens a new stream, with one more topic, carries its
	// cursor in the query; the header, when present, wins.
	q := topics("a", "b")
	q.Set("last_event_id", last)
	s2 := e.open(t, q, nil)
	s2.expect("welcome")
	if _, sub := s2.expect("subscribed"); sub["topic"] != "a" || sub["recovered"] != true {
		t.Fatalf("subscribed %v, want a recovered", sub)
	}
	s2.expectMessage(missed, "")
	if _, sub := s2.expect("subscribed"); sub["topic"] != "b" || sub["recovered"] != false {
		t.Fatalf("subscribed %v, want b not recovered", sub)
	}
	s2.close()
	q.Set("last_event_id", "garbage!")
	s3 := e.open(t, q, http.Header{"Last-Event-Id": {last}})
	s3.expect("welcome")
	if _, sub := s3.expect("subscribed"); sub["recovered"] != true {
		t.Fatalf("with the header: subscribed %v, want recovered", sub)
	}
	s3.expectMessage(missed, "")
}

func TestBadLastEventIDIsIgnored(t *testing.T) {
	e := newEnv(t, sse.Config{}, broker.Config{})
	testkit.Publish(t, e.b, "a", `1`)
	for _, id := range []string{"garbage!", "e30", "eyJhIjoxfQ"} { // not base64url; {}; {"a":1}
		s := e.open(t, topics("a"), http.Header{"Last-Event-Id": {id}})
		s.expect("welcome")
		_, sub := s.expect("subscribed")
		if sub["recovered"] != false || sub["offset"] != float64(1) {
			t.Fatalf("Last-Event-ID %q: subscribed %v", id, sub)
		}
		s.close()
	}
}

func TestWildcardTopic(t *testing.T) {
	e := newEnv(t, sse.Config{}, broker.Config{})
	s := e.open(t, topics("chat.*", "chat.one"), nil)
	s.expect("welcome")
	ev, sub := s.expect("subscribed")
	if sub["topic"] != "chat.*" || ev.id != "" {
		t.Fatalf("subscribed %v id %q", sub, ev.id)
	}
	if _, ok := sub["offset"]; ok {
		t.Fatalf("wildcard subscribed carries an offset: %v", sub)
	}
	s.expect("subscribed")
	s.expectMessage(testkit.Publish(t, e.b, "chat.two", `"x"`), "chat.*")
	m := testkit.Publish(t, e.b, "chat.one", `"y"`)
	// Once through each subscription, in either order.
	evs := []event{s.next(), s.next()}
	seen := map[bool]bool{}
	for _, ev := range evs {
		exact := !strings.Contains(ev.data, `"sub":`)
		seen[exact] = true
		want := string(session.AppendMessageStart(nil, m))
		if !strings.HasPrefix(ev.data, want) || exact == (ev.id == "") {
			t.Fatalf("event %q id %q", ev.data, ev.id)
		}
	}
	if !seen[true] || !seen[false] {
		t.Fatalf("want one exact and one wildcard delivery: %v", evs)
	}
}

// verifier accepts the token "good".
type verifier struct{}

func (verifier) Verify(_ context.Context, token string) (*auth.Claims, error) {
	if token != "good" {
		return nil, broker.NewError(broker.ErrUnauthorized, "token is not valid")
	}
	perms, err := auth.NewPermissions([]string{"public.>"}, nil)
	if err != nil {
		return nil, err
	}
	return &auth.Claims{Subject: "alice", Permissions: perms, Expires: time.Now().Add(time.Hour)}, nil
}

func (verifier) Leeway() time.Duration { return 0 }

func TestTokenRequiredWhenTokensSet(t *testing.T) {
	e := newEnv(t, sse.Config{Services: session.Services{Tokens: verifier{}}}, broker.Config{})
	for _, token := range []string{"", "bad"} {
		q := topics("public.a")
		if token != "" {
			q.Set("token", token)
		}
		resp, err := http.Get(e.url(q))
		if err != nil {
			t.Fatal(err)
		}
		body := jsonError(t, resp)
		if resp.StatusCode != http.StatusUnauthorized || body.Code != protocol.CodeUnauthorized {
			t.Fatalf("token %q: %d %+v", token, resp.StatusCode, body)
		}
	}
	q := topics("public.a", "private.b")
	q.Set("token", "good")
	s := e.open(t, q, nil)
	if _, w := s.expect("welcome"); w["user"] != "alice" {
		t.Fatalf("welcome %v", w)
	}
	s.expect("subscribed")
	// Outside the token's permissions: an error event, the stream stays.
	if _, er := s.expect("error"); er["code"] != protocol.CodeForbidden {
		t.Fatalf("error %v", er)
	}
	s.expectMessage(testkit.Publish(t, e.b, "public.a", `1`), "")
	if n := e.srv.Refused()[limit.ReasonToken]; n != 2 {
		t.Fatalf("refused tokens %d, want 2", n)
	}
}

type apiError struct{ Code, Message string }

func jsonError(t *testing.T, resp *http.Response) apiError {
	t.Helper()
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q", ct)
	}
	var body struct{ Error apiError }
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	return body.Error
}

func TestMalformedRequests(t *testing.T) {
	e := newEnv(t, sse.Config{MaxTopics: 3}, broker.Config{})
	for name, q := range map[string]url.Values{
		"no topic":        {},
		"bad topic":       topics("a..b"),
		"bad wildcard":    topics("a.>.b"),
		"too many topics": topics("a", "b", "c", "d"),
	} {
		resp, err := http.Get(e.url(q))
		if err != nil {
			t.Fatal(err)
		}
		body := jsonError(t, resp)
		if resp.StatusCode != http.StatusBadRequest || body.Message == "" {
			t.Fatalf("%s: %d %+v", name, resp.StatusCode, body)
		}
	}
	resp, err := http.Post(e.url(topics("a")), "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	if jsonError(t, resp); resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("POST: %d", resp.StatusCode)
	}
}

func TestMaxSessions(t *testing.T) {
	e := newEnv(t, sse.Config{MaxSessions: 1}, broker.Config{})
	s := e.open(t, topics("a"), nil)
	s.expect("welcome")
	resp, err := http.Get(e.url(topics("a")))
	if err != nil {
		t.Fatal(err)
	}
	if jsonError(t, resp); resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("second stream: %d", resp.StatusCode)
	}
}

func TestHeartbeatComment(t *testing.T) {
	e := newEnv(t, sse.Config{Settings: httpstream.Settings{Heartbeat: 20 * time.Millisecond}}, broker.Config{})
	s := e.subscribed(t, "a")
	for {
		ev := s.nextAny()
		if len(ev.comments) == 1 && ev.comments[0] == "ping" && ev.typ == "" && ev.data == "" {
			return
		}
		t.Fatalf("unexpected event %+v", ev)
	}
}

func TestShutdownSendsCloseAndEndsStream(t *testing.T) {
	e := newEnv(t, sse.Config{}, broker.Config{})
	s := e.subscribed(t, "a")
	m := testkit.Publish(t, e.b, "a", `1`)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	s.expectMessage(m, "")
	ev := s.next()
	if ev.typ != "close" || ev.data != `{"code":1001,"reason":"server shutting down"}` {
		t.Fatalf("got %q %s", ev.typ, ev.data)
	}
	s.ended()
	resp, err := http.Get(e.url(topics("a")))
	if err != nil {
		t.Fatal(err)
	}
	if jsonError(t, resp); resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("after shutdown: %d", resp.StatusCode)
	}
}

func TestSlowConsumerIsClosedWith1008(t *testing.T) {
	e := newEnv(t, sse.Config{}, broker.Config{QueueSize: 2})
	s := e.subscribed(t, "a")
	pubs := make([]broker.Publication, 200)
	for i := range pubs {
		pubs[i] = broker.Publication{Topic: "a", Data: json.RawMessage(`1`)}
	}
	// Deliveries of a batch are pushed faster than a writer drains a
	// queue of two; a few batches overflow it.
	for range 50 {
		if _, err := e.b.Publish(context.Background(), pubs); err != nil {
			t.Fatal(err)
		}
	}
	for {
		ev := s.next()
		if ev.typ == "message" {
			continue
		}
		if ev.typ != "close" || ev.data != `{"code":1008,"reason":"slow consumer"}` {
			t.Fatalf("got %q %s", ev.typ, ev.data)
		}
		break
	}
	s.ended()
}

func TestHTTP2StreamResumes(t *testing.T) {
	e := startEnv(t, sse.Config{}, broker.Config{}, func(ts *httptest.Server) {
		ts.EnableHTTP2 = true
		ts.StartTLS()
	})
	s := e.open(t, topics("a"), nil)
	if s.resp.ProtoMajor != 2 {
		t.Fatalf("served over %s, want HTTP/2", s.resp.Proto)
	}
	if h := s.resp.Header.Get("Connection"); h != "" {
		t.Fatalf("Connection %q on HTTP/2, where it is not allowed", h)
	}
	s.expect("welcome")
	s.expect("subscribed")
	last := s.expectMessage(testkit.Publish(t, e.b, "a", `1`), "").id
	s.close()
	missed := testkit.Publish(t, e.b, "a", `2`)
	s2 := e.open(t, topics("a"), http.Header{"Last-Event-Id": {last}})
	s2.expect("welcome")
	if _, sub := s2.expect("subscribed"); sub["recovered"] != true {
		t.Fatalf("subscribed %v, want recovered", sub)
	}
	s2.expectMessage(missed, "")
}
