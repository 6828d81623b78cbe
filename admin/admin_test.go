package admin_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/tidings-io/tidings/admin"
)

// The handler serves the page at /admin and /admin/ and its modules under
// /admin/, with a strict CSP, an ETag that answers 304, and 404 and 405
// where it must.
func TestHandlerServesTheConsole(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(admin.Handler())
	defer srv.Close()
	get := func(path string, header ...string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, srv.URL+path, nil)
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { res.Body.Close() })
		return res
	}
	for _, c := range []struct{ path, ctype, contains string }{
		{"/admin", "text/html; charset=utf-8", `<script type="module" src="/admin/app.js">`},
		{"/admin/", "text/html; charset=utf-8", "<title>Tidings admin</title>"},
		{"/admin/app.js", "text/javascript; charset=utf-8", "followInfo"},
		{"/admin/chart.js", "text/javascript; charset=utf-8", "class Ring"},
		{"/admin/style.css", "text/css; charset=utf-8", "prefers-color-scheme: dark"},
	} {
		res := get(c.path)
		body, _ := io.ReadAll(res.Body)
		if res.StatusCode != http.StatusOK || res.Header.Get("Content-Type") != c.ctype || !strings.Contains(string(body), c.contains) {
			t.Errorf("%s: %d %q, body has %q: %v", c.path, res.StatusCode, res.Header.Get("Content-Type"), c.contains, strings.Contains(string(body), c.contains))
		}
		if csp := res.Header.Get("Content-Security-Policy"); csp != admin.CSP || !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe") {
			t.Errorf("%s: CSP %q", c.path, csp)
		}
		if res.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: no nosniff", c.path)
		}
		etag := res.Header.Get("ETag")
		if etag == "" {
			t.Fatalf("%s: no ETag", c.path)
		}
		if res := get(c.path, "If-None-Match", etag); res.StatusCode != http.StatusNotModified {
			t.Errorf("%s with If-None-Match: %d, want 304", c.path, res.StatusCode)
		}
	}
	if res := get("/admin/nope.js"); res.StatusCode != http.StatusNotFound {
		t.Errorf("unknown asset: %d, want 404", res.StatusCode)
	}
	res, err := http.Post(srv.URL+"/admin/", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusMethodNotAllowed || res.Header.Get("Allow") != "GET, HEAD" {
		t.Errorf("POST: %d Allow %q, want 405", res.StatusCode, res.Header.Get("Allow"))
	}
}

// The page uses no third-party code: every module it imports is its own
// or the broker's client.
func TestConsoleLoadsNothingFromElsewhere(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(admin.Handler())
	defer srv.Close()
	for _, name := range []string{"index.html", "app.js", "api.js", "ui.js", "chart.js", "overview.js", "topics.js", "topic.js", "sessions.js", "style.css"} {
		res, err := http.Get(srv.URL + "/admin/" + name)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d", name, res.StatusCode)
		}
		for _, bad := range []string{"http://", "https://", "//cdn", "@import"} {
			if i := strings.Index(string(body), bad); i >= 0 && !strings.Contains(string(body[max(0, i-20):i+len(bad)+20]), "www.w3.org") {
				t.Errorf("%s refers to %q", name, string(body[max(0, i-20):min(len(body), i+40)]))
			}
		}
	}
}
