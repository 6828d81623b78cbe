package ws_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/tidings-io/tidings/internal/testkit"
	wsserver "github.com/tidings-io/tidings/transport/ws"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// TestCompressionOncePerNode: a message published to a topic with 60
// compressing subscribers, 10 plain ones and 5 compressing subscribers of
// a wildcard pattern is deflated exactly twice on the node (once for the
// exact subscribers, once for the pattern), whatever the number of
// subscribers: every compressing exact subscriber receives the very same
// frame bytes, the plain ones an uncompressed frame, and inflating the
// compressed payload gives exactly the plain frame's payload. The
// metrics say the same.
func TestCompressionOncePerNode(t *testing.T) {
	t.Parallel()
	const nz, nplain, nwild = 60, 10, 5
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	h := newDeflateHarness(t, wsserver.Config{MeterProvider: mp})

	offers := []string{"permessage-deflate", "permessage-deflate; client_max_window_bits", "permessage-deflate; client_no_context_takeover"}
	zs := make([]*client, nz)
	for i := range zs {
		zs[i], _ = h.dialOffer(t, offers[i%len(offers)])
		zs[i].expectDeflate(true, "welcome")
		zs[i].send(`{"op":"subscribe","topic":"once.t"}`)
		zs[i].expectDeflate(true, "subscribed")
	}
	wild := make([]*client, nwild)
	for i := range wild {
		wild[i], _ = h.dialOffer(t, "permessage-deflate")
		wild[i].expectDeflate(true, "welcome")
		wild[i].send(`{"op":"subscribe","topic":"once.*"}`)
		wild[i].expectDeflate(true, "subscribed")
	}
	plains := make([]*client, nplain)
	for i := range plains {
		plains[i], _ = h.dialWelcome(t)
		plains[i].subscribe("once.t")
	}
	if st := h.srv.CompressionStats(); st.Frames != 0 {
		t.Fatalf("%d frames compressed before any message: welcome and subscribed are below the minimum", st.Frames)
	}

	for round := 1; round <= 3; round++ {
		data := testkit.Prices(round, 3000)
		h.mustPublish(t, "once.t", data)
		var plain []byte
		for i, c := range plains {
			f, err := c.readFrame()
			if err != nil {
				t.Fatal(err)
			}
			if i == 0 {
				plain = f.Payload
			} else if !bytes.Equal(f.Payload, plain) {
				t.Fatalf("plain session %d got other bytes", i)
			}
		}
		var first wireFrame
		for i, c := range zs {
			f, e := c.expectDeflate(true, "message")
			if !f.compressed {
				t.Fatalf("session %d: message of %d bytes not compressed", i, len(f.text))
			}
			if string(e.Data) != data {
				t.Fatalf("session %d: data differs", i)
			}
			if i == 0 {
				first = f
				continue
			}
			if f.Header != first.Header || !bytes.Equal(f.Payload, first.Payload) {
				t.Fatalf("session %d got another frame than session 0: %+v vs %+v", i, f.Header, first.Header)
			}
		}
		if !bytes.Equal(first.text, plain) {
			t.Fatalf("the compressed frame inflates to %.80q…, the plain frame is %.80q…", first.text, plain)
		}
		if len(first.Payload) >= len(plain)*2/3 {
			t.Errorf("a %d-byte payload compressed to %d bytes", len(plain), len(first.Payload))
		}
		var firstWild wireFrame
		for i, c := range wild {
			f, e := c.expectDeflate(true, "message")
			if !f.compressed || e.Sub != "once.*" || string(e.Data) != data {
				t.Fatalf("wildcard session %d: compressed %v, sub %q", i, f.compressed, e.Sub)
			}
			if i == 0 {
				firstWild = f
			} else if f.Header != firstWild.Header || !bytes.Equal(f.Payload, firstWild.Payload) {
				t.Fatalf("wildcard session %d got another frame than wildcard session 0", i)
			}
		}
		st := h.srv.CompressionStats()
		if want := uint64(2 * round); st.Frames != want {
			t.Fatalf("after %d messages the node compressed %d frames, want %d (one per message, one per message and pattern)", round, st.Frames, want)
		}
		if st.Saved != st.In-st.Out || st.Out == 0 || st.In <= st.Out {
			t.Fatalf("stats %+v", st)
		}
	}

	// The metrics: frames, bytes saved, the ratio.
	st := h.srv.CompressionStats()
	got := compressionMetrics(t, reader)
	want := map[string]float64{
		"tidings.ws.compressed.messages": float64(st.Frames),
		"tidings.ws.compression.saved":   float64(st.Saved),
		"tidings.ws.compression.ratio":   float64(st.In) / float64(st.Out),
	}
	for name, v := range want {
		if got[name] != v {
			t.Errorf("%s = %v, want %v", name, got[name], v)
		}
	}
	if r := got["tidings.ws.compression.ratio"]; r < 1.5 {
		t.Errorf("compression ratio %v on JSON prices", r)
	}
}

// compressionMetrics collects the compression metrics from reader, by
// name.
func compressionMetrics(t testing.TB, reader *sdkmetric.ManualReader) map[string]float64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, dp := range d.DataPoints {
					out[m.Name] += float64(dp.Value)
				}
			case metricdata.Gauge[float64]:
				for _, dp := range d.DataPoints {
					out[m.Name] = dp.Value
				}
			}
		}
	}
	return out
}

// TestInflateWindowsAreCounted: a client with context takeover makes its
// session hold its last window of inflated bytes, at most 32 KiB (less
// when it offered a smaller client_max_window_bits), given back when the
// session ends; without takeover nothing is held.
func TestInflateWindowsAreCounted(t *testing.T) {
	t.Parallel()
	h := newDeflateHarness(t, wsserver.Config{})
	big := `{"op":"ping","ref":"` + strings.Repeat("window-", 6000) + `"}`
	for _, tc := range []struct {
		offer string
		want  int64
	}{
		{"permessage-deflate; client_no_context_takeover", 0},
		{"permessage-deflate; client_max_window_bits=10", 1 << 10},
		{"permessage-deflate", 32 << 10},
	} {
		t.Run(tc.offer, func(t *testing.T) {
			c, _ := h.dialOffer(t, tc.offer)
			c.expectDeflate(true, "welcome")
			c.sendCompressed(newClientDeflater(false), big)
			c.expectDeflate(true, "pong")
			if got := h.srv.CompressionStats().InflateWindowBytes; got != tc.want {
				t.Errorf("inflate windows hold %d bytes, want %d", got, tc.want)
			}
			c.sendClose(closeBody(1000, ""))
			c.expectClose(1000, "")
			testkit.Eventually(t, waitTimeout, func() error {
				if n := h.srv.CompressionStats().InflateWindowBytes; n != 0 {
					return fmt.Errorf("inflate windows hold %d bytes after the session ended", n)
				}
				return nil
			})
		})
	}
}
