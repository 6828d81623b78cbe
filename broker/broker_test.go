package broker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tidings-io/tidings/broker"
	"github.com/tidings-io/tidings/internal/testkit"
	"github.com/tidings-io/tidings/protocol"
	"github.com/tidings-io/tidings/store/memory"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// textEncoder encodes events as short text lines, easy to assert on:
// "msg <topic> <offset> <sub>" and "sub <ref> <topic> <offset> <recovered>".
// Each frame ends with a newline, so that drain can tell the frames apart
// when a delivery through a pattern is queued in parts.
type textEncoder struct{}

func (textEncoder) Message(m *broker.Message, sub string) []byte {
	return fmt.Appendf(nil, "msg %s %d %s\n", m.Topic, m.Offset, sub)
}

func (textEncoder) MessageShared(m *broker.Message) []byte {
	return fmt.Appendf(nil, "msg %s %d", m.Topic, m.Offset)
}

func (textEncoder) MessageEnds(shared []byte, sub string) (head, tail []byte) {
	return nil, []byte(" " + sub + "\n")
}

func (textEncoder) Subscribed(ref, topic string, pos *broker.Position, recovered bool) []byte {
	off := "-"
	if pos != nil {
		off = strconv.FormatUint(pos.Offset, 10)
	}
	return fmt.Appendf(nil, "sub %s %s %s %v\n", ref, topic, off, recovered)
}

func (textEncoder) Event(v any) []byte { return fmt.Appendf(nil, "event %v\n", v) }

func (textEncoder) Reset(topic, sub string, pos broker.Position, reason string) []byte {
	return fmt.Appendf(nil, "reset %s %d %s %s\n", topic, pos.Offset, reason, sub)
}

// newBroker returns a broker on a fresh in-memory store.
func newBroker(t testing.TB, cfg broker.Config, mcfg memory.Config) (*broker.Broker, *memory.Store) {
	t.Helper()
	st := memory.New(mcfg)
	t.Cleanup(func() { _ = st.Close() })
	return broker.New(cfg, st, textEncoder{}), st
}

// drain returns every frame queued to s as strings, without their
// newline.
func drain(s *broker.Session) []string {
	parts, _ := s.Outbox().Drain(nil)
	var all strings.Builder
	for _, p := range parts {
		all.Write(p)
	}
	out := strings.Split(all.String(), "\n")
	return out[:len(out)-1]
}

func publish(t testing.TB, b *broker.Broker, topic string, n int) []*broker.Message {
	t.Helper()
	var out []*broker.Message
	for i := 0; i < n; i++ {
		msgs, err := b.Publish(context.Background(), []broker.Publication{{Topic: topic, Data: json.RawMessage(strconv.Itoa(i))}})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, msgs...)
	}
	return out
}

func TestExactSubscribersShareOneEncodedFrame(t *testing.T) {
	t.Parallel()
	b, _ := newBroker(t, broker.Config{}, memory.Config{})
	var sessions []*broker.Session
	for i := 0; i < 3; i++ {
		s := b.NewSession()
		t.Cleanup(s.Close)
		if err := s.Subscribe(context.Background(), "r", "a.b", nil); err != nil {
			t.Fatal(err)
		}
		drain(s)
		sessions = append(sessions, s)
	}
	publish(t, b, "a.b", 1)
	var first *byte
	for i, s := range sessions {
		frames, _ := s.Outbox().Drain(nil)
		if len(frames) != 1 || string(frames[0]) != "msg a.b 1 \n" {
			t.Fatalf("session %d got %q, want one message", i, frames)
		}
		if first == nil {
			first = &frames[0][0]
		} else if &frames[0][0] != first {
			t.Fatalf("session %d got its own copy of the frame: encoded more than once", i)
		}
	}
}

func TestWildcardAndExactSubscriptionsEachDeliverOnce(t *testing.T) {
	t.Parallel()
	b, _ := newBroker(t, broker.Config{}, memory.Config{})
	s := b.NewSession()
	t.Cleanup(s.Close)
	for _, p := range []string{"a.b", "a.*", "a.>", "b.*", "a.*.c"} {
		if err := s.Subscribe(context.Background(), p, p, nil); err != nil {
			t.Fatal(err)
		}
	}
	drain(s)
	publish(t, b, "a.b", 1)
	got := drain(s)
	want := map[string]bool{"msg a.b 1 ": true, "msg a.b 1 a.*": true, "msg a.b 1 a.>": true}
	if len(got) != len(want) {
		t.Fatalf("got %q, want exactly %d frames", got, len(want))
	}
	for _, g := range got {
		if !want[g] {
			t.Fatalf("unexpected frame %q among %q", g, got)
		}
	}
}

func TestWildcardMatching(t *testing.T) {
	t.Parallel()
	tests := []struct {
		pattern, topic string
		match          bool
	}{
		{"prices.*.usd", "prices.eur.usd", true},
		{"prices.*.usd", "prices.eur.gbp", false},
		{"prices.*.usd", "prices.usd", false},
		{"prices.*.usd", "prices.a.b.usd", false},
		{"prices.>", "prices.eur", true},
		{"prices.>", "prices.eur.usd", true},
		{"prices.>", "prices", false},
		{">", "x", true},
		{"*", "x.y", false},
	}
	for _, tc := range tests {
		t.Run(tc.pattern+"/"+tc.topic, func(t *testing.T) {
			t.Parallel()
			b, _ := newBroker(t, broker.Config{}, memory.Config{})
			s := b.NewSession()
			t.Cleanup(s.Close)
			if err := s.Subscribe(context.Background(), "", tc.pattern, nil); err != nil {
				t.Fatal(err)
			}
			drain(s)
			publish(t, b, tc.topic, 1)
			got := drain(s)
			if (len(got) == 1) != tc.match || len(got) > 1 {
				t.Fatalf("%s on %s delivered %q, want match=%v", tc.pattern, tc.topic, got, tc.match)
			}
		})
	}
}

func TestSubscribeAnswersWithCurrentPosition(t *testing.T) {
	t.Parallel()
	b, st := newBroker(t, broker.Config{}, memory.Config{})
	publish(t, b, "a.b", 3)
	s := b.NewSession()
	t.Cleanup(s.Close)
	if err := s.Subscribe(context.Background(), "r1", "a.b", nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Subscribe(context.Background(), "r2", "a.*", nil); err != nil {
		t.Fatal(err)
	}
	got := drain(s)
	want := []string{"sub r1 a.b 3 false", "sub r2 a.* - false"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("got %q, want %q (epoch %s)", got, want, testkit.EpochOf(t, st, "a.b"))
	}
}

func TestResumeReplaysHistoryThenLiveWithNoGapOrDuplicate(t *testing.T) {
	t.Parallel()
	b, st := newBroker(t, broker.Config{QueueSize: 100000, QueueBytes: 1 << 30}, memory.Config{HistorySize: 100000})
	publish(t, b, "a.b", 50)

	// Publish concurrently with the resume so the live stream overlaps it.
	const more = 2000
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		publish(t, b, "a.b", more)
	}()
	s := b.NewSession()
	t.Cleanup(s.Close)
	if err := s.Subscribe(context.Background(), "r", "a.b", &broker.Position{Offset: 20, Epoch: testkit.EpochOf(t, st, "a.b")}); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	got := drain(s)
	if !strings.HasPrefix(got[0], "sub r a.b ") || !strings.HasSuffix(got[0], " true") {
		t.Fatalf("first frame %q, want subscribed with recovered true", got[0])
	}
	next := uint64(21)
	for _, f := range got[1:] {
		if f != fmt.Sprintf("msg a.b %d ", next) {
			t.Fatalf("got %q, want offset %d next", f, next)
		}
		next++
	}
	if next != 50+more+1 {
		t.Fatalf("last offset %d, want %d", next-1, 50+more)
	}
}

func TestResumeNotRecovered(t *testing.T) {
	t.Parallel()
	b, st := newBroker(t, broker.Config{}, memory.Config{HistorySize: 5})
	publish(t, b, "a.b", 10)
	tests := []struct {
		name  string
		since broker.Position
	}{
		{"other epoch", broker.Position{Offset: 8, Epoch: "other"}},
		{"history no longer reaches", broker.Position{Offset: 2, Epoch: testkit.EpochOf(t, st, "a.b")}},
		{"offset in the future", broker.Position{Offset: 1000, Epoch: testkit.EpochOf(t, st, "a.b")}},
	}
	for _, tc := range tests {
		s := b.NewSession()
		if err := s.Subscribe(context.Background(), "r", "a.b", &tc.since); err != nil {
			t.Fatal(err)
		}
		publish(t, b, "a.b", 1)
		got := drain(s)
		s.Close()
		if len(got) != 2 || !strings.HasSuffix(got[0], " false") || !strings.HasPrefix(got[1], "msg a.b ") {
			t.Fatalf("%s: got %q, want subscribed recovered false then only the live message", tc.name, got)
		}
	}
}

func TestSubscribeErrors(t *testing.T) {
	t.Parallel()
	b, _ := newBroker(t, broker.Config{}, memory.Config{})
	s := b.NewSession()
	t.Cleanup(s.Close)
	if err := s.Subscribe(context.Background(), "", "a.b", nil); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		pattern string
		since   *broker.Position
		want    error
		code    string
	}{
		{"twice", "a.b", nil, broker.ErrAlreadySubscribed, protocol.CodeBadRequest},
		{"invalid", "a..b", nil, broker.ErrInvalidTopic, protocol.CodeBadRequest},
		{"since on wildcard", "a.*", &broker.Position{}, broker.ErrSinceOnWildcard, protocol.CodeBadRequest},
	}
	for _, tc := range tests {
		err := s.Subscribe(context.Background(), "", tc.pattern, tc.since)
		if !errors.Is(err, tc.want) || broker.ClientError(err).Code != tc.code {
			t.Errorf("%s: err %v (code %s), want %v (%s)", tc.name, err, broker.ClientError(err).Code, tc.want, tc.code)
		}
	}
	if err := s.Unsubscribe("x.y"); !errors.Is(err, broker.ErrNotSubscribed) || broker.ClientError(err).Code != protocol.CodeNotFound {
		t.Errorf("Unsubscribe unknown: %v", err)
	}
	drain(s)
	if got := drain(s); len(got) != 0 {
		t.Fatalf("failed subscribes queued frames: %q", got)
	}
}

func TestUnsubscribeStopsDelivery(t *testing.T) {
	t.Parallel()
	b, _ := newBroker(t, broker.Config{}, memory.Config{})
	s := b.NewSession()
	t.Cleanup(s.Close)
	for _, p := range []string{"a.b", "a.*"} {
		if err := s.Subscribe(context.Background(), "", p, nil); err != nil {
			t.Fatal(err)
		}
		if err := s.Unsubscribe(p); err != nil {
			t.Fatal(err)
		}
	}
	drain(s)
	publish(t, b, "a.b", 1)
	if got := drain(s); len(got) != 0 {
		t.Fatalf("unsubscribed session got %q", got)
	}
	if st := b.Stats(); st.ExactSubscriptions != 0 || st.WildcardSubscriptions != 0 || st.Topics != 0 {
		t.Fatalf("stats after unsubscribing: %+v", st)
	}
}

func TestSlowConsumerOverflowsWithoutStallingOthers(t *testing.T) {
	t.Parallel()
	b, _ := newBroker(t, broker.Config{QueueSize: 4}, memory.Config{})
	slow, fast := b.NewSession(), b.NewSession()
	t.Cleanup(slow.Close)
	t.Cleanup(fast.Close)
	for _, s := range []*broker.Session{slow, fast} {
		if err := s.Subscribe(context.Background(), "", "a.b", nil); err != nil {
			t.Fatal(err)
		}
	}
	var fastGot []string
	for i := 0; i < 20; i++ {
		publish(t, b, "a.b", 1)
		fastGot = append(fastGot, drain(fast)...)
	}
	if len(fastGot) != 21 { // subscribed + 20 messages
		t.Fatalf("fast subscriber got %d frames, want 21", len(fastGot))
	}
	frames, overflowed := slow.Outbox().Drain(nil)
	if !overflowed || len(frames) != 4 {
		t.Fatalf("slow consumer: %d frames, overflowed %v; want 4 and true", len(frames), overflowed)
	}
	if n := b.Stats().SlowConsumers; n != 1 {
		t.Fatalf("SlowConsumers = %d, want 1", n)
	}
}

func TestPublishRejectsInvalidBatchWhole(t *testing.T) {
	t.Parallel()
	b, st := newBroker(t, broker.Config{}, memory.Config{})
	_, err := b.Publish(context.Background(), []broker.Publication{
		{Topic: "a.b", Data: json.RawMessage(`1`)},
		{Topic: "a.*", Data: json.RawMessage(`2`)},
	})
	if !errors.Is(err, broker.ErrInvalidTopic) {
		t.Fatalf("err = %v, want ErrInvalidTopic", err)
	}
	for _, pubs := range [][]broker.Publication{nil, {{Topic: "a.b"}}} {
		if _, err := b.Publish(context.Background(), pubs); broker.ClientError(err).Code != protocol.CodeBadRequest {
			t.Fatalf("Publish(%v) err = %v, want a bad_request error", pubs, err)
		}
	}
	pos, err := st.Position(context.Background(), "a.b")
	if err != nil || pos.Offset != 0 {
		t.Fatalf("rejected batch used offsets: %+v %v", pos, err)
	}
	if n := b.Stats().Published; n != 0 {
		t.Fatalf("Published = %d after rejected batches", n)
	}
}

func TestClosedSessionHoldsNothing(t *testing.T) {
	t.Parallel()
	b, _ := newBroker(t, broker.Config{}, memory.Config{})
	s := b.NewSession()
	for _, p := range []string{"a.b", "a.*"} {
		if err := s.Subscribe(context.Background(), "", p, nil); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	s.Close()
	if st := b.Stats(); st.Sessions != 0 || st.ExactSubscriptions != 0 || st.WildcardSubscriptions != 0 {
		t.Fatalf("stats after close: %+v", st)
	}
	if err := s.Subscribe(context.Background(), "", "c.d", nil); !errors.Is(err, broker.ErrSessionClosed) {
		t.Fatalf("Subscribe after Close: %v", err)
	}
}

func TestConcurrentSubscribePublishUnsubscribe(t *testing.T) {
	t.Parallel()
	b, _ := newBroker(t, broker.Config{Shards: 4}, memory.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := b.NewSession()
			defer s.Close()
			for i := 0; i < 200 && ctx.Err() == nil; i++ {
				p := []string{"t.a", "t.*", "t.>"}[i%3]
				if err := s.Subscribe(ctx, "", p, nil); err != nil {
					t.Error(err)
					return
				}
				publish(t, b, "t.a", 1)
				if err := s.Unsubscribe(p); err != nil {
					t.Error(err)
					return
				}
				drain(s)
			}
		}()
	}
	wg.Wait()
	if st := b.Stats(); st.ExactSubscriptions != 0 || st.WildcardSubscriptions != 0 || st.Sessions != 0 {
		t.Fatalf("stats after churn: %+v", st)
	}
}

func TestCloseRacingSubscribeLeavesNoSubscription(t *testing.T) {
	t.Parallel()
	b, _ := newBroker(t, broker.Config{}, memory.Config{})
	for i := 0; i < 500; i++ {
		s := b.NewSession()
		var wg sync.WaitGroup
		wg.Add(2)
		go func() {
			defer wg.Done()
			_ = s.Subscribe(context.Background(), "", fmt.Sprintf("race.%d", i), nil)
			_ = s.Subscribe(context.Background(), "", "race.*", nil)
		}()
		go func() {
			defer wg.Done()
			s.Close()
		}()
		wg.Wait()
	}
	if st := b.Stats(); st.ExactSubscriptions != 0 || st.WildcardSubscriptions != 0 || st.Topics != 0 {
		t.Fatalf("subscriptions outlived their closed sessions: %+v", st)
	}
}

func TestResetReachesExactAndWildcardSubscribers(t *testing.T) {
	t.Parallel()
	b, _ := newBroker(t, broker.Config{}, memory.Config{})
	s := b.NewSession()
	t.Cleanup(s.Close)
	for _, p := range []string{"a.b", "a.*", "c.*"} {
		if err := s.Subscribe(context.Background(), "", p, nil); err != nil {
			t.Fatal(err)
		}
	}
	drain(s)
	b.Reset("a.b", broker.Position{Offset: 0, Epoch: "e2"}, broker.ResetHistoryLost)
	got := drain(s)
	want := map[string]bool{"reset a.b 0 history_lost ": true, "reset a.b 0 history_lost a.*": true}
	if len(got) != 2 || !want[got[0]] || !want[got[1]] {
		t.Fatalf("got %q, want one reset per matching subscription", got)
	}
}
