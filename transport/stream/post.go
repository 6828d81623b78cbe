package stream

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/tidings-io/tidings/protocol"
	"github.com/tidings-io/tidings/transport/admit"
)

// errBody is why a POST body is refused with 400: it is not one JSON
// command nor an array of them.
var errBody = errors.New("the body is not a JSON command (an object) nor an array of commands")

// post runs the commands a POST sends to the session of key.
func (s *Server) post(w http.ResponseWriter, r *http.Request, key string) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		admit.HTTPError(w, http.StatusMethodNotAllowed, "method_not_allowed", "use POST to send a stream commands")
		return
	}
	c := s.lookup(key)
	if c == nil {
		notFound(w)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, int64(s.cfg.MaxBodySize)))
	if err != nil {
		if mbe := (*http.MaxBytesError)(nil); errors.As(err, &mbe) {
			admit.HTTPError(w, http.StatusRequestEntityTooLarge, protocol.CodeTooLarge,
				fmt.Sprintf("the body is larger than %d bytes", s.cfg.MaxBodySize))
			return
		}
		admit.HTTPError(w, http.StatusBadRequest, protocol.CodeBadRequest, "the body could not be read")
		return
	}
	cmds, err := splitCommands(body)
	if err != nil {
		admit.HTTPError(w, http.StatusBadRequest, protocol.CodeBadRequest, err.Error())
		return
	}
	if !s.posts.Enter() {
		admit.HTTPError(w, http.StatusServiceUnavailable, protocol.CodeUnavailable, "server shutting down")
		return
	}
	defer s.posts.Leave()
	if !c.run(cmds) {
		notFound(w)
		return
	}
	if r.Header.Get("Origin") == c.origin {
		c.allowOrigin(w.Header())
	}
	w.WriteHeader(http.StatusNoContent)
}

// notFound answers a POST to a key that names no session (any more).
func notFound(w http.ResponseWriter) {
	admit.HTTPError(w, http.StatusNotFound, protocol.CodeNotFound, "no such stream: open a new one with GET")
}

// splitCommands returns the commands of a POST body: the body itself when
// it is a JSON object, each element of a JSON array of objects. Anything
// else (not JSON, another JSON value, an array holding one) is errBody.
func splitCommands(body []byte) ([][]byte, error) {
	body = bytes.Trim(body, " \t\r\n")
	if len(body) == 0 || !json.Valid(body) {
		return nil, errBody
	}
	switch body[0] {
	case '{':
		return [][]byte{body}, nil
	case '[':
		var raw []json.RawMessage
		if err := json.Unmarshal(body, &raw); err != nil {
			return nil, errBody
		}
		cmds := make([][]byte, len(raw))
		for i, p := range raw {
			p = bytes.Trim(p, " \t\r\n")
			if len(p) == 0 || p[0] != '{' {
				return nil, errBody
			}
			cmds[i] = p
		}
		return cmds, nil
	}
	return nil, errBody
}
