package session_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/tidings-io/tidings/protocol"
	"github.com/tidings-io/tidings/session"
)

// commandSeeds are client commands, valid and not, that seed FuzzCommand
// and, as text frames, FuzzFrame.
var commandSeeds = []string{
	`{"op":"ping"}`,
	`{"op":"ping","ref":"r1"}`,
	`{"op":"ping","ref":null}`,
	`{"op":"ping","ref":5}`,
	`{"op":"subscribe","topic":"a.b","ref":"s"}`,
	`{"op":"subscribe","topic":"a.*"}`,
	`{"op":"subscribe","topic":"a.>","since":{"offset":0,"epoch":"e"}}`,
	`{"op":"subscribe","topic":"a.b","since":{"offset":3,"epoch":"e"}}`,
	`{"op":"subscribe","topic":"a.b","since":{"offset":-1,"epoch":"e"}}`,
	`{"op":"subscribe","topic":"a.b","since":{"offset":1}}`,
	`{"op":"subscribe","topic":"a.b","since":"x"}`,
	`{"op":"subscribe","topic":5,"ref":"t"}`,
	`{"op":"subscribe"}`,
	`{"op":"unsubscribe","topic":"a.b","ref":"u"}`,
	`{"op":"history","topic":"a.b","ref":"h","limit":10,"reverse":true,"since":{"offset":2,"epoch":"e"}}`,
	`{"op":"history","topic":"a.b","limit":1001}`,
	`{"op":"history","topic":"a.b","limit":-1}`,
	`{"op":"history"}`,
	`{"op":"unsubscribe","topic":"a..b"}`,
	`{"op":"publish","topic":"a.b","data":{"a" :  [1, 2 ]},"ref":"p"}`,
	`{"op":"publish","topic":"a.b","data":null}`,
	`{"op":"publish","topic":"a.b","data":"caf\u00e9 \ud83d\ude00"}`,
	`{"op":"publish","topic":"a.b","data":1e400}`,
	`{"op":"publish","topic":"a.*","data":1}`,
	`{"op":"publish","topic":"a.b"}`,
	`{"op":"refresh","token":"a.b.c","ref":"r"}`,
	`{"op":"refresh","token":""}`,
	`{"op":"refresh","token":7}`,
	`{"op":"ping","token":"t"}`,
	`{"OP":"PING","Ref":"case"}`,
	`{"op":"ping","op":"dance"}`,
	`{"op":"dance"}`,
	`{}`,
	` {"op":"ping"} `,
	`{"op":"ping"} {"op":"ping"}`,
	`{"op":"ping"`,
	`[1]`,
	`"x"`,
	`nope`,
	`null`,
	`1`,
	``,
	"{\"op\":\"ping\",\"ref\":\"\xff\"}",
	strings.Repeat(`{"a":`, 20) + `1` + strings.Repeat(`}`, 20),
}

// isJSONObject is FuzzCommand's reference: p holds exactly one JSON
// object, with nothing but whitespace around it.
func isJSONObject(p []byte) bool {
	var m map[string]json.RawMessage
	return json.Unmarshal(p, &m) == nil && m != nil
}

// FuzzCommand checks that DecodeCommand never panics and that its result
// keeps its promises: ErrNotObject exactly when the input is not a JSON
// object, ErrBadCommand for every other error, and on success one of the
// four ops with what that op needs, publish data that is valid JSON taken
// byte for byte from the input, and fields that do not alias the input.
func FuzzCommand(f *testing.F) {
	for _, s := range commandSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		in := bytes.Clone(p)
		cmd, err := session.DecodeCommand(p)
		if !bytes.Equal(p, in) {
			t.Fatalf("DecodeCommand changed its input %q to %q", in, p)
		}
		notObject := errors.Is(err, session.ErrNotObject)
		if obj := isJSONObject(p); notObject == obj {
			t.Fatalf("%q: JSON object %v, but error %v", p, obj, err)
		}
		if err != nil {
			if !notObject && !errors.Is(err, session.ErrBadCommand) {
				t.Fatalf("%q: error %v wraps neither ErrNotObject nor ErrBadCommand", p, err)
			}
			if notObject && (cmd.Op != "" || cmd.Ref != "" || cmd.Data != nil || cmd.Since != nil) {
				t.Fatalf("%q: not an object, yet decoded %+v", p, cmd)
			}
			return
		}
		switch cmd.Op {
		case "subscribe", "unsubscribe", "publish", "history":
			if cmd.Topic == "" {
				t.Fatalf("%q: %s without a topic", p, cmd.Op)
			}
		case "ping":
		case "refresh":
			if cmd.Token == "" {
				t.Fatalf("%q: refresh without a token", p)
			}
		default:
			t.Fatalf("%q: decoded op %q", p, cmd.Op)
		}
		if cmd.Token != "" && cmd.Op != "refresh" {
			t.Fatalf("%q: %s carries a token", p, cmd.Op)
		}
		if cmd.Op == "publish" {
			if !json.Valid(cmd.Data) {
				t.Fatalf("%q: publish data %q is not valid JSON", p, cmd.Data)
			}
			if !bytes.Contains(p, cmd.Data) {
				t.Fatalf("%q: publish data %q is not the input's bytes", p, cmd.Data)
			}
		} else if cmd.Data != nil {
			t.Fatalf("%q: %s carries data %q", p, cmd.Op, cmd.Data)
		}
		if cmd.Since != nil && cmd.Op != "subscribe" && cmd.Op != "history" {
			t.Fatalf("%q: %s carries since", p, cmd.Op)
		}
		if (cmd.Limit != 0 || cmd.Reverse) && cmd.Op != "history" {
			t.Fatalf("%q: %s carries limit or reverse", p, cmd.Op)
		}
		if cmd.Limit < 0 || cmd.Limit > protocol.HistoryLimit.Max {
			t.Fatalf("%q: limit %d out of range", p, cmd.Limit)
		}
		// The command outlives the frame buffer it was decoded from.
		data, ref, topic := bytes.Clone(cmd.Data), cmd.Ref, cmd.Topic
		for i := range p {
			p[i] = 'X'
		}
		if !bytes.Equal(cmd.Data, data) || cmd.Ref != ref || cmd.Topic != topic {
			t.Fatalf("%q: the command aliases its input", in)
		}
	})
}
