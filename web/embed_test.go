package web_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/tidings-io/tidings/web"
)

func get(t *testing.T, h http.Handler, method, path string, hdr map[string]string) *http.Response {
	t.Helper()
	r := httptest.NewRequest(method, path, nil)
	for k, v := range hdr {
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w.Result()
}

func TestClientHandler(t *testing.T) {
	t.Parallel()
	h := web.ClientHandler()
	want, err := os.ReadFile("tidings.js")
	if err != nil {
		t.Fatal(err)
	}

	res := get(t, h, http.MethodGet, "/v1/client.js", nil)
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK || string(body) != string(want) {
		t.Fatalf("GET: status %d, %d bytes; want 200 and tidings.js (%d bytes)", res.StatusCode, len(body), len(want))
	}
	for k, v := range map[string]string{
		"Content-Type":                "text/javascript; charset=utf-8",
		"Cache-Control":               "public, max-age=300",
		"Access-Control-Allow-Origin": "*",
		"X-Content-Type-Options":      "nosniff",
	} {
		if got := res.Header.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	etag := res.Header.Get("ETag")
	if !strings.HasPrefix(etag, `"`) || len(etag) < 10 {
		t.Fatalf("ETag = %q, want a strong validator", etag)
	}

	res = get(t, h, http.MethodGet, "/v1/client.js", map[string]string{"If-None-Match": etag})
	if res.StatusCode != http.StatusNotModified {
		t.Errorf("GET with If-None-Match: status %d, want 304", res.StatusCode)
	}
	res = get(t, h, http.MethodHead, "/v1/client.js", nil)
	if res.StatusCode != http.StatusOK || res.Header.Get("ETag") != etag {
		t.Errorf("HEAD: status %d, ETag %q", res.StatusCode, res.Header.Get("ETag"))
	}
	res = get(t, h, http.MethodPost, "/v1/client.js", nil)
	if res.StatusCode != http.StatusMethodNotAllowed || res.Header.Get("Allow") != "GET, HEAD" {
		t.Errorf("POST: status %d, Allow %q; want 405 and GET, HEAD", res.StatusCode, res.Header.Get("Allow"))
	}
}

func TestDemoHandler(t *testing.T) {
	t.Parallel()
	h := web.DemoHandler()
	index, err := os.ReadFile("demo/index.html")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		path, ctype string
		status      int
	}{
		{"/demo", "text/html; charset=utf-8", 200},
		{"/demo/", "text/html; charset=utf-8", 200},
		{"/demo/index.html", "text/html; charset=utf-8", 200},
		{"/demo/app.js", "text/javascript; charset=utf-8", 200},
		{"/demo/style.css", "text/css; charset=utf-8", 200},
		{"/demo/icon.svg", "image/svg+xml", 200},
		{"/demo/nope.js", "", 404},
		{"/demo/../tidings.js", "", 404},
	}
	for _, c := range cases {
		res := get(t, h, http.MethodGet, c.path, nil)
		body, _ := io.ReadAll(res.Body)
		if res.StatusCode != c.status {
			t.Errorf("GET %s: status %d, want %d", c.path, res.StatusCode, c.status)
			continue
		}
		if c.status != 200 {
			continue
		}
		if got := res.Header.Get("Content-Type"); got != c.ctype {
			t.Errorf("GET %s: Content-Type %q, want %q", c.path, got, c.ctype)
		}
		if res.Header.Get("ETag") == "" || res.Header.Get("Content-Security-Policy") == "" {
			t.Errorf("GET %s: missing ETag or Content-Security-Policy", c.path)
		}
		if strings.HasSuffix(c.ctype, "html; charset=utf-8") && string(body) != string(index) {
			t.Errorf("GET %s: body is not demo/index.html", c.path)
		}
	}
}

// TestDemoPageUsesNoOtherOrigin keeps the demo self-contained: no CDN, no
// external fonts, no inline script (the page's CSP forbids it).
func TestDemoPageUsesNoOtherOrigin(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"demo/index.html", "demo/app.js", "demo/style.css"} {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		s := string(b)
		for _, bad := range []string{"http://", "https://", "//fonts.", "@import", "<script>", " style=\""} {
			if strings.Contains(s, bad) {
				t.Errorf("%s contains %q", name, bad)
			}
		}
	}
}
