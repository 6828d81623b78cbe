package ws_test

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/tidings-io/tidings/broker"
	"github.com/tidings-io/tidings/internal/testkit"
	wsserver "github.com/tidings-io/tidings/transport/ws"
)

// logRecords is a JSON log sink safe for concurrent writers.
type logRecords struct {
	testkit.Buffer
}

// all returns every record written so far.
func (l *logRecords) all(t testing.TB) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(l.String()), "\n") {
		if line == "" {
			continue
		}
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		out = append(out, rec)
	}
	return out
}

// find returns the records with msg whose session is id.
func (l *logRecords) find(t testing.TB, msg, id string) []map[string]any {
	var out []map[string]any
	for _, r := range l.all(t) {
		if r["msg"] == msg && r["session"] == id {
			out = append(out, r)
		}
	}
	return out
}

// wantOne returns nil if there is exactly one record with msg whose
// session is id, and otherwise an error that says how many there are.
func (l *logRecords) wantOne(t testing.TB, msg, id string) error {
	t.Helper()
	if n := len(l.find(t, msg, id)); n != 1 {
		return fmt.Errorf("%d %q records of session %s, want 1", n, msg, id)
	}
	return nil
}

// TestSessionEventLogs: every session event (open, close, slow consumer)
// carries session, node, remote and, when the upgrade had a traceparent,
// its trace id; the close says code and reason; messages are not logged
// at info level.
func TestSessionEventLogs(t *testing.T) {
	t.Parallel()
	logs := &logRecords{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	h := newHarness(t, config{
		ws:     wsserver.Config{NodeID: "node-log", Logger: log, WriteTimeout: time.Second},
		broker: broker.Config{QueueSize: 8},
	})
	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	traced := h.dialWith(t, ws.Dialer{Timeout: ioTimeout,
		Header: ws.HandshakeHeaderHTTP(http.Header{"Traceparent": {"00-" + traceID + "-00f067aa0ba902b7-01"}})})
	w := traced.expect("welcome")
	traced.subscribe("log.a")
	for i := 0; i < 20; i++ {
		h.mustPublish(t, "log.a", `{"i":1}`)
		traced.expect("message")
	}
	traced.sendClose(closeBody(4000, "done here"))
	traced.expectClose(4000, "")
	testkit.Eventually(t, waitTimeout, func() error { return logs.wantOne(t, "session closed", w.Session) })

	wantFields := func(rec map[string]any, fields map[string]any) {
		t.Helper()
		for k, v := range fields {
			if rec[k] != v {
				t.Errorf("%s record: %s = %v, want %v (%v)", rec["msg"], k, rec[k], v, rec)
			}
		}
		if r, _ := rec["remote"].(string); !strings.HasPrefix(r, "127.0.0.1:") {
			t.Errorf("%s record: remote %v", rec["msg"], rec["remote"])
		}
	}
	common := map[string]any{"session": w.Session, "node": "node-log", "trace_id": traceID}
	open := logs.find(t, "session open", w.Session)
	if len(open) != 1 {
		t.Fatalf("%d session open records", len(open))
	}
	wantFields(open[0], common)
	closed := logs.find(t, "session closed", w.Session)[0]
	wantFields(closed, common)
	wantFields(closed, map[string]any{"level": "INFO", "code": float64(4000), "reason": "client", "detail": "done here"})

	// A slow consumer, with no traceparent: no trace_id.
	slow, sw := h.dialWelcome(t)
	slow.subscribe("log.slow")
	data := `"` + strings.Repeat("x", 32<<10) + `"`
	for i := 0; h.b.Stats().SlowConsumers == 0; i++ {
		if i == 5000 {
			t.Fatal("no slow consumer after 5000 messages")
		}
		h.mustPublish(t, "log.slow", data)
	}
	testkit.Eventually(t, waitTimeout, func() error { return logs.wantOne(t, "session closed", sw.Session) })
	sl := logs.find(t, "slow consumer", sw.Session)
	if len(sl) != 1 {
		t.Fatalf("%d slow consumer records", len(sl))
	}
	wantFields(sl[0], map[string]any{"session": sw.Session, "node": "node-log", "level": "WARN"})
	closed = logs.find(t, "session closed", sw.Session)[0]
	wantFields(closed, map[string]any{"code": float64(1008), "reason": "slow_consumer"})
	if _, ok := closed["trace_id"]; ok {
		t.Errorf("a session without traceparent logged trace_id %v", closed["trace_id"])
	}

	// Hundreds of messages, and no record at info or above but the
	// session events.
	for _, rec := range logs.all(t) {
		if lvl := rec["level"]; lvl == "DEBUG" {
			continue
		}
		switch rec["msg"] {
		case "session closed", "slow consumer":
		default:
			t.Errorf("unexpected %v record: %v", rec["level"], rec)
		}
	}
}
