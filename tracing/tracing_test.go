package tracing_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/tidings-io/tidings/tracing"
	"go.opentelemetry.io/otel"
)

func TestNewLoggerLevels(t *testing.T) {
	t.Parallel()
	tests := []struct {
		level   string
		enabled []slog.Level // levels that must be written
		dropped []slog.Level // levels that must be filtered out
	}{
		{"debug", []slog.Level{slog.LevelDebug, slog.LevelInfo, slog.LevelWarn, slog.LevelError}, nil},
		{"info", []slog.Level{slog.LevelInfo, slog.LevelWarn, slog.LevelError}, []slog.Level{slog.LevelDebug}},
		{"warn", []slog.Level{slog.LevelWarn, slog.LevelError}, []slog.Level{slog.LevelDebug, slog.LevelInfo}},
		{"error", []slog.Level{slog.LevelError}, []slog.Level{slog.LevelDebug, slog.LevelInfo, slog.LevelWarn}},
		{"DEBUG", []slog.Level{slog.LevelDebug}, nil},
		{"Warn", []slog.Level{slog.LevelWarn}, []slog.Level{slog.LevelInfo}},
	}
	for _, tt := range tests {
		t.Run(tt.level, func(t *testing.T) {
			t.Parallel()
			var buf bytes.Buffer
			log, err := tracing.NewLogger(&buf, tt.level, "json")
			if err != nil {
				t.Fatalf("NewLogger(%q, json): %v", tt.level, err)
			}
			for _, l := range tt.enabled {
				buf.Reset()
				log.Log(t.Context(), l, "hello")
				if buf.Len() == 0 {
					t.Errorf("level %q: a %v record was dropped", tt.level, l)
				}
			}
			for _, l := range tt.dropped {
				buf.Reset()
				log.Log(t.Context(), l, "hello")
				if buf.Len() != 0 {
					t.Errorf("level %q: a %v record was written: %s", tt.level, l, buf.String())
				}
			}
		})
	}
}

func TestNewLoggerFormats(t *testing.T) {
	t.Parallel()
	tests := []struct {
		format string
		check  func(t *testing.T, out string)
	}{
		{"json", checkJSON},
		{"JSON", checkJSON},
		{"text", checkText},
		{"Text", checkText},
	}
	for _, tt := range tests {
		t.Run(tt.format, func(t *testing.T) {
			t.Parallel()
			var buf bytes.Buffer
			log, err := tracing.NewLogger(&buf, "info", tt.format)
			if err != nil {
				t.Fatalf("NewLogger(info, %q): %v", tt.format, err)
			}
			log.Info("hello", "topic", "a.b")
			tt.check(t, buf.String())
		})
	}
}

func checkJSON(t *testing.T, out string) {
	t.Helper()
	var rec map[string]any
	if err := json.Unmarshal([]byte(out), &rec); err != nil {
		t.Fatalf("output is not one JSON object: %v: %q", err, out)
	}
	if rec["msg"] != "hello" || rec["topic"] != "a.b" || rec["level"] != "INFO" {
		t.Errorf("unexpected record: %v", rec)
	}
}

func checkText(t *testing.T, out string) {
	t.Helper()
	for _, want := range []string{"level=INFO", "msg=hello", "topic=a.b"} {
		if !strings.Contains(out, want) {
			t.Errorf("text output %q lacks %q", out, want)
		}
	}
	if strings.HasPrefix(strings.TrimSpace(out), "{") {
		t.Errorf("text output looks like JSON: %q", out)
	}
}

func TestNewLoggerBadInput(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, level, format string
		want                error
		msg                 string
	}{
		{"unknown level", "verbose", "json", tracing.ErrLogLevel, `tracing: unknown log level "verbose"`},
		{"empty level", "", "json", tracing.ErrLogLevel, `tracing: unknown log level ""`},
		{"numeric level", "0", "text", tracing.ErrLogLevel, `tracing: unknown log level "0"`},
		{"level with space", " info", "json", tracing.ErrLogLevel, `tracing: unknown log level " info"`},
		{"unknown format", "info", "xml", tracing.ErrLogFormat, `tracing: unknown log format "xml"`},
		{"empty format", "info", "", tracing.ErrLogFormat, `tracing: unknown log format ""`},
		{"logfmt", "debug", "logfmt", tracing.ErrLogFormat, `tracing: unknown log format "logfmt"`},
		// Both wrong: the level is checked first.
		{"both bad", "loud", "yaml", tracing.ErrLogLevel, `tracing: unknown log level "loud"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var buf bytes.Buffer
			log, err := tracing.NewLogger(&buf, tt.level, tt.format)
			if err == nil {
				t.Fatalf("NewLogger(%q, %q) = nil error, want %v", tt.level, tt.format, tt.want)
			}
			if log != nil {
				t.Errorf("NewLogger(%q, %q) returned a logger with an error", tt.level, tt.format)
			}
			if !errors.Is(err, tt.want) {
				t.Errorf("error %v does not wrap %v", err, tt.want)
			}
			if err.Error() != tt.msg {
				t.Errorf("error = %q, want %q", err.Error(), tt.msg)
			}
			if buf.Len() != 0 {
				t.Errorf("wrote %q on error", buf.String())
			}
		})
	}
}

// An error the OpenTelemetry SDK reports comes out as a record of the
// broker's logger, in its format, not as a plain line on stderr.
func TestOTelErrorsAreLogRecords(t *testing.T) {
	var buf bytes.Buffer
	log, err := tracing.NewLogger(&buf, "info", "json")
	if err != nil {
		t.Fatal(err)
	}
	tracing.RouteOTelErrors(log)
	otel.Handle(errors.New("export failed: collector unreachable"))
	var rec struct{ Level, Msg, Err string }
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
		t.Fatalf("not one JSON record: %q: %v", buf.String(), err)
	}
	if rec.Level != "WARN" || rec.Msg != "opentelemetry" || rec.Err != "export failed: collector unreachable" {
		t.Errorf("record %+v", rec)
	}
}
