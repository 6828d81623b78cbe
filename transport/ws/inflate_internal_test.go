package ws

import (
	"bytes"
	"compress/flate"
	"errors"
	"io"
	"runtime"
	"strings"
	"testing"
)

// deflateMessage compresses p as a permessage-deflate sender does (a
// sync flush, its last 4 bytes removed), with dict as the preset
// dictionary when not nil (what context takeover amounts to).
func deflateMessage(t testing.TB, p, dict []byte, level int) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := flate.NewWriterDict(&buf, level, dict)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = w.Write(p)
	_ = w.Flush()
	out, ok := bytes.CutSuffix(buf.Bytes(), []byte{0, 0, 0xff, 0xff})
	if !ok {
		t.Fatal("a sync flush that does not end with 0x00 0x00 0xff 0xff")
	}
	return out
}

// referenceInflate inflates p (with deflateTail) with compress/flate
// alone, unbounded.
func referenceInflate(p, dict []byte) ([]byte, error) {
	r := flate.NewReaderDict(io.MultiReader(bytes.NewReader(p), bytes.NewReader(deflateTail)), dict)
	return io.ReadAll(r)
}

// FuzzInflate: inflate never panics, never returns more than limit+1
// bytes, says errInflateTooBig exactly when the data inflates past the
// limit, agrees with compress/flate on every payload, and inflates what
// a sender compressed (with or without a dictionary) back to it.
func FuzzInflate(f *testing.F) {
	text := []byte(`{"op":"publish","topic":"prices.eur","data":{"bid":1.0842,"ask":1.0843}}`)
	for _, seed := range [][]byte{
		nil, {0x00}, {0x02, 0x00}, {0xff, 0xff, 0xff}, {0x01, 0x00, 0x00, 0xff, 0xff},
		deflateMessage(f, text, nil, flate.BestSpeed),
		deflateMessage(f, bytes.Repeat([]byte{'x'}, 5000), nil, flate.BestCompression),
		deflateMessage(f, text, text[:20], flate.DefaultCompression),
	} {
		f.Add(seed, uint16(1024), uint8(0))
	}
	f.Add(text, uint16(10), uint8(5))
	f.Fuzz(func(t *testing.T, p []byte, limit16 uint16, dictLen uint8) {
		limit := int(limit16)
		var dict []byte
		if int(dictLen) <= len(p) {
			dict = p[:dictLen]
		}
		out, err := inflate(nil, p, dict, limit)
		if len(out) > limit+1 {
			t.Fatalf("inflate returned %d bytes with limit %d", len(out), limit)
		}
		ref, refErr := referenceInflate(p, dict)
		switch {
		case err == nil:
			if refErr != nil || !bytes.Equal(out, ref) {
				t.Fatalf("inflate gave %d bytes, compress/flate %d bytes and %v", len(out), len(ref), refErr)
			}
			if len(out) > limit {
				t.Fatalf("no error for %d bytes over a limit of %d", len(out), limit)
			}
		case errors.Is(err, errInflateTooBig):
			if len(out) != limit+1 || len(ref) <= limit || !bytes.Equal(out, ref[:len(out)]) {
				t.Fatalf("too big at %d bytes (limit %d), but compress/flate gives %d bytes and %v", len(out), limit, len(ref), refErr)
			}
		case errors.Is(err, errInflateInvalid):
			if refErr == nil || len(ref) > limit {
				t.Fatalf("invalid, but compress/flate inflates it to %d bytes (%v)", len(ref), refErr)
			}
		default:
			t.Fatalf("unexpected error %v", err)
		}

		// p as a message: compressed by a sender, inflated back.
		z := deflateMessage(t, p, dict, flate.BestSpeed)
		back, err := inflate(nil, z, dict, limit)
		switch {
		case len(p) > limit:
			if !errors.Is(err, errInflateTooBig) {
				t.Fatalf("a %d-byte message with limit %d: %v", len(p), limit, err)
			}
		case err != nil || !bytes.Equal(back, p):
			t.Fatalf("round trip of %d bytes: %v, %d bytes back", len(p), err, len(back))
		}
	})
}

// TestInflateBombIsBounded: 100 MB of zeros, 100 KB compressed, cost one
// message limit of memory to refuse, not 100 MB.
func TestInflateBombIsBounded(t *testing.T) {
	const limit = 64 << 10
	var buf bytes.Buffer
	w, _ := flate.NewWriter(&buf, flate.BestCompression)
	zeros := make([]byte, 1<<20)
	for range 100 {
		_, _ = w.Write(zeros)
	}
	_ = w.Flush()
	bomb := bytes.TrimSuffix(buf.Bytes(), []byte{0, 0, 0xff, 0xff})
	// Warm the decompressor pool.
	if _, err := inflate(nil, deflateMessage(t, []byte("{}"), nil, 1), nil, limit); err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	out, err := inflate(nil, bomb, nil, limit)
	runtime.ReadMemStats(&after)
	if !errors.Is(err, errInflateTooBig) || len(out) != limit+1 {
		t.Fatalf("inflate: %d bytes, %v; want %d bytes and errInflateTooBig", len(out), err, limit+1)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 4*limit {
		t.Fatalf("inflating a %d-byte bomb allocated %d bytes, want at most %d", len(bomb), alloc, 4*limit)
	}
}

// TestInflateExactLimit: exactly limit bytes pass, one more does not.
func TestInflateExactLimit(t *testing.T) {
	for _, n := range []int{0, 1, 511, 512, 513, 4096, 70000} {
		p := []byte(strings.Repeat("abcdefghij", n/10+1)[:n])
		z := deflateMessage(t, p, nil, flate.DefaultCompression)
		if out, err := inflate(nil, z, nil, n); err != nil || !bytes.Equal(out, p) {
			t.Errorf("%d bytes at a limit of %d: %v", n, n, err)
		}
		if n > 0 {
			if _, err := inflate(nil, z, nil, n-1); !errors.Is(err, errInflateTooBig) {
				t.Errorf("%d bytes at a limit of %d: %v, want errInflateTooBig", n, n-1, err)
			}
		}
	}
}

// TestInflaterRemembersItsWindow: the window kept for context takeover
// is the last window bytes inflated, across messages of any size, and
// its buffer never grows past the window.
func TestInflaterRemembersItsWindow(t *testing.T) {
	const window = 1 << 10
	f := &inflater{window: window}
	var all []byte
	for i, n := range []int{10, 100, 600, 1, 1023, 1024, 1025, 3000, 5, 700} {
		out := bytes.Repeat([]byte{byte('a' + i)}, n)
		all = append(all, out...)
		f.remember(out)
		want := all[max(0, len(all)-window):]
		if !bytes.Equal(f.dict, want) {
			t.Fatalf("after %d messages the window holds %d bytes, want the last %d", i+1, len(f.dict), len(want))
		}
		if cap(f.dict) > window {
			t.Fatalf("window buffer of %d bytes, over %d", cap(f.dict), window)
		}
	}
	if n := f.release(); n == 0 || f.dict != nil {
		t.Fatalf("release gave back %d bytes", n)
	}
}

// TestDeflateEncoderLeavesWhatDoesNotShrink: a payload deflate makes no
// smaller goes plain, RSV1 clear, and is not counted.
func TestDeflateEncoderLeavesWhatDoesNotShrink(t *testing.T) {
	d := NewDeflateEncoder(1)
	plain := jsonFrame(map[string]int{"a": 1})
	if got := d.compress(plain); !bytes.Equal(got, plain) || got[0]&rsv1 != 0 {
		t.Fatalf("a %d-byte payload came out as %x", len(plain)-2, got)
	}
	if st := d.Stats(); st.Frames != 0 {
		t.Fatalf("stats %+v", st)
	}
	big := jsonFrame(map[string]string{"a": strings.Repeat("compressible ", 100)})
	z := d.compress(big)
	if z[0] != 0x80|rsv1|0x1 {
		t.Fatalf("first byte %#x, want FIN, RSV1 and text", z[0])
	}
	out, err := inflate(nil, z[headerLen(z[1]):], nil, 1<<20)
	if err != nil || !bytes.Equal(out, big[headerLen(big[1]):]) {
		t.Fatalf("the compressed frame does not inflate to the plain payload: %v", err)
	}
	if st := d.Stats(); st.Frames != 1 || st.Saved != st.In-st.Out {
		t.Fatalf("stats %+v", st)
	}
}
