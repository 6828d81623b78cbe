package httpapi

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tidings-io/tidings/broker"
	"github.com/tidings-io/tidings/control"
	"github.com/tidings-io/tidings/control/node"
	"github.com/tidings-io/tidings/protocol"
	"github.com/tidings-io/tidings/session"
)

// maxControlBody bounds the JSON body of a POST of the server API.
const maxControlBody = 64 << 10

// controlRequest is the body of the server API's POST calls; each call
// reads the fields it names.
type controlRequest struct {
	User    string         `json:"user"`
	Session string         `json:"session"`
	Topic   string         `json:"topic"`
	Since   *session.Since `json:"since"`
	Code    *int           `json:"code"`
	Reason  string         `json:"reason"`
	JTI     string         `json:"jti"`
	Until   string         `json:"until"`
}

// routeControl adds the server API's routes.
func (a *API) routeControl() {
	a.mux.HandleFunc("/v1/history", a.history)
	a.mux.HandleFunc("/v1/disconnect", a.controlPost(a.disconnect))
	a.mux.HandleFunc("/v1/unsubscribe", a.controlPost(a.unsubscribe))
	a.mux.HandleFunc("/v1/subscribe", a.controlPost(a.subscribe))
	a.mux.HandleFunc("/v1/revoke", a.controlPost(a.revoke))
	a.mux.HandleFunc("/v1/presence", a.controlGet(a.presence))
	a.mux.HandleFunc("/v1/presence/stats", a.controlGet(a.presenceStats))
	a.mux.HandleFunc("/v1/topics", a.controlGet(a.topics))
	a.mux.HandleFunc("/v1/info", a.controlGet(a.info))
	a.mux.HandleFunc("/v1/info/stream", a.infoStream)
	a.mux.HandleFunc("/v1/sessions", a.controlGet(a.sessions))
}

// controlPost admits a POST of the server API and decodes its body for
// call, which answers with its result (200 {} when nil).
func (a *API) controlPost(call func(*http.Request, controlRequest) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		caller, ok := a.admitAdmin(w, r, http.MethodPost)
		if !ok || !a.controlReady(w) {
			return
		}
		req, ok := decodeControl(w, r)
		if !ok {
			return
		}
		err := call(r, req)
		a.audit(r, caller, err, req.auditAttrs()...)
		if err != nil {
			a.controlFailed(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, struct{}{})
	}
}

// controlGet admits a GET of the server API; call answers with the value
// to send.
func (a *API) controlGet(call func(*http.Request) (any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if _, ok := a.admitAdmin(w, r, http.MethodGet); !ok || !a.controlReady(w) {
			return
		}
		v, err := call(r)
		if err != nil {
			a.controlFailed(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, v)
	}
}

// controlReady answers 503 when the node runs no control plane.
func (a *API) controlReady(w http.ResponseWriter) bool {
	if a.cfg.Control == nil {
		writeError(w, http.StatusServiceUnavailable, protocol.CodeUnavailable, "the server API is not available on this node")
		return false
	}
	return true
}

func (a *API) controlFailed(w http.ResponseWriter, r *http.Request, err error) {
	if broker.ClientError(err).Code == protocol.CodeUnavailable {
		a.cfg.Logger.Warn("server API call failed", "path", r.URL.Path, "err", err)
	}
	writeClientError(w, err)
}

// decodeControl reads r's JSON body into a controlRequest, or answers r.
func decodeControl(w http.ResponseWriter, r *http.Request) (controlRequest, bool) {
	var req controlRequest
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		writeError(w, http.StatusUnsupportedMediaType, "unsupported_media_type", "Content-Type must be application/json")
		return req, false
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxControlBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, protocol.CodeTooLarge, fmt.Sprintf("body is larger than %d bytes", maxControlBody))
		} else {
			writeError(w, http.StatusBadRequest, protocol.CodeBadRequest, "body could not be read")
		}
		return req, false
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil || dec.More() {
		msg := "body is not a JSON object"
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &te) && te.Field != "":
			msg = "field " + te.Field + " has the wrong type"
		case err != nil && bytes.HasPrefix(bytes.TrimSpace(body), []byte("{")):
			msg = "body is not valid: " + err.Error()
		}
		writeError(w, http.StatusBadRequest, protocol.CodeBadRequest, msg)
		return req, false
	}
	return req, true
}

// auditAttrs are the fields req names, for the audit log.
func (req controlRequest) auditAttrs() []any {
	var out []any
	for _, f := range []struct{ k, v string }{{"user", req.User}, {"session", req.Session}, {"topic", req.Topic}, {"jti", req.JTI}} {
		if f.v != "" {
			out = append(out, f.k, f.v)
		}
	}
	if req.Code != nil {
		out = append(out, "code", *req.Code)
	}
	return out
}

func (req controlRequest) target() node.Target {
	return node.Target{User: req.User, Session: req.Session}
}

// disconnect serves POST /v1/disconnect {user|session, code, reason}.
func (a *API) disconnect(r *http.Request, req controlRequest) error {
	code := 0
	if req.Code != nil {
		code = *req.Code
		if code < 4000 || code > 4999 {
			return broker.NewError(broker.ErrBadRequest, "code must be from 4000 to 4999")
		}
	}
	return a.cfg.Control.Disconnect(r.Context(), req.target(), uint16(code), req.Reason)
}

// unsubscribe serves POST /v1/unsubscribe {user|session, topic}.
func (a *API) unsubscribe(r *http.Request, req controlRequest) error {
	if req.Topic == "" {
		return broker.NewError(broker.ErrBadRequest, "topic is missing")
	}
	return a.cfg.Control.Unsubscribe(r.Context(), req.target(), req.Topic)
}

// subscribe serves POST /v1/subscribe {user|session, topic, since}.
func (a *API) subscribe(r *http.Request, req controlRequest) error {
	if req.Topic == "" {
		return broker.NewError(broker.ErrBadRequest, "topic is missing")
	}
	since, ok := req.Since.Position()
	if !ok {
		return broker.NewError(broker.ErrBadRequest, "since needs offset and epoch")
	}
	return a.cfg.Control.Subscribe(r.Context(), req.target(), req.Topic, since)
}

// revoke serves POST /v1/revoke {user|jti, until}.
func (a *API) revoke(r *http.Request, req controlRequest) error {
	rv := control.Revocation{User: req.User, TokenID: req.JTI}
	if req.Session != "" {
		return broker.NewError(broker.ErrBadRequest, "revoke names a user or a jti, not a session")
	}
	if req.Until != "" {
		t, err := time.Parse(time.RFC3339, req.Until)
		if err != nil {
			return broker.NewError(broker.ErrBadRequest, "until must be an RFC 3339 time")
		}
		rv.Until = t
	}
	return a.cfg.Control.Revoke(r.Context(), rv)
}

// presence serves GET /v1/presence?topic=T.
func (a *API) presence(r *http.Request) (any, error) {
	q := r.URL.Query()
	topic := q.Get("topic")
	limit, err := limitParam(q, protocol.PresenceLimit)
	if err != nil {
		return nil, err
	}
	clients, err := a.cfg.Control.Presence(r.Context(), topic)
	if err != nil {
		return nil, err
	}
	// Sorted, so that the first limit are the same on every call.
	slices.SortFunc(clients, func(a, b control.PresenceEntry) int {
		return cmp.Or(strings.Compare(a.User, b.User), strings.Compare(a.Session, b.Session))
	})
	total := len(clients)
	if len(clients) > limit {
		clients = clients[:limit]
	}
	return map[string]any{"topic": topic, "clients": clients, "total": total}, nil
}

// presenceStats serves GET /v1/presence/stats?topic=T.
func (a *API) presenceStats(r *http.Request) (any, error) {
	topic := r.URL.Query().Get("topic")
	st, err := a.cfg.Control.PresenceStats(r.Context(), topic)
	if err != nil {
		return nil, err
	}
	return map[string]any{"topic": topic, "sessions": st.Sessions, "users": st.Users}, nil
}

// topics serves GET /v1/topics[?pattern=P][&limit=L][&offset=O]: the
// busiest topics after the first offset of them.
func (a *API) topics(r *http.Request) (any, error) {
	q := r.URL.Query()
	limit, err := limitParam(q, protocol.TopicsLimit)
	if err != nil {
		return nil, err
	}
	offset, err := intParam("offset", q.Get("offset"), 0, 0, protocol.TopicsLimit.Max)
	if err != nil {
		return nil, err
	}
	topics, err := a.cfg.Control.Topics(r.Context(), q.Get("pattern"), offset+limit)
	if err != nil {
		return nil, err
	}
	topics = topics[min(offset, len(topics)):]
	if topics == nil {
		topics = []broker.TopicCount{}
	}
	return map[string]any{"topics": topics}, nil
}

// intParam reads the whole-number query parameter name, s, from lo to
// hi; "" is def.
// limitParam reads the limit query parameter of a list bounded by l.
func limitParam(q url.Values, l protocol.Limit) (int, error) {
	return intParam("limit", q.Get("limit"), l.Default, 1, l.Max)
}

func intParam(name, s string, def, lo, hi int) (int, error) {
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < lo || n > hi {
		return 0, broker.NewError(broker.ErrBadRequest, "%s must be a whole number from %d to %d", name, lo, hi)
	}
	return n, nil
}

// info serves GET /v1/info: the live nodes and their figures, and this
// node's effective configuration (secrets masked) when it has one.
func (a *API) info(r *http.Request) (any, error) {
	nodes, err := a.cfg.Control.Nodes(r.Context())
	if err != nil {
		return nil, err
	}
	out := map[string]any{"nodes": nodes}
	if a.cfg.Settings != nil {
		out["config"] = a.cfg.Settings()
	}
	return out, nil
}
