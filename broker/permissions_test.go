package broker_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/tidings-io/tidings/broker"
	"github.com/tidings-io/tidings/protocol"
	"github.com/tidings-io/tidings/store/memory"
)

// prefixPerms allows subscribing to patterns and publishing to topics that
// start with a prefix (a stand-in for auth.Permissions, which broker may
// not import).
type prefixPerms struct{ sub, pub string }

func (p prefixPerms) AllowSubscribe(pattern string) bool { return strings.HasPrefix(pattern, p.sub) }
func (p prefixPerms) AllowPublish(topic string) bool     { return strings.HasPrefix(topic, p.pub) }

func TestSubscribeIsCheckedAgainstPermissions(t *testing.T) {
	t.Parallel()
	b, _ := newBroker(t, broker.Config{}, memory.Config{})
	s := b.NewSession()
	defer s.Close()
	if revoked := s.SetPermissions(prefixPerms{sub: "a."}); len(revoked) != 0 {
		t.Fatalf("revoked %v from a session with no subscription", revoked)
	}
	if err := s.Subscribe(context.Background(), "", "b.x", nil); !errors.Is(err, broker.ErrForbidden) || broker.ClientError(err).Code != protocol.CodeForbidden {
		t.Fatalf("subscribe b.x: %v, want ErrForbidden (code forbidden)", err)
	}
	if err := s.Subscribe(context.Background(), "", "a.x", nil); err != nil {
		t.Fatal(err)
	}
	if st := b.Stats(); st.ExactSubscriptions != 1 {
		t.Fatalf("stats %+v, want the allowed subscription only", st)
	}
}

func TestSetPermissionsRevokesWhatIsNoLongerAllowed(t *testing.T) {
	t.Parallel()
	b, _ := newBroker(t, broker.Config{}, memory.Config{})
	s := b.NewSession()
	defer s.Close()
	for _, p := range []string{"a.x", "a.*", "b.x", "b.>"} {
		if err := s.Subscribe(context.Background(), "", p, nil); err != nil {
			t.Fatal(err)
		}
	}
	drain(s)
	revoked := s.SetPermissions(prefixPerms{sub: "a."})
	if fmt.Sprint(revoked) != "[b.> b.x]" {
		t.Fatalf("revoked %v, want [b.> b.x] in order", revoked)
	}
	publish(t, b, "b.x", 1)
	publish(t, b, "a.x", 1)
	if got := drain(s); fmt.Sprint(got) != "[msg a.x 1  msg a.x 1 a.*]" {
		t.Fatalf("deliveries %q, want a.x through a.x and a.* only", got)
	}
	if st := b.Stats(); st.ExactSubscriptions != 1 || st.WildcardSubscriptions != 1 {
		t.Fatalf("stats %+v after the revocation", st)
	}
	if err := s.Unsubscribe("b.x"); !errors.Is(err, broker.ErrNotSubscribed) {
		t.Fatalf("unsubscribe a revoked subscription: %v, want ErrNotSubscribed", err)
	}
	if revoked := s.SetPermissions(nil); len(revoked) != 0 {
		t.Fatalf("nil permissions revoked %v", revoked)
	}
	if err := s.Subscribe(context.Background(), "", "b.x", nil); err != nil {
		t.Fatalf("nil permissions allow everything: %v", err)
	}
}

func TestCheckPublish(t *testing.T) {
	t.Parallel()
	perms := prefixPerms{pub: "a."}
	for _, tc := range []struct {
		pubs []broker.Publication
		want error
	}{
		{[]broker.Publication{{Topic: "a.x"}, {Topic: "a.y"}}, nil},
		{[]broker.Publication{{Topic: "a.x"}, {Topic: "b.y"}}, broker.ErrForbidden},
		{[]broker.Publication{{Topic: "a..x"}}, broker.ErrInvalidTopic},
		{[]broker.Publication{{Topic: "b.*"}}, broker.ErrInvalidTopic},
	} {
		if err := broker.CheckPublish(perms, tc.pubs); !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
			t.Errorf("CheckPublish(%v) = %v, want %v", tc.pubs, err, tc.want)
		}
	}
	if err := broker.CheckPublish(nil, []broker.Publication{{Topic: "anything"}}); err != nil {
		t.Errorf("nil permissions: %v", err)
	}
}

func TestMaxSubscriptions(t *testing.T) {
	t.Parallel()
	b, _ := newBroker(t, broker.Config{MaxSubscriptions: 2}, memory.Config{})
	s := b.NewSession()
	defer s.Close()
	for _, p := range []string{"m.a", "m.*"} {
		if err := s.Subscribe(context.Background(), "", p, nil); err != nil {
			t.Fatal(err)
		}
	}
	err := s.Subscribe(context.Background(), "", "m.b", nil)
	if !errors.Is(err, broker.ErrTooManySubscriptions) || broker.ClientError(err).Code != protocol.CodeTooLarge {
		t.Fatalf("3rd subscription: %v, want ErrTooManySubscriptions (code too_large)", err)
	}
	// A duplicate is still reported as such, not as over the limit.
	if err := s.Subscribe(context.Background(), "", "m.a", nil); !errors.Is(err, broker.ErrAlreadySubscribed) {
		t.Fatalf("duplicate at the limit: %v, want ErrAlreadySubscribed", err)
	}
	if err := s.Unsubscribe("m.a"); err != nil {
		t.Fatal(err)
	}
	if err := s.Subscribe(context.Background(), "", "m.b", nil); err != nil {
		t.Fatalf("after an unsubscribe: %v", err)
	}
}

func TestErrorCodesOfRefusals(t *testing.T) {
	t.Parallel()
	for err, want := range map[error]string{
		broker.ErrForbidden:            protocol.CodeForbidden,
		broker.ErrUnauthorized:         protocol.CodeUnauthorized,
		broker.ErrRateLimited:          protocol.CodeRateLimited,
		broker.ErrTooManySubscriptions: protocol.CodeTooLarge,
	} {
		if got := broker.ClientError(fmt.Errorf("context: %w", err)).Code; got != want {
			t.Errorf("ClientError(%v).Code = %s, want %s", err, got, want)
		}
	}
}
