package httpapi

import (
	"net/http"

	"github.com/tidings-io/tidings/control/node"
	"github.com/tidings-io/tidings/protocol"
)

// sessions serves GET /v1/sessions?user=U or ?session=S [&limit=L]: the
// live sessions of a user, or one session, on every node (node.Sessions).
func (a *API) sessions(r *http.Request) (any, error) {
	q := r.URL.Query()
	limit, err := limitParam(q, protocol.SessionsLimit)
	if err != nil {
		return nil, err
	}
	list, err := a.cfg.Control.Sessions(r.Context(), node.Target{User: q.Get("user"), Session: q.Get("session")}, limit)
	if err != nil {
		return nil, err
	}
	return map[string]any{"sessions": list}, nil
}
