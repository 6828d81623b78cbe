package ws_test

import (
	"encoding/json"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// The `history` op answers a topic's messages still in history, within
// the session's subscribe permission: the last ones, or those after
// since, at most limit, reversed on request; a stale epoch answers
// recovered false and nothing.
func TestHistoryOp(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withTokens(t, config{}))
	var ids []string
	for i := 1; i <= 5; i++ {
		ids = append(ids, h.mustPublish(t, "room.1", strconv.Itoa(i)).ID)
	}
	c, ref := h.handshake(t, "token="+url.QueryEscape(mint(t, token{sub: "ada", subscribe: []string{"room.>"}})), nil)
	if ref != nil {
		t.Fatalf("handshake refused: %d %s", ref.status, ref.body)
	}
	c.expect("welcome")
	type reply struct {
		Type, Ref, Topic, Epoch string
		Offset                  uint64
		Recovered               bool
		Messages                []struct {
			ID     string
			Offset uint64
			Data   json.RawMessage
		}
	}
	ask := func(cmd string) reply {
		t.Helper()
		c.send(cmd)
		f := c.expect("history")
		var r reply
		if err := json.Unmarshal(f.Raw, &r); err != nil {
			t.Fatal(err)
		}
		return r
	}
	offsets := func(r reply) []uint64 {
		var o []uint64
		for _, m := range r.Messages {
			if m.ID != ids[m.Offset-1] || string(m.Data) != strconv.FormatUint(m.Offset, 10) {
				t.Fatalf("message %+v is not the one published at offset %d", m, m.Offset)
			}
			o = append(o, m.Offset)
		}
		return o
	}
	all := ask(`{"op":"history","topic":"room.1","ref":"a"}`)
	if all.Ref != "a" || all.Topic != "room.1" || all.Offset != 5 || !all.Recovered || !slices.Equal(offsets(all), []uint64{1, 2, 3, 4, 5}) {
		t.Fatalf("history: %+v", all)
	}
	if r := ask(`{"op":"history","topic":"room.1","limit":2,"reverse":true}`); !slices.Equal(offsets(r), []uint64{5, 4}) {
		t.Errorf("limit 2 reversed: %v", offsets(r))
	}
	if r := ask(`{"op":"history","topic":"room.1","since":{"offset":3,"epoch":"` + all.Epoch + `"}}`); !slices.Equal(offsets(r), []uint64{4, 5}) {
		t.Errorf("since 3: %v", offsets(r))
	}
	if r := ask(`{"op":"history","topic":"room.1","since":{"offset":3,"epoch":"stale"}}`); r.Recovered || len(r.Messages) != 0 || r.Offset != 5 {
		t.Errorf("stale epoch: %+v", r)
	}
	for _, tc := range []struct{ cmd, code string }{
		{`{"op":"history","topic":"news.x","ref":"n"}`, "forbidden"},
		{`{"op":"history","topic":"room.*","ref":"n"}`, "bad_request"},
		{`{"op":"history","topic":"room.1","limit":5000,"ref":"n"}`, "bad_request"},
	} {
		c.send(tc.cmd)
		if e := c.expect("error"); e.Code != tc.code || e.Ref != "n" {
			t.Errorf("%s: %s, want error %s", tc.cmd, e.Raw, tc.code)
		}
	}
}

// The history op gives each message's data byte for byte, as a `message`
// frame does: whitespace kept, <, > and & not escaped.
func TestHistoryOpDataIsByteForByte(t *testing.T) {
	t.Parallel()
	h := newHarness(t, config{})
	const data = `{ "html" : "<b>a&amp;b</b>",  "n":[1e400, -0 ] }`
	h.mustPublish(t, "raw.t", data)
	c := h.dial(t)
	c.expect("welcome")
	c.send(`{"op":"history","topic":"raw.t","ref":"r"}`)
	f := c.expect("history")
	if !strings.Contains(string(f.Raw), `"data":`+data+`}`) {
		t.Fatalf("history answered %s, want the data %s byte for byte", f.Raw, data)
	}
}
