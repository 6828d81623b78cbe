package httpapi_test

import (
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/tidings-io/tidings/auth"
	"github.com/tidings-io/tidings/control/node"
	"github.com/tidings-io/tidings/transport/httpapi"
)

const adminKey = "admin-key-0123456789abcdef-0123"

// historyReply is the body of a GET /v1/history answer.
type historyReply struct {
	Topic     string `json:"topic"`
	Offset    uint64 `json:"offset"`
	Epoch     string `json:"epoch"`
	Recovered bool   `json:"recovered"`
	Messages  []struct {
		Type   string          `json:"type"`
		Topic  string          `json:"topic"`
		ID     string          `json:"id"`
		Offset uint64          `json:"offset"`
		Epoch  string          `json:"epoch"`
		Time   string          `json:"time"`
		Data   json.RawMessage `json:"data"`
	} `json:"messages"`
}

// GET /v1/history answers what was published, in offset order or
// reversed, after since or the last ones, at most limit; a stale epoch
// answers recovered false and nothing; bad parameters get 400.
func TestHistoryAPI(t *testing.T) {
	t.Parallel()
	e := newEnv(t, httpapi.Config{})
	var ids []string
	for i := 1; i <= 7; i++ {
		r := e.post(t, "/v1/publish", `{"topic":"h.t","data":{"n":`+strconv.Itoa(i)+`}}`)
		var m struct{ ID string }
		if r.status != http.StatusOK || json.Unmarshal(r.body, &m) != nil {
			t.Fatalf("publish %d: %d %s", i, r.status, r.body)
		}
		ids = append(ids, m.ID)
	}
	get := func(query string) historyReply {
		t.Helper()
		r := e.do(t, http.MethodGet, "/v1/history?"+query, nil)
		var h historyReply
		if r.status != http.StatusOK || json.Unmarshal(r.body, &h) != nil {
			t.Fatalf("history?%s: %d %s", query, r.status, r.body)
		}
		return h
	}
	offsets := func(h historyReply) []uint64 {
		var o []uint64
		for i, m := range h.Messages {
			if m.Type != "" || m.Topic != "h.t" || m.ID != ids[m.Offset-1] || m.Epoch != h.Epoch || m.Time == "" ||
				string(m.Data) != `{"n":`+strconv.FormatUint(m.Offset, 10)+`}` {
				t.Fatalf("message %d = %+v", i, m)
			}
			o = append(o, m.Offset)
		}
		return o
	}
	all := get("topic=h.t")
	if all.Topic != "h.t" || all.Offset != 7 || all.Epoch == "" || !all.Recovered || !slices.Equal(offsets(all), []uint64{1, 2, 3, 4, 5, 6, 7}) {
		t.Fatalf("all: %+v", all)
	}
	if h := get("topic=h.t&limit=3"); !slices.Equal(offsets(h), []uint64{5, 6, 7}) {
		t.Errorf("limit 3: %v, want the last three", offsets(h))
	}
	if h := get("topic=h.t&limit=2&reverse=true"); !slices.Equal(offsets(h), []uint64{7, 6}) {
		t.Errorf("limit 2 reversed: %v, want 7 6", offsets(h))
	}
	if h := get("topic=h.t&since=4&epoch=" + all.Epoch); !h.Recovered || !slices.Equal(offsets(h), []uint64{5, 6, 7}) {
		t.Errorf("since 4: %+v, want 5 6 7", h)
	}
	if h := get("topic=h.t&since=4&epoch=" + all.Epoch + "&limit=2"); !slices.Equal(offsets(h), []uint64{5, 6}) {
		t.Errorf("since 4, limit 2: %v, want 5 6", offsets(h))
	}
	if h := get("topic=h.t&since=4&epoch=stale"); h.Recovered || len(h.Messages) != 0 || h.Offset != 7 || h.Epoch != all.Epoch {
		t.Errorf("stale epoch: %+v, want recovered false, no messages, the current position", h)
	}
	if h := get("topic=h.none"); len(h.Messages) != 0 || h.Offset != 0 || !h.Recovered {
		t.Errorf("a topic never published to: %+v", h)
	}
	for _, q := range []string{"", "topic=a..b", "topic=a.*", "topic=h.t&limit=0", "topic=h.t&limit=1001", "topic=h.t&limit=x",
		"topic=h.t&since=1", "topic=h.t&epoch=e", "topic=h.t&since=-1&epoch=e", "topic=h.t&reverse=maybe"} {
		r := e.do(t, http.MethodGet, "/v1/history?"+q, nil)
		if r.status != http.StatusBadRequest || !strings.Contains(string(r.body), `"bad_request"`) {
			t.Errorf("history?%s: %d %s, want 400 bad_request", q, r.status, r.body)
		}
	}
	if r := e.post(t, "/v1/history?topic=h.t", ``); r.status != http.StatusMethodNotAllowed || r.header.Get("Allow") != http.MethodGet {
		t.Errorf("POST: %d, Allow %q", r.status, r.header.Get("Allow"))
	}
}

// The server API takes API keys marked admin; other keys get 403, a
// wrong one 401; with no key configured, loopback only.
func TestServerAPINeedsAnAdminKey(t *testing.T) {
	t.Parallel()
	e := newEnv(t, httpapi.Config{APIKeys: []auth.APIKey{
		{Name: "ops", Secret: opsKey},
		{Name: "root", Secret: adminKey, Admin: true},
	}})
	for _, tc := range []struct {
		header []string
		status int
		code   string
	}{
		{nil, http.StatusUnauthorized, "unauthorized"},
		{bearer("not-a-key-0123456789abcdef-0123"), http.StatusUnauthorized, "unauthorized"},
		{bearer(opsKey), http.StatusForbidden, "forbidden"},
		{bearer(adminKey), http.StatusOK, ""},
	} {
		r := e.do(t, http.MethodGet, "/v1/history?topic=x.y", nil, tc.header...)
		if r.status != tc.status || !strings.Contains(string(r.body), tc.code) {
			t.Errorf("%v: %d %s, want %d %s", tc.header, r.status, r.body, tc.status, tc.code)
		}
	}
	req, _ := http.NewRequest(http.MethodGet, "/v1/history?topic=x.y", nil)
	req.RemoteAddr = "203.0.113.5:1000"
	if r := newEnv(t, httpapi.Config{}).serve(req); r.status != http.StatusForbidden {
		t.Errorf("no key configured, a client not on loopback: %d %s, want 403", r.status, r.body)
	}
}

// Every call of the server API takes an admin key: none, a wrong one or a
// publisher's is refused before the call runs; with no key configured, a
// client not on loopback is refused.
func TestEveryServerAPICallNeedsAnAdminKey(t *testing.T) {
	t.Parallel()
	b, ctl, wsrv := controlled(t, node.Config{ID: "n1", Presence: true})
	keys := []auth.APIKey{{Name: "ops", Secret: opsKey}, {Name: "root", Secret: adminKey, Admin: true}}
	withKeys := httpapi.New(httpapi.Config{APIKeys: keys, Control: ctl}, b, wsrv)
	withoutKeys := httpapi.New(httpapi.Config{Control: ctl}, b, wsrv)
	calls := []struct{ method, path, body string }{
		{http.MethodGet, "/v1/history?topic=x.y", ""},
		{http.MethodGet, "/v1/presence?topic=x.y", ""},
		{http.MethodGet, "/v1/presence/stats?topic=x.y", ""},
		{http.MethodGet, "/v1/topics", ""},
		{http.MethodGet, "/v1/info", ""},
		{http.MethodPost, "/v1/disconnect", `{"user":"u"}`},
		{http.MethodPost, "/v1/unsubscribe", `{"user":"u","topic":"x.y"}`},
		{http.MethodPost, "/v1/subscribe", `{"user":"u","topic":"x.y"}`},
		{http.MethodPost, "/v1/revoke", `{"user":"u"}`},
	}
	for _, c := range calls {
		for _, tc := range []struct {
			header []string
			status int
		}{
			{nil, http.StatusUnauthorized},
			{bearer("not-a-key-0123456789abcdef-0123"), http.StatusUnauthorized},
			{bearer(opsKey), http.StatusForbidden},
			{bearer(adminKey), http.StatusOK},
		} {
			if w := serveJSON(withKeys, c.method, c.path, c.body, "127.0.0.1:1000", tc.header...); w.Code != tc.status {
				t.Errorf("%s %s with %v: %d %s, want %d", c.method, c.path, tc.header, w.Code, w.Body, tc.status)
			}
		}
		if w := serveJSON(withoutKeys, c.method, c.path, c.body, "203.0.113.5:1000"); w.Code != http.StatusForbidden {
			t.Errorf("%s %s, no key configured, not on loopback: %d %s, want 403", c.method, c.path, w.Code, w.Body)
		}
		if w := serveJSON(withoutKeys, c.method, c.path, c.body, "127.0.0.1:1000"); w.Code != http.StatusOK {
			t.Errorf("%s %s, no key configured, on loopback: %d %s, want 200", c.method, c.path, w.Code, w.Body)
		}
	}
}

// GET /v1/history gives each message's data byte for byte, as a
// `message` frame does: whitespace kept, <, > and & not escaped.
func TestHistoryAPIDataIsByteForByte(t *testing.T) {
	t.Parallel()
	e := newEnv(t, httpapi.Config{})
	const data = `{ "html" : "<b>a&amp;b</b>",  "n":[1e400, -0 ] }`
	if r := e.post(t, "/v1/publish", `{"topic":"raw.t","data":`+data+`}`); r.status != http.StatusOK {
		t.Fatalf("publish: %d %s", r.status, r.body)
	}
	r := e.do(t, http.MethodGet, "/v1/history?topic=raw.t", nil)
	if r.status != http.StatusOK || !strings.Contains(string(r.body), `"data":`+data+`}`) {
		t.Fatalf("history answered %d %s, want the data %s byte for byte", r.status, r.body, data)
	}
}
