package broker_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/tidings-io/tidings/broker"
	"github.com/tidings-io/tidings/store/memory"
)

// countingEncoder is a textEncoder whose frames start with its name and
// that counts the messages it encodes. whole makes it share nothing
// between patterns, as a compressing encoder does.
type countingEncoder struct {
	textEncoder
	name     string
	whole    bool
	messages atomic.Int64
}

func (e *countingEncoder) Message(m *broker.Message, sub string) []byte {
	e.messages.Add(1)
	return append([]byte(e.name+" "), e.textEncoder.Message(m, sub)...)
}

func (e *countingEncoder) MessageShared(m *broker.Message) []byte {
	if e.whole {
		return nil
	}
	e.messages.Add(1)
	return append([]byte(e.name+" "), e.textEncoder.MessageShared(m)...)
}

func (e *countingEncoder) Subscribed(ref, topic string, pos *broker.Position, recovered bool) []byte {
	return append([]byte(e.name+" "), e.textEncoder.Subscribed(ref, topic, pos, recovered)...)
}

func (e *countingEncoder) Reset(topic, sub string, pos broker.Position, reason string) []byte {
	return append([]byte(e.name+" "), e.textEncoder.Reset(topic, sub, pos, reason)...)
}

func (e *countingEncoder) Event(v any) []byte {
	return append([]byte(e.name+" "), e.textEncoder.Event(v)...)
}

// encodedBroker returns a broker with a plain and a whole-frame encoder,
// and the whole one's Encoding.
func encodedBroker(t *testing.T) (*broker.Broker, *memory.Store, *countingEncoder, *countingEncoder, broker.Encoding) {
	t.Helper()
	st := memory.New(memory.Config{})
	t.Cleanup(func() { _ = st.Close() })
	plain, whole := &countingEncoder{name: "plain"}, &countingEncoder{name: "whole", whole: true}
	b := broker.New(broker.Config{}, st, plain)
	return b, st, plain, whole, b.AddEncoder(whole)
}

func TestEachEncodingEncodesAMessageOnce(t *testing.T) {
	t.Parallel()
	b, _, plain, whole, enc := encodedBroker(t)
	var sessions []*broker.Session
	for i := 0; i < 10; i++ {
		s := b.NewSession()
		if i%2 == 1 {
			s = b.NewSessionEncoded(enc)
		}
		t.Cleanup(s.Close)
		if err := s.Subscribe(context.Background(), "r", "a.b", nil); err != nil {
			t.Fatal(err)
		}
		if got := drain(s); len(got) != 1 || !strings.HasPrefix(got[0], []string{"plain", "whole"}[i%2]+" sub r a.b") {
			t.Fatalf("session %d answered %q", i, got)
		}
		sessions = append(sessions, s)
	}
	publish(t, b, "a.b", 1)
	if p, w := plain.messages.Load(), whole.messages.Load(); p != 1 || w != 1 {
		t.Fatalf("encoded %d plain and %d whole frames for one message, want 1 and 1", p, w)
	}
	var firsts [2]*byte
	for i, s := range sessions {
		frames, _ := s.Outbox().Drain(nil)
		want := []string{"plain", "whole"}[i%2] + " msg a.b 1 \n"
		if len(frames) != 1 || string(frames[0]) != want {
			t.Fatalf("session %d got %q, want %q", i, frames, want)
		}
		if firsts[i%2] == nil {
			firsts[i%2] = &frames[0][0]
		} else if firsts[i%2] != &frames[0][0] {
			t.Fatalf("session %d got its own copy of its encoding's frame", i)
		}
	}
}

func TestPatternsShareOrEncodeWholePerEncoding(t *testing.T) {
	t.Parallel()
	b, _, plain, whole, enc := encodedBroker(t)
	type sub struct {
		s       *broker.Session
		pattern string
		name    string
	}
	var subs []sub
	for _, pattern := range []string{"a.*", "a.>", "*.b"} {
		for _, name := range []string{"plain", "whole", "plain", "whole"} {
			s := b.NewSession()
			if name == "whole" {
				s = b.NewSessionEncoded(enc)
			}
			t.Cleanup(s.Close)
			if err := s.Subscribe(context.Background(), "r", pattern, nil); err != nil {
				t.Fatal(err)
			}
			drain(s)
			subs = append(subs, sub{s, pattern, name})
		}
	}
	publish(t, b, "a.b", 1)
	// The plain encoder shares one part among the three patterns; the
	// whole one encodes each pattern's frame once.
	if p, w := plain.messages.Load(), whole.messages.Load(); p != 1 || w != 3 {
		t.Fatalf("encoded %d plain shared parts and %d whole frames, want 1 and 3", p, w)
	}
	for _, sb := range subs {
		got := drain(sb.s)
		want := sb.name + " msg a.b 1 " + sb.pattern
		if len(got) != 1 || got[0] != want {
			t.Fatalf("%s session on %s got %q, want %q", sb.name, sb.pattern, got, want)
		}
	}
}

func TestResetsEventsAndReplaysUseTheSessionsEncoding(t *testing.T) {
	t.Parallel()
	b, _, _, _, enc := encodedBroker(t)
	msgs := publish(t, b, "a.b", 3)
	s := b.NewSessionEncoded(enc)
	t.Cleanup(s.Close)
	if err := s.Subscribe(context.Background(), "r", "a.b", &broker.Position{Offset: 1, Epoch: msgs[0].Epoch}); err != nil {
		t.Fatal(err)
	}
	got := drain(s)
	if len(got) != 3 || got[1] != "whole msg a.b 2 " || got[2] != "whole msg a.b 3 " {
		t.Fatalf("replay with the whole encoding gave %q", got)
	}
	p := b.NewSession()
	t.Cleanup(p.Close)
	if err := p.Subscribe(context.Background(), "r", "a.b", nil); err != nil {
		t.Fatal(err)
	}
	drain(p)
	if n := b.SendToTopic("a.b", "join"); n != 2 {
		t.Fatalf("SendToTopic reached %d sessions, want 2", n)
	}
	b.Reset("a.b", broker.Position{Offset: 9}, broker.ResetGap)
	if got, want := drain(s), []string{"whole event join", "whole reset a.b 9 gap "}; strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("encoded session got %q, want %q", got, want)
	}
	if got, want := drain(p), []string{"plain event join", "plain reset a.b 9 gap "}; strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("plain session got %q, want %q", got, want)
	}
}

func TestAddEncoderBeyondTheBoundPanics(t *testing.T) {
	t.Parallel()
	b, _, _, _, _ := encodedBroker(t)
	b.AddEncoder(textEncoder{})
	b.AddEncoder(textEncoder{})
	defer func() {
		if recover() == nil {
			t.Fatal("a fifth encoder was accepted")
		}
	}()
	b.AddEncoder(textEncoder{})
}

func TestAHubForgetsTheEncodingsOfSessionsThatLeft(t *testing.T) {
	t.Parallel()
	b, _, plain, whole, enc := encodedBroker(t)
	p := b.NewSession()
	t.Cleanup(p.Close)
	w := b.NewSessionEncoded(enc)
	for _, s := range []*broker.Session{p, w} {
		if err := s.Subscribe(context.Background(), "r", "a.b", nil); err != nil {
			t.Fatal(err)
		}
		drain(s)
	}
	w.Close()
	publish(t, b, "a.b", 1)
	if pl, wh := plain.messages.Load(), whole.messages.Load(); pl != 1 || wh != 0 {
		t.Fatalf("after the whole-encoded session left: %d plain and %d whole encodes, want 1 and 0", pl, wh)
	}
	if got := drain(p); len(got) != 1 || got[0] != "plain msg a.b 1 " {
		t.Fatalf("plain session got %q", got)
	}
}
