package ws

import (
	"bytes"
	"testing"
)

// A pooled writer's turn writes at most about maxTurnBytes for a session;
// what is left goes on in order, none lost, none repeated.
func TestSplitBytesBoundsATurn(t *testing.T) {
	part := func(n int, b byte) []byte { return bytes.Repeat([]byte{b}, n) }
	frames := [][]byte{part(100<<10, 'a'), part(100<<10, 'b'), part(100<<10, 'c'), part(10, 'd')}
	now, rest := splitBytes(frames, maxTurnBytes)
	if len(now) != 3 || len(rest) != 1 || rest[0][0] != 'd' {
		t.Fatalf("split into %d and %d parts, want the three that reach the bound and the rest", len(now), len(rest))
	}
	if cap(now) != len(now) {
		t.Fatal("appending to what is written now could overwrite the rest")
	}
	if now, rest := splitBytes(frames[:2], maxTurnBytes); len(now) != 2 || rest != nil {
		t.Fatalf("under the bound: %d and %d parts, want all now", len(now), len(rest))
	}
	if now, rest := splitBytes([][]byte{part(1<<20, 'x'), part(1, 'y')}, maxTurnBytes); len(now) != 1 || len(rest) != 1 {
		t.Fatalf("one large part: %d and %d parts, want it alone now", len(now), len(rest))
	}
}
