package redis

import (
	"bytes"
	"encoding/json"
	"strconv"
	"testing"
	"time"

	"github.com/tidings-io/tidings/broker"
)

// FuzzEnvelopeRoundTrip: any valid JSON value published as data comes back
// from a relayed payload byte for byte, and the string fields come back as
// encoding/json would carry them.
func FuzzEnvelopeRoundTrip(f *testing.F) {
	for _, tc := range dataValues {
		f.Add([]byte(tc.json), "id-1", "a.b", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	}
	f.Add([]byte(`"\xff"`), "\xff", "t\u2028", "<&>\x00")
	f.Fuzz(func(t *testing.T, data []byte, id, topic, traceparent string) {
		// A transport hands the broker a value without surrounding
		// whitespace (json.Unmarshal into a RawMessage trims it).
		data = bytes.Trim(data, " \t\r\n")
		if !json.Valid(data) || id == "" || topic == "" {
			t.Skip()
		}
		m := &broker.Message{ID: id, Topic: topic, Time: time.Unix(0, 7), Data: data,
			Trace: map[string]string{"traceparent": traceparent}}
		body, err := encodeBody(m)
		if err != nil {
			t.Fatalf("encoding %q: %v", data, err)
		}
		got, err := decodePayload("5 e1 " + body)
		if err != nil {
			t.Fatalf("decoding %q: %v", body, err)
		}
		if !bytes.Equal(got.Data, data) {
			t.Fatalf("data %q came back as %q (body %q)", data, got.Data, body)
		}
		if got.ID != viaJSON(t, id) || got.Topic != viaJSON(t, topic) || got.Trace["traceparent"] != viaJSON(t, traceparent) ||
			got.Time.UnixNano() != 7 || got.Offset != 5 || got.Epoch != "e1" {
			t.Fatalf("decoded %+v from %q", got, body)
		}
	})
}

// viaJSON returns s as encoding/json carries it: invalid UTF-8 becomes
// U+FFFD, byte by byte.
func viaJSON(t *testing.T, s string) string {
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var out string
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// FuzzDecodeRelayed: any payload a node may receive is read without a
// panic into messages with an id, a topic and an offset, or refused; a
// body read in place that is valid JSON reads as encoding/json reads it.
func FuzzDecodeRelayed(f *testing.F) {
	body := `{"id":"i","topic":"a.b","time":5,"trace":{"traceparent":"tp"},"data":{"x":[1,"}"]}}`
	f.Add("1 e1 " + body)
	f.Add("B" + strconv.Itoa(len(body)+5) + ":1 e1 " + body + "3:2 e")
	f.Add(`{"id":"i","topic":"a","time":1,"data":1,"trace":{}}`)
	f.Fuzz(func(t *testing.T, payload string) {
		_ = decodeRelayed(payload, func(m *broker.Message) {
			if m.ID == "" || m.Topic == "" || m.Offset == 0 || m.Epoch == "" || len(m.Data) == 0 {
				t.Fatalf("%q gave %+v", payload, m)
			}
		})
		inPlace := new(broker.Message)
		if !decodeLayout(payload, inPlace) || !json.Valid([]byte(payload)) {
			return
		}
		viaJSON, err := decodeBodyJSON(payload, 0, "")
		if err != nil || !sameMessage(inPlace, viaJSON) {
			t.Fatalf("%q read in place as %+v, with encoding/json as %+v (%v)", payload, inPlace, viaJSON, err)
		}
	})
}
