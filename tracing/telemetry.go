package tracing

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/attribute"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// ErrEnv is wrapped by every error Setup returns for an OTEL_* variable it
// cannot use; the message names the variable and its value.
var ErrEnv = errors.New("tracing: invalid OpenTelemetry setting")

// Config tunes Setup beyond the OTEL_* environment. A zero field means
// its default, which its comment states.
type Config struct {
	// ServiceVersion is the service.version resource attribute. Empty (the
	// default): the attribute is not set.
	ServiceVersion string
	// InstanceID is the service.instance.id resource attribute, the node
	// id. Empty (the default): the attribute is not set.
	InstanceID string
	// Console receives spans when OTEL_TRACES_EXPORTER lists console. Nil
	// means os.Stdout.
	Console io.Writer
	// SpanExporter, when set, replaces the exporters OTEL_TRACES_EXPORTER
	// names and receives each span as it ends (synchronously), whatever
	// OTEL_TRACES_EXPORTER says; the sampler still follows
	// OTEL_TRACES_SAMPLER. Tests pass tracetest's in-memory exporter.
	// Nil (the default): the exporters OTEL_TRACES_EXPORTER names.
	SpanExporter sdktrace.SpanExporter
}

// Telemetry is the OpenTelemetry setup of one node: what Setup built from
// the environment. Hand its providers to the packages' configs; a nil
// provider means that signal is off, which those packages treat as free.
type Telemetry struct {
	// TracerProvider is nil when tracing is off (OTEL_TRACES_EXPORTER=none,
	// the default).
	TracerProvider trace.TracerProvider
	// MeterProvider is nil when metrics are off (OTEL_METRICS_EXPORTER=none).
	MeterProvider metric.MeterProvider
	// Propagator reads and writes W3C trace context and baggage, as
	// OTEL_PROPAGATORS says (default tracecontext,baggage).
	Propagator propagation.TextMapPropagator
	// MetricsHandler serves the metrics, with the Go runtime and process
	// collectors, in the Prometheus text format; nil when metrics are off.
	MetricsHandler http.Handler
	// Traces and Metrics describe the exporters in use ("none", "otlp
	// grpc", "console", "prometheus", …), for the startup log line.
	Traces, Metrics string

	shutdown []func(context.Context) error
}

// Shutdown flushes pending spans and metrics and stops the exporters,
// within ctx. Call it once, after the node has stopped.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	var errs []error
	for i := len(t.shutdown) - 1; i >= 0; i-- {
		if err := t.shutdown[i](ctx); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Setup builds traces, metrics and propagation from the standard OTEL_*
// variables, read through getenv (os.Getenv in the broker, a map in
// tests):
//
//   - OTEL_TRACES_EXPORTER: otlp, console or none (default none: tracing
//     is off and TracerProvider is nil); a comma-separated list may name
//     both otlp and console.
//   - OTEL_METRICS_EXPORTER: prometheus (default), otlp or none. The
//     Prometheus handler serves /metrics unless the value is none; otlp
//     also pushes every OTEL_METRIC_EXPORT_INTERVAL (default 60000 ms).
//   - OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_PROTOCOL (grpc or
//     http/protobuf, default http/protobuf), OTEL_EXPORTER_OTLP_HEADERS,
//     OTEL_EXPORTER_OTLP_TIMEOUT, OTEL_EXPORTER_OTLP_INSECURE, and their
//     _TRACES_ and _METRICS_ variants.
//   - OTEL_SERVICE_NAME (default tidings), OTEL_RESOURCE_ATTRIBUTES.
//   - OTEL_TRACES_SAMPLER (default parentbased_always_on) and
//     OTEL_TRACES_SAMPLER_ARG.
//   - OTEL_PROPAGATORS: tracecontext, baggage or none (default
//     tracecontext,baggage).
//
// An unusable value returns an error wrapping ErrEnv. Nothing global is
// set: the providers are returned, not installed.
func Setup(ctx context.Context, getenv func(string) string, cfg Config) (*Telemetry, error) {
	if cfg.Console == nil {
		cfg.Console = os.Stdout
	}
	env := envReader{getenv}
	t := &Telemetry{}
	var err error
	if t.Propagator, err = propagatorFromEnv(env); err != nil {
		return nil, err
	}
	res, err := resourceFromEnv(ctx, env, cfg)
	if err != nil {
		return nil, err
	}
	if err := t.setupTraces(ctx, env, cfg, res); err != nil {
		_ = t.Shutdown(ctx)
		return nil, err
	}
	if err := t.setupMetrics(ctx, env, res); err != nil {
		_ = t.Shutdown(ctx)
		return nil, err
	}
	return t, nil
}

func (t *Telemetry) setupTraces(ctx context.Context, env envReader, cfg Config, res *resource.Resource) error {
	sampler, err := samplerFromEnv(env)
	if err != nil {
		return err
	}
	opts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res), sdktrace.WithSampler(sampler)}
	if cfg.SpanExporter != nil {
		t.Traces = "custom"
		opts = append(opts, sdktrace.WithSyncer(cfg.SpanExporter))
	} else {
		names, err := env.list("OTEL_TRACES_EXPORTER", "none", "otlp", "console", "none")
		if err != nil {
			return err
		}
		var used []string
		for _, name := range names {
			var exp sdktrace.SpanExporter
			switch name {
			case "otlp":
				var proto string
				if exp, proto, err = otlpTraceExporter(ctx, env); err != nil {
					return err
				}
				used = append(used, "otlp "+proto)
			case "console":
				exp, _ = stdouttrace.New(stdouttrace.WithWriter(cfg.Console))
				used = append(used, "console")
			}
			if exp != nil {
				opts = append(opts, sdktrace.WithBatcher(exp))
			}
		}
		if len(used) == 0 {
			t.Traces = "none"
			return nil
		}
		t.Traces = strings.Join(used, ",")
	}
	tp := sdktrace.NewTracerProvider(opts...)
	t.TracerProvider = tp
	t.shutdown = append(t.shutdown, tp.Shutdown)
	return nil
}

func (t *Telemetry) setupMetrics(ctx context.Context, env envReader, res *resource.Resource) error {
	names, err := env.list("OTEL_METRICS_EXPORTER", "prometheus", "prometheus", "otlp", "none")
	if err != nil {
		return err
	}
	push := false
	for _, n := range names {
		push = push || n == "otlp"
	}
	if !push && !contains(names, "prometheus") {
		t.Metrics = "none"
		return nil
	}
	// /metrics is one of the operations endpoints of the protocol, so the
	// Prometheus reader is there whenever metrics are on; otlp adds a push.
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	promReader, err := otelprom.New(otelprom.WithRegisterer(reg), otelprom.WithoutScopeInfo())
	if err != nil {
		return fmt.Errorf("tracing: Prometheus exporter: %w", err)
	}
	opts := []sdkmetric.Option{sdkmetric.WithResource(res), sdkmetric.WithReader(promReader)}
	t.Metrics = "prometheus"
	if push {
		exp, proto, err := otlpMetricExporter(ctx, env)
		if err != nil {
			return err
		}
		interval, err := env.millis("OTEL_METRIC_EXPORT_INTERVAL", 60*time.Second)
		if err != nil {
			return err
		}
		opts = append(opts, sdkmetric.WithReader(sdkmetric.NewPeriodicReader(exp, sdkmetric.WithInterval(interval))))
		t.Metrics += ",otlp " + proto
	}
	mp := sdkmetric.NewMeterProvider(opts...)
	t.MeterProvider = mp
	t.MetricsHandler = promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	t.shutdown = append(t.shutdown, mp.Shutdown)
	return nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// envReader reads OTEL_* variables through getenv.
type envReader struct{ getenv func(string) string }

func (e envReader) get(name string) string { return strings.TrimSpace(e.getenv(name)) }

// invalid is the ErrEnv error for variable name.
func invalid(name, value, want string) error {
	return fmt.Errorf("%w: %s=%q: %s", ErrEnv, name, value, want)
}

// list reads a comma-separated list of names from allowed, lower-cased,
// or def when the variable is empty. "none" alone means none.
func (e envReader) list(name, def string, allowed ...string) ([]string, error) {
	v := e.get(name)
	if v == "" {
		v = def
	}
	var out []string
	none := false
	for _, part := range strings.Split(v, ",") {
		p := strings.ToLower(strings.TrimSpace(part))
		switch {
		case !contains(allowed, p):
			return nil, invalid(name, v, "want one or more of "+strings.Join(allowed, ", "))
		case p == "none":
			none = true
		case !contains(out, p):
			out = append(out, p)
		}
	}
	if none && len(out) > 0 {
		return nil, invalid(name, v, "none cannot be combined with other values")
	}
	return out, nil
}

// millis reads a duration in milliseconds.
func (e envReader) millis(name string, def time.Duration) (time.Duration, error) {
	v := e.get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		return 0, invalid(name, v, "want a positive number of milliseconds")
	}
	return time.Duration(n) * time.Millisecond, nil
}

// first returns the first non-empty variable of names and its name.
func (e envReader) first(names ...string) (string, string) {
	for _, n := range names {
		if v := e.get(n); v != "" {
			return v, n
		}
	}
	return "", names[len(names)-1]
}

func propagatorFromEnv(env envReader) (propagation.TextMapPropagator, error) {
	names, err := env.list("OTEL_PROPAGATORS", "tracecontext,baggage", "tracecontext", "baggage", "none")
	if err != nil {
		return nil, err
	}
	var ps []propagation.TextMapPropagator
	for _, n := range names {
		switch n {
		case "tracecontext":
			ps = append(ps, propagation.TraceContext{})
		case "baggage":
			ps = append(ps, propagation.Baggage{})
		}
	}
	return propagation.NewCompositeTextMapPropagator(ps...), nil
}

// resourceFromEnv describes this process: service.name from
// OTEL_SERVICE_NAME (default tidings), OTEL_RESOURCE_ATTRIBUTES, the
// version and node id from cfg, and the SDK's own attributes.
func resourceFromEnv(ctx context.Context, env envReader, cfg Config) (*resource.Resource, error) {
	type kv struct{ k, v string }
	var attrs []kv
	if raw := env.get("OTEL_RESOURCE_ATTRIBUTES"); raw != "" {
		for _, pair := range strings.Split(raw, ",") {
			if strings.TrimSpace(pair) == "" {
				continue
			}
			k, v, ok := strings.Cut(pair, "=")
			k = strings.TrimSpace(k)
			if !ok || k == "" {
				return nil, invalid("OTEL_RESOURCE_ATTRIBUTES", raw, "want key=value pairs separated by commas")
			}
			dv, err := url.PathUnescape(strings.TrimSpace(v))
			if err != nil {
				return nil, invalid("OTEL_RESOURCE_ATTRIBUTES", raw, "a value is not percent-encoded correctly")
			}
			attrs = append(attrs, kv{k, dv})
		}
	}
	name := env.get("OTEL_SERVICE_NAME")
	if name == "" {
		name = "tidings"
		for _, a := range attrs {
			if a.k == string(semconv.ServiceNameKey) {
				name = a.v
			}
		}
	}
	kvs := make([]attribute.KeyValue, 0, len(attrs)+3)
	for _, a := range attrs {
		kvs = append(kvs, attribute.String(a.k, a.v))
	}
	kvs = append(kvs, semconv.ServiceName(name))
	if cfg.ServiceVersion != "" {
		kvs = append(kvs, semconv.ServiceVersion(cfg.ServiceVersion))
	}
	if cfg.InstanceID != "" {
		kvs = append(kvs, semconv.ServiceInstanceID(cfg.InstanceID))
	}
	return resource.New(ctx, resource.WithSchemaURL(semconv.SchemaURL), resource.WithTelemetrySDK(), resource.WithAttributes(kvs...))
}

// samplerFromEnv reads OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG.
// Every parent-based sampler honours the decision carried by an incoming
// traceparent, so a message's trace is sampled on every node or on none.
func samplerFromEnv(env envReader) (sdktrace.Sampler, error) {
	name := strings.ToLower(env.get("OTEL_TRACES_SAMPLER"))
	ratio := func() (float64, error) {
		raw := env.get("OTEL_TRACES_SAMPLER_ARG")
		if raw == "" {
			return 1, nil
		}
		r, err := strconv.ParseFloat(raw, 64)
		if err != nil || r < 0 || r > 1 {
			return 0, invalid("OTEL_TRACES_SAMPLER_ARG", raw, "want a ratio between 0 and 1")
		}
		return r, nil
	}
	switch name {
	case "", "parentbased_always_on":
		return sdktrace.ParentBased(sdktrace.AlwaysSample()), nil
	case "parentbased_always_off":
		return sdktrace.ParentBased(sdktrace.NeverSample()), nil
	case "always_on":
		return sdktrace.AlwaysSample(), nil
	case "always_off":
		return sdktrace.NeverSample(), nil
	case "traceidratio", "parentbased_traceidratio":
		r, err := ratio()
		if err != nil {
			return nil, err
		}
		if name == "traceidratio" {
			return sdktrace.TraceIDRatioBased(r), nil
		}
		return sdktrace.ParentBased(sdktrace.TraceIDRatioBased(r)), nil
	default:
		return nil, invalid("OTEL_TRACES_SAMPLER", name, "want always_on, always_off, traceidratio or their parentbased_ forms")
	}
}
