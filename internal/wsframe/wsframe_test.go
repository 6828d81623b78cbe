package wsframe

import (
	"bytes"
	"strings"
	"testing"

	"github.com/gobwas/ws"
)

func TestRead(t *testing.T) {
	var buf bytes.Buffer
	if err := ws.WriteFrame(&buf, ws.MaskFrame(ws.NewTextFrame([]byte("hello")))); err != nil {
		t.Fatal(err)
	}
	if err := ws.WriteFrame(&buf, ws.NewBinaryFrame(make([]byte, 11))); err != nil {
		t.Fatal(err)
	}
	h, p, err := Read(&buf, 10)
	if err != nil || h.OpCode != ws.OpText || string(p) != "hello" {
		t.Fatalf("Read = %v %q %v, want a text frame \"hello\"", h.OpCode, p, err)
	}
	if _, _, err := Read(&buf, 10); err == nil || !strings.Contains(err.Error(), "a frame of 11 bytes, over 10") {
		t.Fatalf("Read of a frame over the limit: %v", err)
	}
}
