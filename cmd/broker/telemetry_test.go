package main

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tidings-io/tidings/internal/testkit"
)

// TestTelemetryFromEnv: the OTEL_* variables reach the node: with the
// console exporter an HTTP publish's spans are printed in the trace of
// its traceparent, flushed at shutdown, and /metrics serves Prometheus
// text.
func TestTelemetryFromEnv(t *testing.T) {
	t.Parallel()
	n := startNode(t, map[string]string{"OTEL_TRACES_EXPORTER": "console", "OTEL_SERVICE_NAME": "tidings-cmd-test"})
	rec, _ := n.log.waitRecord("listening", time.Second, nil)
	if rec["traces"] != "console" || rec["metrics"] != "prometheus" {
		t.Errorf("listening line says traces %v metrics %v", rec["traces"], rec["metrics"])
	}
	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	testkit.PublishTraced(t, "http://"+n.addr, "cmd.t", "00-"+traceID+"-00f067aa0ba902b7-01")

	resp, err := http.Get("http://" + n.addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"# TYPE tidings_sessions gauge", `tidings_messages_published_total{api="http"} 1`, "go_goroutines", `service_name="tidings-cmd-test"`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}

	if _, err := n.stop(t, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	spans := map[string]bool{}
	for _, line := range n.log.Lines() {
		var s struct {
			Name        string
			SpanContext struct{ TraceID string }
		}
		if json.Unmarshal([]byte(line), &s) == nil && s.SpanContext.TraceID == traceID {
			spans[s.Name] = true
		}
	}
	if !spans["publish"] || !spans["store.append"] {
		t.Errorf("console spans in trace %s: %v, want publish and store.append", traceID, spans)
	}
}

// TestTelemetryBadEnv: an unusable OTEL_* value is a usage error that
// names the variable.
func TestTelemetryBadEnv(t *testing.T) {
	t.Parallel()
	err := run(t.Context(), []string{"-addr", "127.0.0.1:0"}, envOf(map[string]string{"OTEL_TRACES_EXPORTER": "jaeger"}), io.Discard)
	var out strings.Builder
	if code := exitCode(err, &out); code != 2 || !strings.Contains(out.String(), "OTEL_TRACES_EXPORTER") {
		t.Errorf("exit %d, stderr %q; want 2 naming OTEL_TRACES_EXPORTER", code, out.String())
	}
}
