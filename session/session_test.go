package session_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/tidings-io/tidings/broker"
	"github.com/tidings-io/tidings/internal/gate"
	"github.com/tidings-io/tidings/limit"
	"github.com/tidings-io/tidings/session"
	"github.com/tidings-io/tidings/store/memory"
)

// Each cause carries the close code of the protocol's close-code table and
// its own label; the labels a client's close could mint are not among them.
func TestCausesCarryTheirCodeReasonAndLabel(t *testing.T) {
	want := map[session.Cause]struct {
		code  uint16
		label string
	}{
		session.CauseClient:          {1000, "client"},
		session.CauseDropped:         {1006, "dropped"},
		session.CauseTimeout:         {1006, "timeout"},
		session.CauseShutdown:        {1001, "shutdown"},
		session.CauseSlowConsumer:    {1008, "slow_consumer"},
		session.CauseTokenExpired:    {1008, "token_expired"},
		session.CauseRateLimited:     {1008, "rate_limited"},
		session.CauseProtocolError:   {1002, "protocol_error"},
		session.CauseUnsupportedData: {1003, "unsupported_data"},
		session.CauseInvalidPayload:  {1007, "invalid_payload"},
		session.CauseNotObject:       {1007, "invalid_payload"},
		session.CauseTooBig:          {1009, "message_too_big"},
		session.CauseInternal:        {1011, "internal_error"},
		session.CauseDisconnected:    {4000, "disconnected"},
		session.CauseRevoked:         {1008, "token_revoked"},
	}
	for c, w := range want {
		if c.Code() != w.code || c.Label() != w.label {
			t.Errorf("%v: code %d label %q, want %d %q", c, c.Code(), c.Label(), w.code, w.label)
		}
		sent := c.Code() != 1006 && c != session.CauseClient
		if sent && c.Reason() == "" {
			t.Errorf("%v: a close the server sends has no reason", c)
		}
	}
	if got, n := session.Labels(), 15; len(got) != n {
		t.Errorf("labels %v: want %d distinct ones", got, n)
	}
	if l := session.Cause(200).Label(); l != "other" {
		t.Errorf("an unknown cause is labelled %q, want other", l)
	}
}

// transport records what a session sends through it: the seam every
// transport implements.
type transport struct {
	mu      sync.Mutex
	replies []string
	closed  []session.Cause
}

func (t *transport) Reply(r any) {
	b, _ := json.Marshal(r)
	t.mu.Lock()
	t.replies = append(t.replies, string(b))
	t.mu.Unlock()
}

func (t *transport) Close(c session.Cause) {
	t.mu.Lock()
	t.closed = append(t.closed, c)
	t.mu.Unlock()
}

func (t *transport) Disconnect(uint16, string) { t.Close(session.CauseDisconnected) }

// A session answers its commands through the transport, whatever the
// transport is: replies for ping, publish, unsubscribe and errors, and a
// close with a typed cause for a message that is not a JSON object or a
// client over its rate.
func TestSessionAnswersThroughItsTransport(t *testing.T) {
	st := memory.New(memory.Config{})
	t.Cleanup(func() { _ = st.Close() })
	b := broker.New(broker.Config{}, st, nil)
	cfg := &session.Config{
		Broker: b, OpLimits: session.OpLimits{OpRate: 1, OpBurst: 6, OpRefusals: 1},
		Publishes: &gate.Gate{}, Refused: limit.NewTally(session.RefusalReasons...),
		Protocol: "test", API: broker.APIOther,
	}
	tr := &transport{}
	bs := b.NewSession()
	t.Cleanup(bs.Close)
	s := session.New(context.Background(), cfg, tr, bs, session.Info{ID: "s1", Log: slog.Default})
	for _, cmd := range []string{
		`{"op":"ping","ref":"p"}`,
		`{"op":"publish","topic":"a.b","data":1,"ref":"x"}`,
		`{"op":"publish","topic":"a..b","data":1,"ref":"y"}`,
		`{"op":"unsubscribe","topic":"a.b","ref":"u"}`,
		`{"op":"dance","ref":"d"}`,
		`{"op":"refresh","token":"t","ref":"r"}`,
	} {
		if s.Handle([]byte(cmd)) {
			t.Fatalf("%s closed the session", cmd)
		}
	}
	want := []string{
		`{"type":"pong","ref":"p"}`,
		`"type":"published","ref":"x"`,
		`{"type":"error","ref":"y","code":"bad_request","message":"message 0: topic is invalid: empty segment at byte 2"}`,
		`{"type":"error","ref":"u","code":"not_found","message":"not subscribed to a.b"}`,
		`{"type":"error","ref":"d","code":"bad_request","message":"bad command: unknown op"}`,
		`{"type":"error","ref":"r","code":"bad_request","message":"refresh needs token authentication, which this server does not use"}`,
	}
	tr.mu.Lock()
	got := tr.replies
	tr.mu.Unlock()
	if len(got) != len(want) {
		t.Fatalf("replies %q, want %d", got, len(want))
	}
	for i, w := range want {
		if got[i] != w && !(i == 1 && json.Valid([]byte(got[i])) && strings.Contains(got[i], w)) {
			t.Errorf("reply %d = %s, want %s", i, got[i], w)
		}
	}
	// The burst is used up: one refusal is allowed, the next closes.
	if s.Handle([]byte(`{"op":"ping","ref":"over"}`)) {
		t.Fatal("the first command over the rate closed the session")
	}
	if !s.Handle([]byte(`{"op":"ping","ref":"again"}`)) {
		t.Fatal("a client over its rate again was not closed")
	}
	if !s.Handle([]byte(`[1]`)) {
		t.Fatal("a message that is not a JSON object did not close the session")
	}
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if len(tr.closed) != 2 || tr.closed[0] != session.CauseRateLimited || tr.closed[1] != session.CauseNotObject {
		t.Errorf("closed with %v, want [rate_limited invalid_payload]", tr.closed)
	}
}
