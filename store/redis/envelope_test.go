package redis

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/tidings-io/tidings/broker"
)

// TestEnvelopeCarriesTraceContext: the trace context a message carries
// is stored and relayed with it, and costs nothing when there is none.
func TestEnvelopeCarriesTraceContext(t *testing.T) {
	t.Parallel()
	trace := map[string]string{
		"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"tracestate":  "vendor=1",
		"baggage":     "tenant=acme",
	}
	m := &broker.Message{ID: "id-1", Topic: "a.b", Time: time.Unix(0, 42), Data: json.RawMessage(`{"x":1}`), Trace: trace}
	body, err := encodeBody(m)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodePayload("7 e1 " + body)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Trace) != 3 {
		t.Fatalf("relayed trace %v, want %v", got.Trace, trace)
	}
	for k, v := range trace {
		if got.Trace[k] != v {
			t.Errorf("relayed %s = %q, want %q", k, got.Trace[k], v)
		}
	}
	if got.Offset != 7 || got.Epoch != "e1" || string(got.Data) != `{"x":1}` {
		t.Errorf("relayed %+v", got)
	}

	m.Trace = nil
	body, _ = encodeBody(m)
	if strings.Contains(body, "trace") {
		t.Errorf("body %s mentions trace with none", body)
	}
	if got, _ := decodePayload("1 e1 " + body); got.Trace != nil {
		t.Errorf("decoded trace %v from a body without one", got.Trace)
	}
}
