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
	"embed"
	"net/http"

	"github.com/tidings-io/tidings/internal/assets"
)

//go:embed tidings.js tidings.d.ts package.json demo
var files embed.FS

// ClientHandler serves tidings.js, whatever the request path (mount it at
// /v1/client.js). It sets Content-Type text/javascript; charset=utf-8, a
// short Cache-Control (5 minutes, then revalidate with the ETag), a strong
// ETag from the content, and Access-Control-Allow-Origin: * so that pages
// on other origins can import it as a module.
func ClientHandler() http.Handler {
	f := assets.Load(files, "tidings.js")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Access-Control-Allow-Origin", "*")
		f.Serve(w, r, "public, max-age=300")
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
func DemoHandler() http.Handler { return assets.Site(files, "demo", "/demo", demoCSP) }
