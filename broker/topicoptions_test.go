package broker_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/tidings-io/tidings/broker"
	"github.com/tidings-io/tidings/protocol"
	"github.com/tidings-io/tidings/store/memory"
)

// topics gives the topics under "strict." no resume and at most 4 bytes
// of data.
func topics(topic string) broker.TopicOptions {
	if strings.HasPrefix(topic, "strict.") {
		return broker.TopicOptions{NoRecovery: true, MaxDataSize: 4}
	}
	return broker.TopicOptions{}
}

// TestTopicOptionsNoRecovery: a resume on a topic without recovery is
// answered recovered false with no replay, then the live stream.
func TestTopicOptionsNoRecovery(t *testing.T) {
	t.Parallel()
	b, _ := newBroker(t, broker.Config{Topics: topics}, memory.Config{})
	for _, tc := range []struct {
		topic string
		want  []string
	}{
		{"strict.a", []string{"sub r strict.a 2 false", "msg strict.a 3 "}},
		{"loose.a", []string{"sub r loose.a 2 true", "msg loose.a 1 ", "msg loose.a 2 ", "msg loose.a 3 "}},
	} {
		msgs := publish(t, b, tc.topic, 2)
		s := b.NewSession()
		t.Cleanup(s.Close)
		if err := s.Subscribe(context.Background(), "r", tc.topic, &broker.Position{Epoch: msgs[0].Epoch}); err != nil {
			t.Fatal(err)
		}
		publish(t, b, tc.topic, 1)
		if got := drain(s); !slices.Equal(got, tc.want) {
			t.Errorf("%s: %q, want %q", tc.topic, got, tc.want)
		}
	}
}

// TestTopicOptionsMaxDataSize: data over its topic's bound is refused
// with too_large, a batch whole; other topics are not bounded.
func TestTopicOptionsMaxDataSize(t *testing.T) {
	t.Parallel()
	b, _ := newBroker(t, broker.Config{Topics: topics}, memory.Config{})
	ctx := context.Background()
	if _, err := b.Publish(ctx, []broker.Publication{{Topic: "strict.d", Data: json.RawMessage(`"ab"`)}}); err != nil {
		t.Errorf("4 bytes: %v", err)
	}
	_, err := b.Publish(ctx, []broker.Publication{
		{Topic: "loose.d", Data: json.RawMessage(`"a long text"`)},
		{Topic: "strict.d", Data: json.RawMessage(`"abc"`)},
	})
	if !errors.Is(err, broker.ErrDataTooLarge) || broker.ClientError(err).Code != protocol.CodeTooLarge ||
		err.Error() != "message 1: data is larger than the topic's limit of 4 bytes" {
		t.Errorf("5 bytes in a batch: %v, want ErrDataTooLarge for message 1", err)
	}
	msgs, _, _, err := b.History(ctx, "loose.d", nil, 10)
	if err != nil || len(msgs) != 0 {
		t.Errorf("the refused batch stored %d messages (%v), want none", len(msgs), err)
	}
}

// TestSetMaxSubscriptions: a changed bound applies to the next subscribe;
// a session over it keeps what it holds.
func TestSetMaxSubscriptions(t *testing.T) {
	t.Parallel()
	b, _ := newBroker(t, broker.Config{MaxSubscriptions: 3}, memory.Config{})
	s := b.NewSession()
	t.Cleanup(s.Close)
	ctx := context.Background()
	for _, p := range []string{"a", "b", "c"} {
		if err := s.Subscribe(ctx, "", p, nil); err != nil {
			t.Fatal(err)
		}
	}
	b.SetMaxSubscriptions(2)
	if b.MaxSubscriptions() != 2 {
		t.Fatalf("MaxSubscriptions %d", b.MaxSubscriptions())
	}
	if err := s.Unsubscribe("c"); err != nil {
		t.Fatal(err)
	}
	if err := s.Subscribe(ctx, "", "d", nil); !errors.Is(err, broker.ErrTooManySubscriptions) || !strings.Contains(err.Error(), "may hold 2") {
		t.Errorf("a third subscription under a bound of 2: %v", err)
	}
	b.SetMaxSubscriptions(0)
	if b.MaxSubscriptions() != broker.DefaultMaxSubscriptions {
		t.Errorf("SetMaxSubscriptions(0): %d, want the default", b.MaxSubscriptions())
	}
}

// recorder is a SubscriptionObserver that keeps what it is told.
type recorder struct{ subscribed []string }

func (r *recorder) Subscribed(s *broker.Session, topic string) {
	r.subscribed = append(r.subscribed, topic)
}
func (r *recorder) Unsubscribed(*broker.Session, string) {}

// TestEachObserved lists the exact subscriptions the observer was told
// of, and not those that ended.
func TestEachObserved(t *testing.T) {
	t.Parallel()
	b, _ := newBroker(t, broker.Config{}, memory.Config{})
	b.SetObserver(&recorder{})
	s := b.NewSession()
	t.Cleanup(s.Close)
	ctx := context.Background()
	for _, p := range []string{"a", "b", "c.*"} {
		if err := s.Subscribe(ctx, "", p, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Unsubscribe("b"); err != nil {
		t.Fatal(err)
	}
	var got []string
	b.EachObserved(func(ss *broker.Session, topic string) {
		if ss != s {
			t.Errorf("another session")
		}
		got = append(got, topic)
	})
	if !slices.Equal(got, []string{"a"}) {
		t.Errorf("EachObserved: %v, want [a]", got)
	}
}
