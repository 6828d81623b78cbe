package httpapi_test

import (
	"bufio"
	"bytes"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/tidings-io/tidings/transport/httpapi"
)

// sampleLine is one sample of the Prometheus text format.
var sampleLine = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?) (-?[0-9.eE+]+|NaN|[+-]Inf)$`)

// scrape reads /metrics and returns its samples by name and labels, after
// checking the format: every line a comment or a sample, every sample's
// family declared by # TYPE before it.
func scrape(t *testing.T, e *testEnv) map[string]float64 {
	t.Helper()
	r := e.do(t, "GET", "/metrics", nil)
	if r.status != http.StatusOK {
		t.Fatalf("/metrics: %d %s", r.status, r.body)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") || !strings.Contains(ct, "version=0.0.4") {
		t.Errorf("/metrics Content-Type %q, want the Prometheus text format", ct)
	}
	samples := map[string]float64{}
	typed := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(r.body))
	for sc.Scan() {
		line := sc.Text()
		if f := strings.Fields(line); len(f) >= 4 && f[0] == "#" && f[1] == "TYPE" {
			typed[f[2]] = f[3]
			continue
		}
		if strings.HasPrefix(line, "# HELP ") {
			continue
		}
		m := sampleLine.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("/metrics line %q is not in the text format", line)
		}
		name, _, _ := strings.Cut(m[1], "{")
		if typed[name] == "" {
			t.Errorf("/metrics sample %q has no # TYPE line before it", line)
		}
		if typed[name] == "counter" && !strings.HasSuffix(name, "_total") {
			t.Errorf("counter %s does not end in _total", name)
		}
		v, err := strconv.ParseFloat(m[2], 64)
		if err != nil {
			t.Fatalf("/metrics line %q: %v", line, err)
		}
		if _, dup := samples[m[1]]; dup {
			t.Errorf("/metrics repeats %s", m[1])
		}
		samples[m[1]] = v
	}
	return samples
}

// wantMetrics checks the samples named in want.
func wantMetrics(t *testing.T, got map[string]float64, want map[string]float64) {
	t.Helper()
	for name, w := range want {
		if g, ok := got[name]; !ok || g != w {
			t.Errorf("%s = %v (present %v), want %v", name, g, ok, w)
		}
	}
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	e := newEnv(t, httpapi.Config{})
	wantMetrics(t, scrape(t, e), map[string]float64{
		"tidings_sessions":                       0,
		`tidings_subscriptions{kind="exact"}`:    0,
		`tidings_subscriptions{kind="wildcard"}`: 0,
		"tidings_topics":                         0,
		"tidings_messages_published_total":       0,
		"tidings_messages_delivered_total":       0,
		"tidings_slow_consumers_total":           0,
	})

	c := e.dial(t)
	c.subscribe("m.a", "m.*")
	wantMetrics(t, scrape(t, e), map[string]float64{
		"tidings_sessions":                       1,
		`tidings_subscriptions{kind="exact"}`:    1,
		`tidings_subscriptions{kind="wildcard"}`: 1,
		"tidings_topics":                         1,
	})

	// Three messages on m.a reach two subscriptions each; one on m.b
	// reaches the wildcard only; one on n.a reaches nobody.
	wantResults(t, e.post(t, "/v1/publish/batch", `{"messages":[{"topic":"m.a","data":1},{"topic":"m.a","data":2},{"topic":"m.a","data":3}]}`))
	wantResult(t, e.post(t, "/v1/publish", `{"topic":"m.b","data":4}`))
	wantResult(t, e.post(t, "/v1/publish", `{"topic":"n.a","data":5}`))
	// A rejected publish counts nothing.
	wantError(t, e.post(t, "/v1/publish", `{"topic":"m.a"}`), http.StatusBadRequest, "bad_request")
	wantMetrics(t, scrape(t, e), map[string]float64{
		"tidings_messages_published_total": 5,
		"tidings_messages_delivered_total": 7,
	})
	for range 7 {
		c.message()
	}

	c.closeNormally()
	eventually(t, "the session to end", func() bool {
		m := scrape(t, e)
		return m["tidings_sessions"] == 0 && m[`tidings_close_sent_total{code="1000"}`] == 1
	})
	wantMetrics(t, scrape(t, e), map[string]float64{
		"tidings_sessions":                          0,
		`tidings_subscriptions{kind="exact"}`:       0,
		`tidings_subscriptions{kind="wildcard"}`:    0,
		"tidings_topics":                            0,
		"tidings_messages_published_total":          5,
		"tidings_messages_delivered_total":          7,
		`tidings_close_received_total{code="1000"}`: 1,
		`tidings_close_sent_total{code="1000"}`:     1,
	})
}

// TestMetricsNames: the families of issue 3 are all there.
func TestMetricsNames(t *testing.T) {
	t.Parallel()
	e := newEnv(t, httpapi.Config{})
	r := e.do(t, "GET", "/metrics", nil)
	for _, family := range []string{
		"tidings_sessions", "tidings_subscriptions", "tidings_topics",
		"tidings_messages_published_total", "tidings_messages_delivered_total",
		"tidings_slow_consumers_total", "tidings_close_sent_total", "tidings_close_received_total",
	} {
		if !bytes.Contains(r.body, []byte(fmt.Sprintf("# TYPE %s ", family))) {
			t.Errorf("/metrics has no %s family:\n%s", family, r.body)
		}
	}
}
