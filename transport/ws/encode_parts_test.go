package ws

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/tidings-io/tidings/broker"
)

// A delivery through a pattern is queued as its frame header, the part
// shared by every pattern's frame and its end: together they are the frame
// Message encodes, for every header size.
func TestMessagePartsMakeTheWholeFrame(t *testing.T) {
	for _, size := range []int{0, 60, 125, 126, 65535 - 200, 65536, 70000} {
		for _, sub := range []string{"", "a.*", "a.>", strings.Repeat("p.", 100) + "*"} {
			m := &broker.Message{ID: "6f1c2d4e-8a9b-4c3d-9e2f-1a2b3c4d5e6f", Topic: "a.b", Offset: 7, Epoch: "e1",
				Time: time.Unix(1, 2), Data: json.RawMessage(`"` + strings.Repeat("x", size) + `"`)}
			var enc Encoder
			shared := enc.MessageShared(m)
			head, tail := enc.MessageEnds(shared, sub)
			got := bytes.Join([][]byte{head, shared, tail}, nil)
			if want := enc.Message(m, sub); !bytes.Equal(got, want) {
				t.Fatalf("data of %d bytes through %q: parts make %q…, the frame is %q…", size, sub, got[:20], want[:20])
			}
		}
	}
}
