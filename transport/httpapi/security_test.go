package httpapi_test

import (
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tidings-io/tidings/auth"
	"github.com/tidings-io/tidings/broker"
	"github.com/tidings-io/tidings/limit"
	"github.com/tidings-io/tidings/transport/httpapi"
)

const (
	billingKey = "billing-secret-0001"
	opsKey     = "ops-secret-00000001"
	slowKey    = "slow-secret-0000001"
)

// scopedEnv has three keys: billing may publish to billing.> and
// audit.billing only, ops anywhere, slow anywhere at a tenth of a publish
// per second (its burst, one, is all a test sees).
func scopedEnv(t *testing.T) *testEnv {
	return newEnv(t, httpapi.Config{APIKeys: []auth.APIKey{
		{Name: "billing", Secret: billingKey, Topics: []string{"billing.>", "audit.billing"}},
		{Name: "ops", Secret: opsKey},
		{Name: "slow", Secret: slowKey, Rate: 0.1},
	}})
}

func bearer(key string) []string { return []string{"Authorization", "Bearer " + key} }

func TestScopedAPIKeys(t *testing.T) {
	t.Parallel()
	e := scopedEnv(t)
	tests := []struct {
		key, path, body string
		status          int
	}{
		{billingKey, "/v1/publish", `{"topic":"billing.invoice.42","data":1}`, 200},
		{billingKey, "/v1/publish", `{"topic":"audit.billing","data":1}`, 200},
		{billingKey, "/v1/publish", `{"topic":"audit.ops","data":1}`, 403},
		{billingKey, "/v1/publish", `{"topic":"billing","data":1}`, 403},
		{billingKey, "/v1/publish/batch", `{"messages":[{"topic":"billing.a","data":1},{"topic":"billing.b","data":2}]}`, 200},
		// One message out of scope refuses the whole batch.
		{billingKey, "/v1/publish/batch", `{"messages":[{"topic":"billing.a","data":1},{"topic":"news.x","data":2}]}`, 403},
		// A bad topic is still a bad request, not forbidden.
		{billingKey, "/v1/publish", `{"topic":"billing..x","data":1}`, 400},
		{opsKey, "/v1/publish", `{"topic":"news.x","data":1}`, 200},
	}
	forbidden := 0
	for _, tc := range tests {
		r := e.post(t, tc.path, tc.body, bearer(tc.key)...)
		switch tc.status {
		case 200:
			if r.status != 200 {
				t.Errorf("%s %s: %d %s, want 200", tc.path, tc.body, r.status, r.body)
			}
		case 403:
			forbidden++
			if err := checkError(r, 403, "forbidden"); err != nil {
				t.Errorf("%s %s: %v", tc.path, tc.body, err)
			}
		default:
			if err := checkError(r, tc.status, "bad_request"); err != nil {
				t.Errorf("%s %s: %v", tc.path, tc.body, err)
			}
		}
	}
	if got := e.api.Stats().Refused[limit.ReasonHTTPScope]; got != uint64(forbidden) {
		t.Errorf("refused[%s] = %d, want %d", limit.ReasonHTTPScope, got, forbidden)
	}
	// Four accepted publishes of five messages; nothing of the refused ones.
	if got := e.b.Stats().Published; got != 5 {
		t.Errorf("published %d messages, want 5", got)
	}
}

func TestPublishRatePerKey(t *testing.T) {
	t.Parallel()
	e := scopedEnv(t)
	body := `{"topic":"rate.t","data":1}`
	if r := e.post(t, "/v1/publish", body, bearer(slowKey)...); r.status != 200 {
		t.Fatalf("first publish: %d %s", r.status, r.body)
	}
	r := e.post(t, "/v1/publish", body, bearer(slowKey)...)
	if err := checkError(r, http.StatusTooManyRequests, "rate_limited"); err != nil {
		t.Fatal(err)
	}
	ra, err := strconv.Atoi(r.header.Get("Retry-After"))
	if err != nil || ra < 1 || ra > 10 {
		t.Errorf("Retry-After %q, want whole seconds between 1 and 10 (a tenth per second)", r.header.Get("Retry-After"))
	}
	if !strings.Contains(string(r.body), "slow") {
		t.Errorf("body %s, want it to name the key", r.body)
	}
	// Another key has its own rate.
	if r := e.post(t, "/v1/publish", body, bearer(opsKey)...); r.status != 200 {
		t.Fatalf("another key: %d %s", r.status, r.body)
	}
	if got := e.api.Stats().Refused[limit.ReasonHTTPRate]; got != 1 {
		t.Errorf("refused[%s] = %d, want 1", limit.ReasonHTTPRate, got)
	}
	if got := e.b.Stats().Published; got != 2 {
		t.Errorf("published %d, want 2", got)
	}
}

func TestRefusedKeysAndLoopbackAreCounted(t *testing.T) {
	t.Parallel()
	e := scopedEnv(t)
	if err := checkError(e.post(t, "/v1/publish", `{"topic":"a.b","data":1}`, bearer("not-a-key-at-all")...), 401, "unauthorized"); err != nil {
		t.Fatal(err)
	}
	if got := e.api.Stats().Refused[limit.ReasonHTTPKey]; got != 1 {
		t.Errorf("refused[%s] = %d, want 1", limit.ReasonHTTPKey, got)
	}
	open := newEnv(t, httpapi.Config{})
	req := httptest.NewRequest(http.MethodPost, "/v1/publish", strings.NewReader(`{"topic":"a.b","data":1}`))
	req.RemoteAddr = "203.0.113.1:1000"
	req.Header.Set("Content-Type", "application/json")
	if err := checkError(open.serve(req), 403, "forbidden"); err != nil {
		t.Fatal(err)
	}
	if got := open.api.Stats().Refused[limit.ReasonHTTPLoopback]; got != 1 {
		t.Errorf("refused[%s] = %d, want 1", limit.ReasonHTTPLoopback, got)
	}
}

// TestLoopbackRuleFollowsTrustedProxies: behind a reverse proxy on the
// same host, the loopback rule applies to the client, not the proxy, and
// a forwarded client is never loopback: only a direct peer is.
func TestLoopbackRuleFollowsTrustedProxies(t *testing.T) {
	t.Parallel()
	e := newEnv(t, httpapi.Config{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	for _, tc := range []struct {
		remote, xff string
		status      int
	}{
		{"127.0.0.1:1000", "", 200},
		{"127.0.0.1:1000", "203.0.113.7", 403},
		{"127.0.0.1:1000", "203.0.113.7, 127.0.0.1", 403},
		{"127.0.0.1:1000", "127.0.0.5", 403},   // forwarded: not the peer itself
		{"203.0.113.9:1000", "127.0.0.1", 403}, // an untrusted peer cannot claim loopback
		// A hop the proxy could not name makes the client unknown, not
		// the proxy on loopback.
		{"127.0.0.1:1000", "unknown", 403},
		{"127.0.0.1:1000", "unix:", 403},
		{"127.0.0.1:1000", "203.0.113.7, garbage, 127.0.0.2", 403},
		{"127.0.0.1:1000", ",", 403},
	} {
		req := httptest.NewRequest(http.MethodPost, "/v1/publish", strings.NewReader(`{"topic":"px.t","data":1}`))
		req.RemoteAddr = tc.remote
		req.Header.Set("Content-Type", "application/json")
		if tc.xff != "" {
			req.Header.Set("X-Forwarded-For", tc.xff)
		}
		r := e.serve(req)
		if r.status != tc.status {
			t.Errorf("from %s via %q: %d %s, want %d", tc.remote, tc.xff, r.status, r.body, tc.status)
		}
	}
}

// TestRefusalsAreExportedAsMetrics: the refusals of the publish API and
// of the WebSocket server reach /metrics as tidings_refused_total by
// reason.
func TestRefusalsAreExportedAsMetrics(t *testing.T) {
	t.Parallel()
	e, _ := newObservedEnv(t, nil, broker.Config{}, httpapi.Config{APIKeys: []auth.APIKey{
		{Name: "billing", Secret: billingKey, Topics: []string{"billing.>"}},
	}})
	e.post(t, "/v1/publish", `{"topic":"news.x","data":1}`, bearer(billingKey)...)
	e.post(t, "/v1/publish", `{"topic":"news.x","data":1}`, bearer("not-a-key-at-all")...)
	req, err := http.NewRequest(http.MethodGet, e.srv.URL+"/v1/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Origin", "https://evil.example")
	resp, err := e.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("upgrade from a foreign origin: %d, want 403", resp.StatusCode)
	}
	m := scrape(t, e)
	for reason, want := range map[limit.Reason]float64{
		limit.ReasonHTTPScope: 1, limit.ReasonHTTPKey: 1, limit.ReasonHTTPRate: 0, limit.ReasonHTTPLoopback: 0, limit.ReasonHTTPKeyFailures: 0,
		limit.ReasonOrigin: 1, limit.ReasonToken: 0, limit.ReasonOpRate: 0,
	} {
		if got, ok := m.value("tidings_refused_total", "reason="+reason.String()); !ok || got != want {
			t.Errorf("tidings_refused_total{reason=%q} = %v (present %v), want %v", reason, got, ok, want)
		}
	}
}

// from returns a copy of e whose requests come from the loopback address
// ip (127.0.0.2, 127.0.0.3, …): another client address on this host.
func (e *testEnv) from(t testing.TB, ip string) *testEnv {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	tr := &http.Transport{DialContext: d.DialContext, DisableCompression: true}
	t.Cleanup(tr.CloseIdleConnections)
	c := *e
	c.hc = &http.Client{Transport: tr, Timeout: 20 * time.Second}
	return &c
}

// TestFailedAPIKeysAreThrottledPerAddress: an address that keeps sending
// wrong API keys is soon answered 429 rate_limited with Retry-After, for
// every key, and the refusals are counted; another address, with a valid
// key or a wrong one, is not affected.
func TestFailedAPIKeysAreThrottledPerAddress(t *testing.T) {
	t.Parallel()
	e := scopedEnv(t)
	body := `{"topic":"guess.t","data":1}`
	const most = 1000
	failures := 0
	var r reply
	for ; failures < most; failures++ {
		r = e.post(t, "/v1/publish", body, bearer("guess-"+strconv.Itoa(failures))...)
		if r.status != http.StatusUnauthorized {
			break
		}
	}
	if failures == most {
		t.Fatalf("%d wrong API keys from one address were all answered 401, want 429 rate_limited after a few", most)
	}
	if err := checkError(r, http.StatusTooManyRequests, "rate_limited"); err != nil {
		t.Fatalf("after %d wrong keys: %v", failures, err)
	}
	if failures > 20 {
		t.Errorf("%d wrong keys before the first 429, want at most 20", failures)
	}
	if ra, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || ra < 1 {
		t.Errorf("Retry-After %q, want whole seconds ≥ 1", r.header.Get("Retry-After"))
	}
	// While throttled the address learns nothing of its keys, good or bad.
	if err := checkError(e.post(t, "/v1/publish", body, bearer(opsKey)...), http.StatusTooManyRequests, "rate_limited"); err != nil {
		t.Errorf("a valid key from the throttled address: %v", err)
	}
	if got := e.api.Stats().Refused[limit.ReasonHTTPKey]; got != uint64(failures) {
		t.Errorf("refused[%s] = %d, want %d", limit.ReasonHTTPKey, got, failures)
	}
	if got := e.api.Stats().Refused[limit.ReasonHTTPKeyFailures]; got != 2 {
		t.Errorf("refused[%s] = %d, want 2", limit.ReasonHTTPKeyFailures, got)
	}

	other := e.from(t, "127.0.0.2")
	if r := other.post(t, "/v1/publish", body, bearer(opsKey)...); r.status != http.StatusOK {
		t.Errorf("a valid key from another address: %d %s, want 200", r.status, r.body)
	}
	if err := checkError(other.post(t, "/v1/publish", body, bearer("guess-other")...), http.StatusUnauthorized, "unauthorized"); err != nil {
		t.Errorf("a wrong key from another address: %v", err)
	}
	if got := e.b.Stats().Published; got != 1 {
		t.Errorf("published %d, want 1", got)
	}
}
