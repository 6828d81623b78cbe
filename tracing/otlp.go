package tracing

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"time"

	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// otlpSettings are the OTEL_EXPORTER_OTLP_* settings of one signal.
type otlpSettings struct {
	protocol string // grpc or http/protobuf
	// endpoint is the URL or host:port to send to; signal says whether it
	// came from the signal's own variable (used as is) or the generic one
	// (a base URL that the HTTP exporter extends with /v1/<signal>).
	endpoint string
	signal   bool
	insecure bool
	headers  map[string]string
	timeout  time.Duration
}

// otlpFromEnv reads the settings for signal ("TRACES" or "METRICS"): the
// signal's variable wins over the generic one.
func otlpFromEnv(env envReader, signal string) (otlpSettings, error) {
	var s otlpSettings
	v := func(suffix string) (string, string) {
		return env.first("OTEL_EXPORTER_OTLP_"+signal+"_"+suffix, "OTEL_EXPORTER_OTLP_"+suffix)
	}
	proto, pname := v("PROTOCOL")
	switch strings.ToLower(proto) {
	case "", "http/protobuf":
		s.protocol = "http/protobuf"
	case "grpc":
		s.protocol = "grpc"
	default:
		return s, invalid(pname, proto, "want grpc or http/protobuf")
	}
	var ename string
	s.endpoint, ename = v("ENDPOINT")
	s.signal = ename == "OTEL_EXPORTER_OTLP_"+signal+"_ENDPOINT" && s.endpoint != ""
	if s.endpoint != "" && strings.Contains(s.endpoint, "://") {
		u, err := url.Parse(s.endpoint)
		if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
			return s, invalid(ename, s.endpoint, "want an http:// or https:// URL")
		}
	} else if s.endpoint != "" && s.protocol == "http/protobuf" {
		return s, invalid(ename, s.endpoint, "want an http:// or https:// URL")
	}
	if ins, name := v("INSECURE"); ins != "" {
		switch strings.ToLower(ins) {
		case "true":
			s.insecure = true
		case "false":
		default:
			return s, invalid(name, ins, "want true or false")
		}
	}
	if raw, name := v("HEADERS"); raw != "" {
		s.headers = map[string]string{}
		for _, pair := range strings.Split(raw, ",") {
			k, val, ok := strings.Cut(pair, "=")
			k = strings.TrimSpace(k)
			dv, err := url.PathUnescape(strings.TrimSpace(val))
			if !ok || k == "" || err != nil {
				return s, invalid(name, "(hidden)", "want key=value pairs separated by commas")
			}
			s.headers[k] = dv
		}
	}
	_, tname := v("TIMEOUT")
	var err error
	if s.timeout, err = env.millis(tname, 10*time.Second); err != nil {
		return s, err
	}
	return s, nil
}

// httpURL is the full URL of an HTTP exporter: a signal variable as is, a
// generic one extended with path (/v1/traces, /v1/metrics).
func (s otlpSettings) httpURL(path string) string {
	if s.signal {
		return s.endpoint
	}
	return strings.TrimSuffix(s.endpoint, "/") + path
}

// otlpOptions are the option constructors of one OTLP exporter package,
// so that one function turns the settings into options for each.
type otlpOptions[O any] struct {
	timeout     func(time.Duration) O
	endpointURL func(string) O
	endpoint    func(string) O // gRPC only: host:port without a scheme
	insecure    func() O
	headers     func(map[string]string) O
}

// options turns s into c's options. path is the signal's HTTP path, ""
// for gRPC (whose endpoint is a URL or a host:port).
func options[O any](s otlpSettings, c otlpOptions[O], path string) []O {
	opts := []O{c.timeout(s.timeout)}
	switch {
	case s.endpoint == "":
	case path != "":
		opts = append(opts, c.endpointURL(s.httpURL(path)))
	case strings.Contains(s.endpoint, "://"):
		opts = append(opts, c.endpointURL(s.endpoint))
	default:
		opts = append(opts, c.endpoint(s.endpoint))
	}
	if s.insecure {
		opts = append(opts, c.insecure())
	}
	if s.headers != nil {
		opts = append(opts, c.headers(s.headers))
	}
	return opts
}

// otlpExporter reads the settings of signal ("TRACES" or "METRICS") and
// builds its exporter with build; it returns the protocol too. what names
// the exporter in build's error.
func otlpExporter[E any](ctx context.Context, env envReader, signal, what string, build func(context.Context, otlpSettings) (E, error)) (E, string, error) {
	var none E
	s, err := otlpFromEnv(env, signal)
	if err != nil {
		return none, "", err
	}
	exp, err := build(ctx, s)
	if err != nil {
		return none, "", fmt.Errorf("tracing: OTLP %s exporter: %w", what, err)
	}
	return exp, s.protocol, nil
}

func otlpTraceExporter(ctx context.Context, env envReader) (sdktrace.SpanExporter, string, error) {
	return otlpExporter(ctx, env, "TRACES", "trace", func(ctx context.Context, s otlpSettings) (sdktrace.SpanExporter, error) {
		if s.protocol == "grpc" {
			return otlptracegrpc.New(ctx, options(s, otlpOptions[otlptracegrpc.Option]{otlptracegrpc.WithTimeout,
				otlptracegrpc.WithEndpointURL, otlptracegrpc.WithEndpoint, otlptracegrpc.WithInsecure, otlptracegrpc.WithHeaders}, "")...)
		}
		return otlptracehttp.New(ctx, options(s, otlpOptions[otlptracehttp.Option]{otlptracehttp.WithTimeout,
			otlptracehttp.WithEndpointURL, nil, otlptracehttp.WithInsecure, otlptracehttp.WithHeaders}, "/v1/traces")...)
	})
}

func otlpMetricExporter(ctx context.Context, env envReader) (sdkmetric.Exporter, string, error) {
	return otlpExporter(ctx, env, "METRICS", "metric", func(ctx context.Context, s otlpSettings) (sdkmetric.Exporter, error) {
		if s.protocol == "grpc" {
			return otlpmetricgrpc.New(ctx, options(s, otlpOptions[otlpmetricgrpc.Option]{otlpmetricgrpc.WithTimeout,
				otlpmetricgrpc.WithEndpointURL, otlpmetricgrpc.WithEndpoint, otlpmetricgrpc.WithInsecure, otlpmetricgrpc.WithHeaders}, "")...)
		}
		return otlpmetrichttp.New(ctx, options(s, otlpOptions[otlpmetrichttp.Option]{otlpmetrichttp.WithTimeout,
			otlpmetrichttp.WithEndpointURL, nil, otlpmetrichttp.WithInsecure, otlpmetrichttp.WithHeaders}, "/v1/metrics")...)
	})
}
