// Package web embeds Tidings' browser assets: the JavaScript client
// (tidings.js, an ES module with no dependencies) and the live demo page.
//
// Mount them on a node's mux:
//
//	mux.Handle("/v1/client.js", web.ClientHandler())
//	mux.Handle("/demo", web.DemoHandler())
//	mux.Handle("/demo/", web.DemoHandler())
package web

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"
	"time"
)

//go:embed tidings.js tidings.d.ts package.json demo
var assets embed.FS

// file is one embedded asset ready to serve.
type file struct {
	name  string // for the Content-Type and http.ServeContent
	body  []byte
	etag  string
	ctype string
}

func load(name string) file {
	body, err := assets.ReadFile(name)
	if err != nil {
		// Every name passed here is embedded above.
		panic("web: missing embedded asset " + name)
	}
	sum := sha256.Sum256(body)
	ctype := mime.TypeByExtension(path.Ext(name))
	switch path.Ext(name) {
	case ".js":
		ctype = "text/javascript; charset=utf-8"
	case ".html":
		ctype = "text/html; charset=utf-8"
	case ".css":
		ctype = "text/css; charset=utf-8"
	case ".svg":
		ctype = "image/svg+xml"
	}
	if ctype == "" {
		ctype = "application/octet-stream"
	}
	return file{name: name, body: body, etag: `"` + hex.EncodeToString(sum[:8]) + `"`, ctype: ctype}
}

// serve writes f for GET and HEAD (answering If-None-Match with 304) and
// refuses other methods with 405.
func (f file) serve(w http.ResponseWriter, r *http.Request, cacheControl string) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	h := w.Header()
	h.Set("Content-Type", f.ctype)
	h.Set("Cache-Control", cacheControl)
	h.Set("ETag", f.etag)
	h.Set("X-Content-Type-Options", "nosniff")
	http.ServeContent(w, r, f.name, time.Time{}, bytes.NewReader(f.body))
}

// ClientHandler serves tidings.js, whatever the request path (mount it at
// /v1/client.js). It sets Content-Type text/javascript; charset=utf-8, a
// short Cache-Control (5 minutes, then revalidate with the ETag), a strong
// ETag from the content, and Access-Control-Allow-Origin: * so that pages
// on other origins can import it as a module.
func ClientHandler() http.Handler {
	f := load("tidings.js")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Access-Control-Allow-Origin", "*")
		f.serve(w, r, "public, max-age=300")
	})
}

// demoCSP allows the demo page only its own scripts, styles and
// connections (the WebSocket to the same host included).
const demoCSP = "default-src 'self'; connect-src 'self'; img-src 'self' data:; " +
	"style-src 'self'; script-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// DemoHandler serves the live demo page: index.html at /demo and /demo/,
// and its assets under /demo/. The page loads the client from
// /v1/client.js and connects to /v1/ws on the same host, so mount
// ClientHandler too. Unknown paths get 404.
func DemoHandler() http.Handler {
	files := map[string]file{}
	_ = fs.WalkDir(assets, "demo", func(name string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			files[strings.TrimPrefix(name, "demo/")] = load(name)
		}
		return nil
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Path
		var name string
		switch {
		case p == "/demo" || p == "/demo/":
			name = "index.html"
		case strings.HasPrefix(p, "/demo/"):
			name = p[len("/demo/"):]
		default: // mounted under http.StripPrefix
			name = strings.TrimPrefix(p, "/")
		}
		if name == "" {
			name = "index.html"
		}
		f, ok := files[name]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Security-Policy", demoCSP)
		w.Header().Set("Referrer-Policy", "no-referrer")
		f.serve(w, r, "no-cache")
	})
}
