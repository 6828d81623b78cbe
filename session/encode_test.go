package session_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/tidings-io/tidings/broker"
	"github.com/tidings-io/tidings/session"
)

// A `message` reply is the JSON a decoder reads back field for field,
// whatever bytes its strings hold (escaped), with data copied byte for
// byte and "sub" only for a pattern.
func TestMessageReplyIsJSON(t *testing.T) {
	m := &broker.Message{ID: "id-1", Topic: "a.\"q\"\\\n\x01\xff", Offset: 1 << 60, Epoch: "e\t1",
		Time: time.Date(2026, 12, 7, 10, 0, 0, 5, time.FixedZone("x", 3600)), Data: json.RawMessage(`{"k":[1,2]}`)}
	for _, sub := range []string{"", "a.>"} {
		b := session.AppendMessageEnd(session.AppendMessageStart(nil, m), sub)
		var got struct {
			Type, Topic, ID, Epoch, Time, Sub string
			Offset                            uint64
			Data                              json.RawMessage
		}
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		wantTopic := "a.\"q\"\\\n\x01\ufffd" // an invalid byte reads as U+FFFD
		if got.Type != "message" || got.Topic != wantTopic || got.ID != m.ID || got.Epoch != m.Epoch ||
			got.Offset != m.Offset || got.Sub != sub || string(got.Data) != string(m.Data) ||
			got.Time != "2026-12-07T09:00:00.000000005Z" {
			t.Errorf("%s read back as %+v", b, got)
		}
	}
}
