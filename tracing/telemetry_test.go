package tracing_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/tidings-io/tidings/internal/telemetry"
	"github.com/tidings-io/tidings/internal/testkit"
	"github.com/tidings-io/tidings/tracing"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	collmetrics "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	colltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

// env returns a getenv over vars.
func env(vars map[string]string) func(string) string {
	return func(k string) string { return vars[k] }
}

func setup(t *testing.T, vars map[string]string, cfg tracing.Config) *tracing.Telemetry {
	t.Helper()
	tel, err := tracing.Setup(t.Context(), env(vars), cfg)
	if err != nil {
		t.Fatalf("Setup(%v): %v", vars, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = tel.Shutdown(ctx)
	})
	return tel
}

func TestSetupDefaults(t *testing.T) {
	t.Parallel()
	tel := setup(t, nil, tracing.Config{})
	if tel.TracerProvider != nil {
		t.Errorf("TracerProvider = %T with no OTEL_TRACES_EXPORTER, want nil (tracing off)", tel.TracerProvider)
	}
	if tel.Traces != "none" || tel.Metrics != "prometheus" {
		t.Errorf("Traces %q Metrics %q, want none and prometheus", tel.Traces, tel.Metrics)
	}
	if tel.MeterProvider == nil || tel.MetricsHandler == nil {
		t.Fatal("metrics are off by default, want Prometheus")
	}
	// The handler serves the Go runtime collector and the resource's
	// service.name.
	c, _ := tel.MeterProvider.Meter("t").Int64Counter("tidings.test.things", metric.WithUnit("{thing}"))
	c.Add(t.Context(), 3)
	fams := scrape(t, tel.MetricsHandler)
	for _, name := range []string{"go_goroutines", "process_open_fds", "tidings_test_things_total", "target_info"} {
		if fams[name] == nil {
			t.Errorf("no %s family", name)
		}
	}
	if got := fams["tidings_test_things_total"].GetMetric()[0].GetCounter().GetValue(); got != 3 {
		t.Errorf("tidings_test_things_total = %v, want 3", got)
	}
	if !hasLabel(fams["target_info"], "service_name", "tidings") {
		t.Errorf("target_info has no service_name=tidings: %v", fams["target_info"])
	}
	// The propagator is W3C trace context and baggage.
	got := tel.Propagator.Fields()
	sort.Strings(got)
	if strings.Join(got, ",") != "baggage,traceparent,tracestate" {
		t.Errorf("propagator fields %v, want traceparent, tracestate and baggage", got)
	}
}

func TestSetupMetricsNone(t *testing.T) {
	t.Parallel()
	tel := setup(t, map[string]string{"OTEL_METRICS_EXPORTER": "none"}, tracing.Config{})
	if tel.MeterProvider != nil || tel.MetricsHandler != nil || tel.Metrics != "none" {
		t.Errorf("OTEL_METRICS_EXPORTER=none: MeterProvider %v, handler %v, Metrics %q; want all off", tel.MeterProvider, tel.MetricsHandler, tel.Metrics)
	}
}

func TestSetupResource(t *testing.T) {
	t.Parallel()
	tel := setup(t, map[string]string{
		"OTEL_SERVICE_NAME":        "feeds",
		"OTEL_RESOURCE_ATTRIBUTES": "deployment.environment.name=prod,team=live%20feeds,service.name=ignored",
	}, tracing.Config{ServiceVersion: "1.2.3", InstanceID: "node-a"})
	fams := scrape(t, tel.MetricsHandler)
	info := fams["target_info"]
	for k, v := range map[string]string{
		"service_name": "feeds", "service_version": "1.2.3", "service_instance_id": "node-a",
		"deployment_environment_name": "prod", "team": "live feeds",
	} {
		if !hasLabel(info, k, v) {
			t.Errorf("target_info lacks %s=%q: %v", k, v, info)
		}
	}
}

func TestSetupConsoleAndSampler(t *testing.T) {
	t.Parallel()
	var out testkit.Buffer // written by the exporter's goroutine
	tel := setup(t, map[string]string{
		"OTEL_TRACES_EXPORTER":    "console",
		"OTEL_TRACES_SAMPLER":     "traceidratio",
		"OTEL_TRACES_SAMPLER_ARG": "0",
	}, tracing.Config{Console: &out})
	_, span := tel.TracerProvider.Tracer("t").Start(t.Context(), "never")
	if span.SpanContext().IsSampled() {
		t.Error("traceidratio 0 sampled a span")
	}
	span.End()

	tel2 := setup(t, map[string]string{"OTEL_TRACES_EXPORTER": "console"}, tracing.Config{Console: &out})
	_, span = tel2.TracerProvider.Tracer("t").Start(t.Context(), "written")
	span.End()
	if err := tel2.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	if s := out.String(); !strings.Contains(s, `"Name":"written"`) || strings.Contains(s, "never") {
		t.Errorf("console output %q, want the sampled span only", s)
	}
}

// TestSetupParentBased: the default sampler follows the parent's
// decision, so a message's trace is sampled on every node or on none.
func TestSetupParentBased(t *testing.T) {
	t.Parallel()
	exp := tracetest.NewInMemoryExporter()
	tel := setup(t, nil, tracing.Config{SpanExporter: exp})
	tr := tel.TracerProvider.Tracer("t")
	for _, tc := range []struct {
		traceparent string
		sampled     bool
	}{
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", true},
		{"00-4bf92f3577b34da6a3ce929d0e0e4737-00f067aa0ba902b7-00", false},
	} {
		ctx := tel.Propagator.Extract(t.Context(), propagation.MapCarrier{"traceparent": tc.traceparent})
		_, span := tr.Start(ctx, "child")
		if span.SpanContext().IsSampled() != tc.sampled || span.SpanContext().TraceID() != trace.SpanContextFromContext(ctx).TraceID() {
			t.Errorf("parent %s: child sampled %v trace %s", tc.traceparent, span.SpanContext().IsSampled(), span.SpanContext().TraceID())
		}
		span.End()
	}
	if n := len(exp.GetSpans()); n != 1 {
		t.Errorf("exported %d spans, want 1 (the sampled parent's child)", n)
	}
}

func TestSetupBadEnv(t *testing.T) {
	t.Parallel()
	for _, vars := range []map[string]string{
		{"OTEL_TRACES_EXPORTER": "jaeger"},
		{"OTEL_TRACES_EXPORTER": "otlp, none"},
		{"OTEL_METRICS_EXPORTER": "statsd"},
		{"OTEL_TRACES_SAMPLER": "jaeger_remote"},
		{"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "2"},
		{"OTEL_PROPAGATORS": "b3"},
		{"OTEL_RESOURCE_ATTRIBUTES": "novalue"},
		{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"},
		{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318"},
		{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_TIMEOUT": "soon"},
		{"OTEL_METRICS_EXPORTER": "otlp", "OTEL_METRIC_EXPORT_INTERVAL": "-1"},
	} {
		_, err := tracing.Setup(t.Context(), env(vars), tracing.Config{})
		if !errors.Is(err, tracing.ErrEnv) {
			t.Errorf("Setup(%v) = %v, want ErrEnv", vars, err)
			continue
		}
		named := false
		for k := range vars {
			named = named || strings.Contains(err.Error(), k+"=")
		}
		if !named {
			t.Errorf("Setup(%v): error %q names none of the variables", vars, err)
		}
	}
}

// TestSetupDefaultPropagator: with no OTEL_PROPAGATORS, the propagator
// reads and writes W3C trace context and baggage under their W3C names,
// the form a message carries in broker.Message.Trace and in the Redis
// relay envelope, as the default propagator of the other packages does.
func TestSetupDefaultPropagator(t *testing.T) {
	t.Parallel()
	p := setup(t, nil, tracing.Config{}).Propagator
	if got, want := slices.Sorted(slices.Values(p.Fields())), slices.Sorted(slices.Values(telemetry.W3C().Fields())); !slices.Equal(got, want) {
		t.Errorf("fields %v, want those of telemetry.W3C: %v", got, want)
	}
	// What it reads it writes back, trace state and baggage included
	// (internal/telemetry's TestW3C checks the propagator itself).
	in := propagation.MapCarrier{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"tracestate": "vendor=x", "baggage": "tenant=acme"}
	out := propagation.MapCarrier{}
	p.Inject(p.Extract(t.Context(), in), out)
	if !maps.Equal(out, in) {
		t.Errorf("injected %v, want %v", out, in)
	}
}

// traceReceiver is an OTLP gRPC trace and metrics receiver on loopback.
type traceReceiver struct {
	colltrace.UnimplementedTraceServiceServer
	traces  chan *colltrace.ExportTraceServiceRequest
	metrics chan *collmetrics.ExportMetricsServiceRequest
}

func (r *traceReceiver) Export(_ context.Context, req *colltrace.ExportTraceServiceRequest) (*colltrace.ExportTraceServiceResponse, error) {
	r.traces <- req
	return &colltrace.ExportTraceServiceResponse{}, nil
}

// metricsService adapts the receiver to the metrics service, whose
// method has the same name.
type metricsService struct {
	collmetrics.UnimplementedMetricsServiceServer
	r *traceReceiver
}

func (m metricsService) Export(_ context.Context, req *collmetrics.ExportMetricsServiceRequest) (*collmetrics.ExportMetricsServiceResponse, error) {
	m.r.metrics <- req
	return &collmetrics.ExportMetricsServiceResponse{}, nil
}

func startReceiver(t *testing.T) (*traceReceiver, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &traceReceiver{traces: make(chan *colltrace.ExportTraceServiceRequest, 16), metrics: make(chan *collmetrics.ExportMetricsServiceRequest, 16)}
	srv := grpc.NewServer()
	colltrace.RegisterTraceServiceServer(srv, r)
	collmetrics.RegisterMetricsServiceServer(srv, metricsService{r: r})
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-done
	})
	return r, "http://" + ln.Addr().String()
}

// TestOTLPGRPCExport sends spans and metrics over the wire to a real OTLP
// gRPC receiver: a TraceServiceServer and a MetricsServiceServer on a
// loopback listener.
func TestOTLPGRPCExport(t *testing.T) {
	t.Parallel()
	r, endpoint := startReceiver(t)
	tel, err := tracing.Setup(t.Context(), env(map[string]string{
		"OTEL_TRACES_EXPORTER":        "otlp",
		"OTEL_METRICS_EXPORTER":       "otlp",
		"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
		"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
		"OTEL_SERVICE_NAME":           "tidings-otlp-test",
	}), tracing.Config{InstanceID: "node-otlp"})
	if err != nil {
		t.Fatal(err)
	}
	if tel.Traces != "otlp grpc" || tel.Metrics != "prometheus,otlp grpc" {
		t.Errorf("Traces %q Metrics %q", tel.Traces, tel.Metrics)
	}
	_, span := tel.TracerProvider.Tracer("t").Start(t.Context(), "publish")
	want := span.SpanContext().TraceID()
	span.End()
	c, _ := tel.MeterProvider.Meter("t").Int64Counter("tidings.test.pushed")
	c.Add(t.Context(), 7)
	// Shutdown flushes the batch span processor and the periodic reader.
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := tel.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}

	var req *colltrace.ExportTraceServiceRequest
	select {
	case req = <-r.traces:
	case <-ctx.Done():
		t.Fatal("no spans reached the OTLP receiver")
	}
	rs := req.GetResourceSpans()
	if len(rs) != 1 || len(rs[0].GetScopeSpans()) != 1 || len(rs[0].GetScopeSpans()[0].GetSpans()) != 1 {
		t.Fatalf("received %v, want one span", req)
	}
	got := rs[0].GetScopeSpans()[0].GetSpans()[0]
	if got.GetName() != "publish" || !bytes.Equal(got.GetTraceId(), want[:]) {
		t.Errorf("received span %q trace %x, want publish in trace %s", got.GetName(), got.GetTraceId(), want)
	}
	if v := attr(rs[0].GetResource().GetAttributes(), "service.name"); v != "tidings-otlp-test" {
		t.Errorf("service.name %q", v)
	}
	if v := attr(rs[0].GetResource().GetAttributes(), "service.instance.id"); v != "node-otlp" {
		t.Errorf("service.instance.id %q", v)
	}

	select {
	case mreq := <-r.metrics:
		found := false
		for _, rm := range mreq.GetResourceMetrics() {
			for _, sm := range rm.GetScopeMetrics() {
				for _, m := range sm.GetMetrics() {
					if m.GetName() == "tidings.test.pushed" && m.GetSum().GetDataPoints()[0].GetAsInt() == 7 {
						found = true
					}
				}
			}
		}
		if !found {
			t.Errorf("pushed metrics lack tidings.test.pushed = 7: %v", mreq)
		}
	case <-ctx.Done():
		t.Fatal("no metrics reached the OTLP receiver")
	}
}

// TestOTLPHTTPExport sends spans with OTEL_EXPORTER_OTLP_PROTOCOL
// http/protobuf to a receiver that decodes the protobuf body.
func TestOTLPHTTPExport(t *testing.T) {
	t.Parallel()
	got := make(chan *colltrace.ExportTraceServiceRequest, 4)
	var paths sync.Map
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		paths.Store(r.URL.Path, true)
		body, _ := io.ReadAll(r.Body)
		req := &colltrace.ExportTraceServiceRequest{}
		if err := proto.Unmarshal(body, req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		got <- req
		w.Header().Set("Content-Type", "application/x-protobuf")
		out, _ := proto.Marshal(&colltrace.ExportTraceServiceResponse{})
		_, _ = w.Write(out)
	}))
	t.Cleanup(srv.Close)
	tel, err := tracing.Setup(t.Context(), env(map[string]string{
		"OTEL_TRACES_EXPORTER":        "otlp",
		"OTEL_METRICS_EXPORTER":       "none",
		"OTEL_EXPORTER_OTLP_ENDPOINT": srv.URL,
	}), tracing.Config{})
	if err != nil {
		t.Fatal(err)
	}
	_, span := tel.TracerProvider.Tracer("t").Start(t.Context(), "deliver")
	span.End()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := tel.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	select {
	case req := <-got:
		if n := req.GetResourceSpans()[0].GetScopeSpans()[0].GetSpans()[0].GetName(); n != "deliver" {
			t.Errorf("span %q, want deliver", n)
		}
	default:
		t.Fatal("no spans reached the OTLP/HTTP receiver")
	}
	if _, ok := paths.Load("/v1/traces"); !ok {
		t.Error("the exporter did not post to <endpoint>/v1/traces")
	}
}

func attr(kvs []*commonpb.KeyValue, key string) string {
	for _, kv := range kvs {
		if kv.GetKey() == key {
			return kv.GetValue().GetStringValue()
		}
	}
	return ""
}

// scrape parses the handler's Prometheus text with expfmt.
func scrape(t *testing.T, h http.Handler) map[string]*dtoFamily {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(rec.Body)
	if err != nil {
		t.Fatalf("parsing /metrics: %v", err)
	}
	return fams
}

func hasLabel(f *dtoFamily, name, value string) bool {
	for _, m := range f.GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == name && l.GetValue() == value {
				return true
			}
		}
	}
	return false
}

type dtoFamily = dto.MetricFamily
