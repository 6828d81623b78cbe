//go:build linux

package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/gobwas/ws"
)

// serverFrame builds an unmasked server frame as the broker does.
func srvFrame(t *testing.T, op ws.OpCode, p []byte) []byte {
	t.Helper()
	b, err := ws.CompileFrame(ws.NewFrame(op, true, p))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestNextFrame(t *testing.T) {
	t.Parallel()
	small := srvFrame(t, ws.OpText, []byte(`{"type":"pong"}`))
	medium := srvFrame(t, ws.OpText, bytes.Repeat([]byte("a"), 300))  // 16-bit length
	large := srvFrame(t, ws.OpText, bytes.Repeat([]byte("b"), 70000)) // 64-bit length
	ping := srvFrame(t, ws.OpPing, []byte("hi"))
	stream := append(append(append(append([]byte{}, small...), medium...), large...), ping...)

	var ops []byte
	var lens []int
	for rest := stream; len(rest) > 0; {
		op, p, n, _, err := nextFrame(rest)
		if err != nil || n == 0 {
			t.Fatalf("nextFrame: n=%d err=%v", n, err)
		}
		ops = append(ops, op)
		lens = append(lens, len(p))
		rest = rest[n:]
	}
	if string(ops) != string([]byte{opText, opText, opText, opPing}) || lens[0] != 15 || lens[1] != 300 || lens[2] != 70000 || lens[3] != 2 {
		t.Fatalf("ops %v lens %v", ops, lens)
	}
	// Every prefix of a frame is incomplete, never an error.
	for _, f := range [][]byte{small, medium, large[:20]} {
		for i := 0; i < len(f)-1 && i < 20; i++ {
			if _, _, n, _, err := nextFrame(f[:i]); n != 0 || err != nil {
				t.Fatalf("prefix %d: n=%d err=%v", i, n, err)
			}
		}
	}
	if _, _, n, need, _ := nextFrame(large[:100]); n != 0 || need != len(large) {
		t.Fatalf("need = %d, want %d", need, len(large))
	}
	masked := ws.MustCompileFrame(ws.MaskFrameInPlace(ws.NewTextFrame([]byte("x"))))
	if _, _, _, _, err := nextFrame(masked); err != errMasked {
		t.Fatalf("masked frame: err = %v", err)
	}
	frag := srvFrame(t, ws.OpText, []byte("x"))
	frag[0] &^= 0x80
	if _, _, _, _, err := nextFrame(frag); err != errFragmented {
		t.Fatalf("fragment: err = %v", err)
	}
	huge := []byte{0x81, 127, 0, 0, 0, 0, 0x10, 0, 0, 0}
	if _, _, _, _, err := nextFrame(huge); err != errTooLarge {
		t.Fatalf("huge: err = %v", err)
	}
}

func TestParseMessage(t *testing.T) {
	t.Parallel()
	data := appendData(nil, 1700000000123456789, 64)
	if len(data) != 64 || !json.Valid(data) {
		t.Fatalf("appendData: %d bytes, valid %v: %s", len(data), json.Valid(data), data)
	}
	exact := `{"type":"message","topic":"prices.eur.usd","id":"7f97ee57-0000-4000-8000-000000000000","offset":42,"epoch":"c930f582","time":"2026-01-01T00:00:00.123456789Z","data":` + string(data) + `}`
	topic, sub, off, ts, err := parseMessage([]byte(exact))
	if err != nil || string(topic) != "prices.eur.usd" || sub != nil || off != 42 || ts != 1700000000123456789 {
		t.Fatalf("exact: %q %q %d %d %v", topic, sub, off, ts, err)
	}
	wild := strings.TrimSuffix(exact, "}") + `,"sub":"prices.*.usd"}`
	_, sub, _, _, err = parseMessage([]byte(wild))
	if err != nil || string(sub) != "prices.*.usd" {
		t.Fatalf("wildcard: sub %q err %v", sub, err)
	}
	for _, bad := range []string{
		`{"type":"subscribed","topic":"a"}`,
		`{"type":"message","topic":"a","offset":1,"data":{"x":1}}`,
		`{"type":"message","topic":"a","data":{"ts":1}}`,
		`{"type":"message","topic":"a`,
	} {
		if _, _, _, _, err := parseMessage([]byte(bad)); err == nil {
			t.Errorf("parseMessage(%s): no error", bad)
		}
	}
}

func TestParseMessageDoesNotAllocate(t *testing.T) {
	p := []byte(`{"type":"message","topic":"t","id":"x","offset":7,"epoch":"e","time":"t","data":{"ts":123,"p":"xx"},"sub":"t.>"}`)
	if n := testing.AllocsPerRun(1000, func() { _, _, _, _, _ = parseMessage(p) }); n != 0 {
		t.Fatalf("parseMessage allocates %.1f times", n)
	}
}

func TestAppendInt(t *testing.T) {
	t.Parallel()
	for _, v := range []int64{0, 7, -7, 1234567890123, -9223372036854775807} {
		if got := string(appendInt(nil, v)); got != strings.TrimSpace(string(mustJSON(v))) {
			t.Errorf("appendInt(%d) = %s", v, got)
		}
	}
}

func mustJSON(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}
