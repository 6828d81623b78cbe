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

func otlpTraceExporter(ctx context.Context, env envReader) (sdktrace.SpanExporter, string, error) {
	s, err := otlpFromEnv(env, "TRACES")
	if err != nil {
		return nil, "", err
	}
	var exp sdktrace.SpanExporter
	if s.protocol == "grpc" {
		opts := []otlptracegrpc.Option{otlptracegrpc.WithTimeout(s.timeout)}
		switch {
		case strings.Contains(s.endpoint, "://"):
			opts = append(opts, otlptracegrpc.WithEndpointURL(s.endpoint))
		case s.endpoint != "":
			opts = append(opts, otlptracegrpc.WithEndpoint(s.endpoint))
		}
		if s.insecure {
			opts = append(opts, otlptracegrpc.WithInsecure())
		}
		if s.headers != nil {
			opts = append(opts, otlptracegrpc.WithHeaders(s.headers))
		}
		exp, err = otlptracegrpc.New(ctx, opts...)
	} else {
		opts := []otlptracehttp.Option{otlptracehttp.WithTimeout(s.timeout)}
		if s.endpoint != "" {
			opts = append(opts, otlptracehttp.WithEndpointURL(s.httpURL("/v1/traces")))
		}
		if s.insecure {
			opts = append(opts, otlptracehttp.WithInsecure())
		}
		if s.headers != nil {
			opts = append(opts, otlptracehttp.WithHeaders(s.headers))
		}
		exp, err = otlptracehttp.New(ctx, opts...)
	}
	if err != nil {
		return nil, "", fmt.Errorf("tracing: OTLP trace exporter: %w", err)
	}
	return exp, s.protocol, nil
}

func otlpMetricExporter(ctx context.Context, env envReader) (sdkmetric.Exporter, string, error) {
	s, err := otlpFromEnv(env, "METRICS")
	if err != nil {
		return nil, "", err
	}
	var exp sdkmetric.Exporter
	if s.protocol == "grpc" {
		opts := []otlpmetricgrpc.Option{otlpmetricgrpc.WithTimeout(s.timeout)}
		switch {
		case strings.Contains(s.endpoint, "://"):
			opts = append(opts, otlpmetricgrpc.WithEndpointURL(s.endpoint))
		case s.endpoint != "":
			opts = append(opts, otlpmetricgrpc.WithEndpoint(s.endpoint))
		}
		if s.insecure {
			opts = append(opts, otlpmetricgrpc.WithInsecure())
		}
		if s.headers != nil {
			opts = append(opts, otlpmetricgrpc.WithHeaders(s.headers))
		}
		exp, err = otlpmetricgrpc.New(ctx, opts...)
	} else {
		opts := []otlpmetrichttp.Option{otlpmetrichttp.WithTimeout(s.timeout)}
		if s.endpoint != "" {
			opts = append(opts, otlpmetrichttp.WithEndpointURL(s.httpURL("/v1/metrics")))
		}
		if s.insecure {
			opts = append(opts, otlpmetrichttp.WithInsecure())
		}
		if s.headers != nil {
			opts = append(opts, otlpmetrichttp.WithHeaders(s.headers))
		}
		exp, err = otlpmetrichttp.New(ctx, opts...)
	}
	if err != nil {
		return nil, "", fmt.Errorf("tracing: OTLP metric exporter: %w", err)
	}
	return exp, s.protocol, nil
}
