package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tidings-io/tidings/broker"
	"github.com/tidings-io/tidings/internal/testkit"
	"github.com/tidings-io/tidings/store/redis"
	"github.com/tidings-io/tidings/tracing"
	"github.com/tidings-io/tidings/transport/httpapi"
	"github.com/tidings-io/tidings/transport/ws"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// node is one broker node: its own Redis store, broker, WebSocket server
// and HTTP API behind a real listener.
type node struct {
	store *redis.Store
	b     *broker.Broker
	ws    *ws.Server
	api   *httpapi.API
	srv   *httptest.Server
	// WS is the node's ws:// endpoint; HTTP its base URL.
	WS, HTTP string
	// closeControl, when set, closes the node's control plane before its
	// store.
	closeControl func()
	stopped      bool
}

// startNode starts a node on cfg; it is stopped at cleanup.
func startNode(t *testing.T, cfg redis.Config, id string) *node {
	t.Helper()
	return startObservedNode(t, cfg, id, &tracing.Telemetry{})
}

// startObservedNode starts a node whose packages get tel's providers and
// whose /metrics is tel's handler, as cmd/broker wires them.
func startObservedNode(t *testing.T, cfg redis.Config, id string, tel *tracing.Telemetry) *node {
	t.Helper()
	cfg.MeterProvider = tel.MeterProvider
	st, err := redis.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	b := broker.New(broker.Config{QueueSize: 100000, QueueBytes: 1 << 28,
		TracerProvider: tel.TracerProvider, MeterProvider: tel.MeterProvider, Propagator: tel.Propagator}, st, ws.Encoder{})
	wsrv := ws.New(ws.Config{NodeID: id, CloseTimeout: 2 * time.Second,
		TracerProvider: tel.TracerProvider, MeterProvider: tel.MeterProvider, Propagator: tel.Propagator}, b)
	api := httpapi.New(httpapi.Config{Ready: st.Healthy, Metrics: tel.MetricsHandler,
		TracerProvider: tel.TracerProvider, MeterProvider: tel.MeterProvider, Propagator: tel.Propagator}, b, wsrv)
	srv := httptest.NewServer(api)
	n := &node{store: st, b: b, ws: wsrv, api: api, srv: srv,
		WS: "ws" + strings.TrimPrefix(srv.URL, "http") + "/v1/ws", HTTP: srv.URL}
	t.Cleanup(n.stop)
	testkit.Eventually(t, 10*time.Second, st.Healthy)
	return n
}

// stop shuts the node down gracefully, as cmd/broker does.
func (n *node) stop() {
	if n.stopped {
		return
	}
	n.stopped = true
	n.api.BeginShutdown()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n.srv.Config.SetKeepAlivesEnabled(false)
	_ = n.ws.Shutdown(ctx)
	n.srv.Close()
	if n.closeControl != nil {
		n.closeControl()
	}
	_ = n.store.Close()
}

// publishResult is the answer of POST /v1/publish.
type publishResult struct {
	Status int
	ID     string `json:"id"`
	Offset uint64 `json:"offset"`
	Epoch  string `json:"epoch"`
	Body   string
}

// err returns nil if the publish was accepted, and otherwise an error
// with the node's answer.
func (r publishResult) err() error {
	if r.Status != http.StatusOK {
		return fmt.Errorf("publish answered %d %s", r.Status, strings.TrimSpace(r.Body))
	}
	return nil
}

// publish posts one message to the node.
func (n *node) publish(t *testing.T, topic string, data any) publishResult {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"topic": topic, "data": data})
	resp, err := http.Post(n.HTTP+"/v1/publish", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatalf("publish: %v", err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	r := publishResult{Status: resp.StatusCode, Body: string(raw)}
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(raw, &r); err != nil {
			t.Fatalf("publish answer %s: %v", raw, err)
		}
	}
	return r
}

// mustPublish publishes and fails the test unless it is accepted.
func (n *node) mustPublish(t *testing.T, topic string, data any) publishResult {
	t.Helper()
	r := n.publish(t, topic, data)
	if r.Status != http.StatusOK {
		t.Fatalf("publish %s: %d %s", topic, r.Status, r.Body)
	}
	return r
}

// readyz returns the node's /readyz status and body.
func (n *node) readyz(t *testing.T) (int, string) {
	t.Helper()
	resp, err := http.Get(n.HTTP + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(raw)
}

// wantReadyz returns nil if the node's /readyz answers status with a body
// that mentions mention (anything, if it is empty), and otherwise an error
// that says what it answered: a condition for testkit.Eventually.
func (n *node) wantReadyz(t *testing.T, status int, mention string) error {
	t.Helper()
	code, body := n.readyz(t)
	switch {
	case code != status:
		return fmt.Errorf("/readyz answered %d %s, want %d", code, strings.TrimSpace(body), status)
	case !strings.Contains(body, mention):
		return fmt.Errorf("/readyz answered %d %s, want it to mention %q", code, strings.TrimSpace(body), mention)
	}
	return nil
}

func topicFor(t *testing.T, suffix string) string {
	name := strings.NewReplacer("/", ".", "_", "-").Replace(t.Name())
	return fmt.Sprintf("e2e.%s.%s", name, suffix)
}
