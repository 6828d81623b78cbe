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
	"embed"
	"net/http"

	"github.com/tidings-io/tidings/internal/assets"
)

//go:embed console
var console embed.FS

// CSP allows the console only its own scripts, styles and connections
// (the server API, its live feed and the WebSocket of the live tail, all
// on the page's host): no inline script or style, no other origin, no
// framing.
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; " +
	"img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// Handler serves the console: index.html at /admin and /admin/, its
// assets (ES modules, the stylesheet) under /admin/. Every answer carries
// a strong ETag (If-None-Match answers 304), Cache-Control no-cache,
// Content-Security-Policy CSP, X-Content-Type-Options nosniff and
// Referrer-Policy no-referrer. Other methods than GET and HEAD get 405,
// unknown paths 404. The page itself holds no secret: what it shows, it
// reads from the server API with the credential the user enters.
func Handler() http.Handler { return assets.Site(console, "console", "/admin", CSP) }
