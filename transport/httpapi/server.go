package httpapi

import (
	"net/http"
	"strconv"

	"github.com/tidings-io/tidings/broker"
	"github.com/tidings-io/tidings/protocol"
	"github.com/tidings-io/tidings/session"
)

// The server API (CONTROL.md): calls an operator's backend makes with an
// API key marked admin (with no key configured, from loopback only).

// history answers GET /v1/history?topic=T[&since=N&epoch=E][&limit=L][&reverse=true]:
// the topic's messages still in history (after since, when given), at
// most limit, oldest first unless reverse; a since whose epoch is not
// current answers recovered: false and no messages.
func (a *API) history(w http.ResponseWriter, r *http.Request) {
	if _, ok := a.admitAdmin(w, r, http.MethodGet); !ok {
		return
	}
	q := r.URL.Query()
	topic := q.Get("topic")
	if err := broker.ValidateTopic(topic); err != nil {
		writeClientError(w, err)
		return
	}
	limit, err := limitParam(q, protocol.HistoryLimit)
	if err != nil {
		writeClientError(w, err)
		return
	}
	var since *broker.Position
	if s, e := q.Get("since"), q.Get("epoch"); s != "" || e != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil || e == "" {
			writeError(w, http.StatusBadRequest, protocol.CodeBadRequest, "since needs a whole number and epoch")
			return
		}
		since = &broker.Position{Offset: n, Epoch: e}
	}
	reverse := false
	if s := q.Get("reverse"); s != "" {
		b, err := strconv.ParseBool(s)
		if err != nil {
			writeError(w, http.StatusBadRequest, protocol.CodeBadRequest, "reverse must be true or false")
			return
		}
		reverse = b
	}
	h, err := session.ReadHistory(r.Context(), a.b, topic, since, limit, reverse)
	if err != nil {
		if broker.ClientError(err).Code == protocol.CodeUnavailable {
			a.cfg.Logger.Warn("history failed", "topic", topic, "err", err)
		}
		writeClientError(w, err)
		return
	}
	// Encoded by hand: encoding/json would compact each message's data and
	// escape its <, > and &, and history gives it byte for byte.
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(append(session.AppendHistory(nil, h), '\n'))
}
