package protocol

import (
	"encoding/json"
	"testing"
)

func TestNodeInfoJSON(t *testing.T) {
	b, err := json.Marshal(NodeInfo{ID: "n1", Version: "v1", Uptime: 1.5, Sessions: 2, Subscriptions: 3, Topics: 4,
		PublishedPerSecond: 5, DeliveredPerSecond: 6})
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"id":"n1","version":"v1","uptime":1.5,"sessions":2,"subscriptions":3,"topics":4,` +
		`"published_per_second":5,"delivered_per_second":6}`
	if string(b) != want {
		t.Errorf("got %s, want %s", b, want)
	}
}

func TestFrameDecode(t *testing.T) {
	var f Frame
	in := `{"type":"message","topic":"a.b","sub":"a.*","id":"x","offset":7,"epoch":"e","time":"t","data":{"k":1}}`
	if err := json.Unmarshal([]byte(in), &f); err != nil {
		t.Fatal(err)
	}
	if f.Type != "message" || f.Topic != "a.b" || f.Sub != "a.*" || f.Offset != 7 || string(f.Data) != `{"k":1}` {
		t.Errorf("decoded %+v", f)
	}
}
