// Package admin serves the admin console: a single page, embedded in the
// binary, that shows a node's cluster (its nodes and their live figures,
// its topics, sessions and messages) and acts on it through the server
// API (docs/PROTOCOL.md), with the same credentials as curl: an admin API
// key, or a JWT with the admin scope. Mount it on a node's mux:
//
//	mux.Handle("/admin", admin.Handler())
//	mux.Handle("/admin/", admin.Handler())
//
// The page loads the client from /v1/client.js (web.ClientHandler) for
// its live tail of a topic.
package admin

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"
)

//go:embed console
var assets embed.FS

// CSP allows the console only its own scripts, styles and connections
// (the server API, its live feed and the WebSocket of the live tail, all
// on the page's host): no inline script or style, no other origin, no
// framing.
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; " +
	"img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// file is one embedded asset ready to serve.
type file struct {
	name  string
	body  []byte
	etag  string
	ctype string
}

var ctypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".svg":  "image/svg+xml",
}

// files returns the embedded assets by their path under console/.
func files() map[string]file {
	out := map[string]file{}
	_ = fs.WalkDir(assets, "console", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		body, err := assets.ReadFile(name)
		if err != nil {
			return nil
		}
		sum := sha256.Sum256(body)
		ctype := ctypes[path.Ext(name)]
		if ctype == "" {
			ctype = "application/octet-stream"
		}
		rel := strings.TrimPrefix(name, "console/")
		out[rel] = file{name: rel, body: body, etag: `"` + hex.EncodeToString(sum[:8]) + `"`, ctype: ctype}
		return nil
	})
	return out
}

// Handler serves the console: index.html at /admin and /admin/, its
// assets (ES modules, the stylesheet) under /admin/. Every answer carries
// a strong ETag (If-None-Match answers 304), Cache-Control no-cache,
// Content-Security-Policy CSP, X-Content-Type-Options nosniff and
// Referrer-Policy no-referrer. Other methods than GET and HEAD get 405,
// unknown paths 404. The page itself holds no secret: what it shows, it
// reads from the server API with the credential the user enters.
func Handler() http.Handler {
	fs := files()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := strings.TrimPrefix(strings.TrimPrefix(r.URL.Path, "/admin"), "/")
		if name == "" {
			name = "index.html"
		}
		f, ok := fs[name]
		if !ok {
			http.NotFound(w, r)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		h := w.Header()
		h.Set("Content-Type", f.ctype)
		h.Set("Cache-Control", "no-cache")
		h.Set("ETag", f.etag)
		h.Set("Content-Security-Policy", CSP)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		http.ServeContent(w, r, f.name, time.Time{}, bytes.NewReader(f.body))
	})
}
