package demo

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tidings-io/tidings/broker"
	"github.com/tidings-io/tidings/store/memory"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// notified returns a channel signalled when a push finds o empty and on
// overflow, through o.Notify, and at once when o has work already.
func notified(o *broker.Outbox) <-chan struct{} {
	ready := make(chan struct{}, 1)
	signal := func() {
		select {
		case ready <- struct{}{}:
		default:
		}
	}
	o.Notify(signal)
	if o.Pending() {
		signal()
	}
	return ready
}

// textEncoder encodes deliveries as "topic data" so the test can read the
// session's outbox without WebSocket framing.
type textEncoder struct{}

func (textEncoder) Message(m *broker.Message, sub string) []byte {
	return []byte(m.Topic + " " + string(m.Data))
}
func (e textEncoder) MessageShared(m *broker.Message) []byte { return e.Message(m, "") }

func (textEncoder) MessageEnds(shared []byte, sub string) (head, tail []byte) { return nil, nil }

func (textEncoder) Subscribed(ref, topic string, pos *broker.Position, recovered bool) []byte {
	return []byte("subscribed " + topic)
}
func (textEncoder) Event(v any) []byte { return []byte("event") }

func (textEncoder) Reset(topic, sub string, pos broker.Position, reason string) []byte {
	return []byte("reset " + topic)
}

type price struct {
	Pair     string  `json:"pair"`
	Price    float64 `json:"price"`
	Open     float64 `json:"open"`
	Decimals int     `json:"decimals"`
}

func TestTickFirstHasEveryPairThenWalks(t *testing.T) {
	t.Parallel()
	s := newState(42)
	first := s.tick()
	if len(first) < len(instruments()) {
		t.Fatalf("first tick published %d messages, want every one of the %d pairs", len(first), len(instruments()))
	}
	chats, moves := 0, map[string]int{}
	for range 400 {
		for _, p := range s.tick() {
			if err := broker.ValidateTopic(p.Topic); err != nil {
				t.Fatalf("topic %q: %v", p.Topic, err)
			}
			if !json.Valid(p.Data) {
				t.Fatalf("%s: data is not JSON: %s", p.Topic, p.Data)
			}
			if p.Topic == ChatTopic {
				chats++
				var c struct{ User, Text string }
				if err := json.Unmarshal(p.Data, &c); err != nil || c.User == "" || c.Text == "" {
					t.Fatalf("chat data %s: %v", p.Data, err)
				}
				continue
			}
			if !strings.HasPrefix(p.Topic, PricesPrefix) {
				t.Fatalf("unexpected topic %q", p.Topic)
			}
			var pr price
			if err := json.Unmarshal(p.Data, &pr); err != nil {
				t.Fatalf("price data %s: %v", p.Data, err)
			}
			// The walk is pulled towards the open: after 400 ticks it is
			// still within 10% of it.
			if pr.Price <= 0 || pr.Price < pr.Open*0.9 || pr.Price > pr.Open*1.1 {
				t.Fatalf("%s walked out of its band: %+v", p.Topic, pr)
			}
			moves[p.Topic]++
		}
	}
	if chats < 50 || chats > 110 {
		t.Errorf("%d chat lines in 400 ticks, want about one every 4 ticks", chats)
	}
	for _, in := range instruments() {
		if n := moves[PricesPrefix+in.slug]; n < 200 || n > 360 {
			t.Errorf("%s moved %d times in 400 ticks, want about 70%%", in.slug, n)
		}
	}
}

func TestPriceDataKeepsDecimals(t *testing.T) {
	t.Parallel()
	got := string(priceData(instrument{pair: "EUR/USD", open: 1.0842, decimals: 5}, 1.08))
	want := `{"pair":"EUR/USD","price":1.08000,"open":1.08420,"decimals":5}`
	if got != want {
		t.Fatalf("priceData = %s, want %s", got, want)
	}
}

func TestRunPublishesUntilCancelled(t *testing.T) {
	t.Parallel()
	store := memory.New(memory.Config{})
	defer store.Close()
	b := broker.New(broker.Config{}, store, textEncoder{})
	sess := b.NewSession()
	defer sess.Close()
	ctx, cancel := context.WithCancel(context.Background())
	if err := sess.Subscribe(ctx, "", "demo.>", nil); err != nil {
		t.Fatal(err)
	}

	done := make(chan error, 1)
	go func() { done <- Run(ctx, b, 5*time.Millisecond) }()

	seen := map[string]int{}
	deadline := time.After(10 * time.Second)
	ready := notified(sess.Outbox())
	var frames [][]byte
	for seen[ChatTopic] < 2 || len(seen) < len(instruments())+1 || seen[PricesPrefix+"eur-usd"] < 3 {
		select {
		case <-ready:
			frames, _ = sess.Outbox().Drain(frames[:0])
			for _, f := range frames {
				topic, _, _ := strings.Cut(string(f), " ")
				seen[topic]++
			}
		case <-deadline:
			cancel()
			t.Fatalf("after 10s the demo feed had published %v", seen)
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run returned %v after cancel, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after its context was cancelled")
	}
}

func TestRunNeedsABroker(t *testing.T) {
	t.Parallel()
	if err := Run(context.Background(), nil, time.Second); !errors.Is(err, ErrNoBroker) {
		t.Fatalf("Run(nil broker) = %v, want ErrNoBroker", err)
	}
}
