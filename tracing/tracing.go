// Package tracing sets up the broker's observability: structured logging with
// log/slog, and OpenTelemetry traces, metrics and propagation configured from
// the standard OTEL_* environment variables (Setup), with the Prometheus
// handler behind /metrics. It is the only package besides
// cmd/broker that may import the OpenTelemetry SDK and exporters; every other
// package receives its *slog.Logger, tracer provider and meter provider from
// the caller and uses the OpenTelemetry API only.
package tracing

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"go.opentelemetry.io/otel"
)

// Sentinel errors returned by NewLogger, wrapped with the offending value.
var (
	// ErrLogLevel reports a level other than debug, info, warn or error.
	ErrLogLevel = errors.New("tracing: unknown log level")
	// ErrLogFormat reports a format other than json or text.
	ErrLogFormat = errors.New("tracing: unknown log format")
)

// NewLogger returns a logger that writes to w at the given level (debug, info,
// warn or error; case-insensitive) in the given format (json or text;
// case-insensitive). An unknown level or format returns an error that wraps
// ErrLogLevel or ErrLogFormat and names the value, for example
// `tracing: unknown log level "verbose"`.
func NewLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	lvl, err := parseLevel(level)
	if err != nil {
		return nil, err
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch strings.ToLower(format) {
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	default:
		return nil, fmt.Errorf("%w %q", ErrLogFormat, format)
	}
}

func parseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "debug":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "warn":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	default:
		return 0, fmt.Errorf("%w %q", ErrLogLevel, s)
	}
}

// RouteOTelErrors sends what the OpenTelemetry SDK and API report through
// their global error handler (a failed export, an instrument that could
// not be registered) to log, at warn level, instead of plain lines on
// stderr: every line the broker writes is in the chosen format. The
// handler is process-wide; the last call wins.
func RouteOTelErrors(log *slog.Logger) {
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		log.Warn("opentelemetry", "err", err)
	}))
}
