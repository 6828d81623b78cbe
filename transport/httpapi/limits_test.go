package httpapi_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/tidings-io/tidings/auth"
	"github.com/tidings-io/tidings/control/node"
	"github.com/tidings-io/tidings/transport/httpapi"
)

// SetLimits changes the largest body and the rate of the keys without a
// rate of their own at once; a key with its own rate keeps it.
func TestSetLimits(t *testing.T) {
	t.Parallel()
	keys := []auth.APIKey{{Name: "by-default", Secret: "key-by-default-01"}, {Name: "own", Secret: "key-own-rate-0001", Rate: 1000}}
	e := newEnv(t, httpapi.Config{APIKeys: keys, PublishRate: 1000})
	body := `{"topic":"a.b","data":"` + strings.Repeat("x", 100) + `"}`
	auth := func(secret string) []string {
		return []string{"Content-Type", "application/json", "Authorization", "Bearer " + secret}
	}
	wantResult(t, e.post(t, "/v1/publish", body, auth(keys[0].Secret)...))
	e.api.SetLimits(64, 1)
	small := `{"topic":"a.b","data":1}`
	wantResult(t, e.post(t, "/v1/publish", small, auth(keys[0].Secret)...))
	wantError(t, e.post(t, "/v1/publish", small, auth(keys[0].Secret)...), http.StatusTooManyRequests, "rate_limited")
	for range 3 {
		wantResult(t, e.post(t, "/v1/publish", small, auth(keys[1].Secret)...))
	}
	wantError(t, e.post(t, "/v1/publish", body, auth(keys[1].Secret)...), http.StatusRequestEntityTooLarge, "too_large")
	e.api.SetLimits(0, -1) // the default body size, no rate
	wantResult(t, e.post(t, "/v1/publish", body, auth(keys[0].Secret)...))
	for range 3 {
		wantResult(t, e.post(t, "/v1/publish", small, auth(keys[0].Secret)...))
	}
}

// GET /v1/info has a config member when Config.Settings is set: what it
// returns, as it is at each call.
func TestInfoShowsSettings(t *testing.T) {
	t.Parallel()
	b, ctl, wsrv := controlled(t, node.Config{ID: "n1"})
	calls := 0
	settings := func() any {
		calls++
		return map[string]any{"history-size": calls}
	}
	with := httpapi.New(httpapi.Config{Control: ctl, Settings: settings}, b, wsrv)
	without := httpapi.New(httpapi.Config{Control: ctl}, b, wsrv)
	info := func(api *httpapi.API) map[string]json.RawMessage {
		req := httptest.NewRequest(http.MethodGet, "/v1/info", nil)
		req.RemoteAddr = "127.0.0.1:1000"
		rec := httptest.NewRecorder()
		api.ServeHTTP(rec, req)
		var out map[string]json.RawMessage
		if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &out) != nil {
			t.Fatalf("GET /v1/info: %d %s", rec.Code, rec.Body)
		}
		return out
	}
	for i := 1; i <= 2; i++ {
		got := info(with)
		if string(got["config"]) != `{"history-size":`+string(rune('0'+i))+`}` || got["nodes"] == nil {
			t.Errorf("call %d: %v", i, got)
		}
	}
	if got := info(without); got["config"] != nil {
		t.Errorf("without Settings: config %s, want none", got["config"])
	}
}
