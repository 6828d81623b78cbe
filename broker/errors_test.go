package broker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/tidings-io/tidings/broker"
	"github.com/tidings-io/tidings/protocol"
	"github.com/tidings-io/tidings/store/memory"
)

// What a client is told of a failure is a code and a message with no
// package prefix and no internal detail, however the error was wrapped;
// the detail stays for errors.Is and the log.
func TestClientErrorsCarryNoInternalText(t *testing.T) {
	b, _ := newBroker(t, broker.Config{}, memory.Config{})
	ctx := context.Background()
	data := json.RawMessage(`1`)
	_, batchErr := b.Publish(ctx, []broker.Publication{{Topic: "ok", Data: data}, {Topic: "a..b", Data: data}})
	_, keyErr := b.Publish(ctx, []broker.Publication{{Topic: "ok", Data: data, IdempotencyKey: "sp ace"}})
	storeDown := broker.WrapError(broker.ErrUnavailable, errors.New("dial tcp 10.0.0.7:6379: connection refused"))
	tests := []struct {
		name      string
		err       error
		code, msg string
		is        error
	}{
		{"a batch's invalid topic", batchErr, protocol.CodeBadRequest, "message 1: topic is invalid: empty segment at byte 2", broker.ErrInvalidTopic},
		{"an invalid idempotency key", keyErr, protocol.CodeBadRequest, "message 0: idempotency key is invalid: byte 2 is not printable ASCII", broker.ErrInvalidIdempotencyKey},
		{"a store failure", storeDown, protocol.CodeUnavailable, "store unavailable", broker.ErrUnavailable},
		{"wrapped again", fmt.Errorf("context: %w", storeDown), protocol.CodeUnavailable, "store unavailable", broker.ErrUnavailable},
		{"not a broker error", errors.New("runtime: something broke"), protocol.CodeInternal, "internal error", nil},
	}
	for _, tc := range tests {
		ce := broker.ClientError(tc.err)
		if ce.Code != tc.code || ce.Message != tc.msg {
			t.Errorf("%s: the client is told %s %q, want %s %q", tc.name, ce.Code, ce.Message, tc.code, tc.msg)
		}
		for _, leak := range []string{"broker:", "runtime:", "dial tcp"} {
			if strings.Contains(ce.Message, leak) {
				t.Errorf("%s: %q leaks %q", tc.name, ce.Message, leak)
			}
		}
		if tc.is != nil && !errors.Is(tc.err, tc.is) {
			t.Errorf("%s: %v does not match its sentinel", tc.name, tc.err)
		}
	}
	if got := storeDown.LogValue().String(); !strings.Contains(got, "connection refused") {
		t.Errorf("the log is told %q, without the cause", got)
	}
}
