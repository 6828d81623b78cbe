package stream_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/tidings-io/tidings/internal/testkit"
	"github.com/tidings-io/tidings/transport/stream"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// sessionCounts returns the sessions metrics: opened, and closed by
// "code reason", each with transport http-stream.
func sessionCounts(t *testing.T, reader *sdkmetric.ManualReader) (opened int64, closed map[string]int64) {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	closed = map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			sum, ok := m.Data.(metricdata.Sum[int64])
			if !ok {
				continue
			}
			for _, dp := range sum.DataPoints {
				if tr, _ := dp.Attributes.Value("transport"); tr != attribute.StringValue("http-stream") {
					t.Fatalf("%s with transport %v", m.Name, tr.String())
				}
				code, _ := dp.Attributes.Value("code")
				reason, _ := dp.Attributes.Value("reason")
				switch m.Name {
				case "tidings.sessions.opened":
					opened += dp.Value
				case "tidings.sessions.closed":
					closed[code.String()+" "+reason.String()] += dp.Value
				}
			}
		}
	}
	return opened, closed
}

func TestSessionsMetrics(t *testing.T) {
	t.Parallel()
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	e := newEnv(t, stream.Config{MeterProvider: mp}, envOpts{})
	gone := e.open(t, "")
	gone.expect("welcome")
	gone.close()
	testkit.Eventually(t, 5*time.Second, func() error {
		if n := e.srv.Sessions(); n != 0 {
			return fmt.Errorf("%d sessions", n)
		}
		return nil
	})
	c := e.open(t, "")
	c.expect("welcome")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	c.expectClose(1001, "server shutting down")
	opened, closed := sessionCounts(t, reader)
	if opened != 2 || closed["1006 dropped"] != 1 || closed["1001 shutdown"] != 1 || len(closed) != 2 {
		t.Fatalf("opened %d, closed %v", opened, closed)
	}
}
