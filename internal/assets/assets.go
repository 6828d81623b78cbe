// Package assets serves files embedded in the binary (the browser client,
// the demo page, the admin console): each with its Content-Type, a
// strong ETag from its content (If-None-Match answers 304) and
// X-Content-Type-Options nosniff, for GET and HEAD only.
package assets

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"
	"time"
)

// File is one embedded file ready to serve.
type File struct {
	name  string // for http.ServeContent
	body  []byte
	etag  string
	ctype string
}

// types are the Content-Types of the assets' extensions, with charsets.
var types = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".svg":  "image/svg+xml",
}

// Load reads name from fsys; it panics when fsys has no such file, which
// for an embed.FS is a mistake in the program.
func Load(fsys fs.FS, name string) File {
	body, err := fs.ReadFile(fsys, name)
	if err != nil {
		panic("assets: missing embedded file " + name)
	}
	ctype := types[path.Ext(name)]
	if ctype == "" {
		ctype = mime.TypeByExtension(path.Ext(name))
	}
	if ctype == "" {
		ctype = "application/octet-stream"
	}
	sum := sha256.Sum256(body)
	return File{name: name, body: body, etag: `"` + hex.EncodeToString(sum[:8]) + `"`, ctype: ctype}
}

// Dir loads every file under dir in fsys, by its path under dir.
func Dir(fsys fs.FS, dir string) map[string]File {
	out := map[string]File{}
	_ = fs.WalkDir(fsys, dir, func(name string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			out[strings.TrimPrefix(name, dir+"/")] = Load(fsys, name)
		}
		return nil
	})
	return out
}

// Serve writes f for GET and HEAD with cacheControl, and refuses other
// methods with 405.
func (f File) Serve(w http.ResponseWriter, r *http.Request, cacheControl string) {
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

// Site serves the files under dir in fsys at mount (as "/demo"):
// index.html at mount and mount+"/", the others by their path below it
// (or below "/", when the handler is mounted under http.StripPrefix).
// Every answer carries Cache-Control no-cache, Content-Security-Policy
// csp and Referrer-Policy no-referrer; unknown paths get 404.
func Site(fsys fs.FS, dir, mount, csp string) http.Handler {
	files := Dir(fsys, dir)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := r.URL.Path
		if name == mount || strings.HasPrefix(name, mount+"/") {
			name = name[len(mount):]
		}
		name = strings.TrimPrefix(name, "/")
		if name == "" {
			name = "index.html"
		}
		f, ok := files[name]
		if !ok {
			http.NotFound(w, r)
			return
		}
		h := w.Header()
		h.Set("Content-Security-Policy", csp)
		h.Set("Referrer-Policy", "no-referrer")
		f.Serve(w, r, "no-cache")
	})
}
