package broker_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/tidings-io/tidings/broker"
	"github.com/tidings-io/tidings/store/memory"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// TestDrainOldest: the writer learns when the longest-waiting message of
// each batch was accepted; replies and drained batches carry no time.
func TestDrainOldest(t *testing.T) {
	t.Parallel()
	t0 := time.Unix(1_700_000_000, 0)
	now := t0
	b, _ := newBroker(t, broker.Config{Now: func() time.Time { return now }}, memory.Config{})
	s := b.NewSession()
	t.Cleanup(s.Close)
	if err := s.Subscribe(context.Background(), "", "d.a", nil); err != nil {
		t.Fatal(err)
	}
	frames, oldest, _ := s.Outbox().DrainOldest(nil)
	if len(frames) != 1 || !oldest.IsZero() {
		t.Fatalf("the subscribe answer: %d frames, oldest %v; want 1 and none", len(frames), oldest)
	}
	publish(t, b, "d.a", 1)
	now = t0.Add(time.Second)
	publish(t, b, "d.a", 1)
	s.Send([]byte("reply"))
	frames, oldest, _ = s.Outbox().DrainOldest(frames)
	if len(frames) != 3 || !oldest.Equal(t0) {
		t.Errorf("batch of %d frames, oldest %v; want 3 and %v", len(frames), oldest, t0)
	}
	if _, oldest, _ = s.Outbox().DrainOldest(frames); !oldest.IsZero() {
		t.Errorf("an empty batch has oldest %v", oldest)
	}
}

// TestPublishCountsByAPI: WithAPI names the API a publish is counted
// under; Stats().Published is the total.
func TestPublishCountsByAPI(t *testing.T) {
	t.Parallel()
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	b, _ := newBroker(t, broker.Config{MeterProvider: mp}, memory.Config{})
	ctx := context.Background()
	data := json.RawMessage(`1`)
	for i, c := range []context.Context{broker.WithAPI(ctx, broker.APIHTTP), broker.WithAPI(ctx, broker.APIWS), ctx} {
		pubs := make([]broker.Publication, i+1)
		for k := range pubs {
			pubs[k] = broker.Publication{Topic: "c.a", Data: data}
		}
		if _, err := b.Publish(c, pubs); err != nil {
			t.Fatal(err)
		}
	}
	if got := b.Stats().Published; got != 6 {
		t.Errorf("Published = %d, want 6", got)
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != "tidings.messages.published" {
				continue
			}
			for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
				api, _ := dp.Attributes.Value("api")
				got[api.AsString()] = dp.Value
			}
		}
	}
	if got["http"] != 1 || got["ws"] != 2 || got["other"] != 3 {
		t.Errorf("published by api %v, want http 1, ws 2, other 3", got)
	}
}

// TestTracingOffCarriesNothing: with no tracer provider, published
// messages carry no trace context, whatever the context holds.
func TestTracingOffCarriesNothing(t *testing.T) {
	t.Parallel()
	b, _ := newBroker(t, broker.Config{}, memory.Config{})
	msgs := publish(t, b, "o.a", 1)
	if msgs[0].Trace != nil {
		t.Errorf("Trace = %v with tracing off", msgs[0].Trace)
	}
}
