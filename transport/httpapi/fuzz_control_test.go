package httpapi_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tidings-io/tidings/control/node"
	"github.com/tidings-io/tidings/transport/httpapi"
)

// FuzzControlBody posts arbitrary bodies to the server API's actions.
// Whatever the body: no panic, no 5xx, a JSON object as the answer, `{}`
// for a 200 and an error with a code and a message otherwise.
func FuzzControlBody(f *testing.F) {
	paths := []string{"/v1/disconnect", "/v1/unsubscribe", "/v1/subscribe", "/v1/revoke"}
	for _, seed := range []string{
		`{"user":"u"}`, `{"session":"s","code":4500,"reason":"bye"}`, `{"user":"u","code":99999}`,
		`{"user":"u","topic":"a.b"}`, `{"session":"s","topic":"a.*","since":{"offset":1,"epoch":"e"}}`,
		`{"jti":"j","until":"2030-01-01T00:00:00Z"}`, `{"user":"u","until":"not a time"}`,
		`{"user":"u","extra":1}`, `{"user":1}`, `[]`, `null`, ``, `{"user":"u"}{}`,
		`{"user":"u","reason":"` + strings.Repeat("r", 200) + `"}`, strings.Repeat("{", 10000),
		"{\"user\":\"\xff\"}",
	} {
		for i := range paths {
			f.Add([]byte(seed), uint8(i))
		}
	}
	b, ctl, wsrv := controlled(f, node.Config{ID: "fuzz", AckTimeout: time.Second})
	api := httpapi.New(httpapi.Config{Control: ctl}, b, wsrv)
	f.Fuzz(func(t *testing.T, body []byte, which uint8) {
		path := paths[int(which)%len(paths)]
		req := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
		req.RemoteAddr = "127.0.0.1:40000"
		req.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		api.ServeHTTP(w, req)
		if w.Code >= 500 {
			t.Fatalf("%s %q: %d %s", path, body, w.Code, w.Body)
		}
		var answer map[string]json.RawMessage
		if err := json.Unmarshal(w.Body.Bytes(), &answer); err != nil {
			t.Fatalf("%s %q: answer %q is not a JSON object", path, body, w.Body)
		}
		if w.Code == http.StatusOK {
			if len(answer) != 0 {
				t.Fatalf("%s %q: 200 with %s, want {}", path, body, w.Body)
			}
			return
		}
		var e struct {
			Error struct{ Code, Message string }
		}
		if json.Unmarshal(w.Body.Bytes(), &e) != nil || e.Error.Code == "" || e.Error.Message == "" {
			t.Fatalf("%s %q: %d %s, want an error with a code and a message", path, body, w.Code, w.Body)
		}
	})
}
