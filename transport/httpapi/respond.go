package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/tidings-io/tidings/broker"
	"github.com/tidings-io/tidings/protocol"
)

// decodeStrict decodes exactly one JSON value with no unknown fields.
func decodeStrict(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		switch {
		case errors.Is(err, io.EOF):
			return errors.New("body is empty")
		case errors.Is(err, io.ErrUnexpectedEOF):
			return errors.New("body is truncated JSON")
		case errors.As(err, &se):
			return fmt.Errorf("body is not valid JSON (at byte %d)", se.Offset)
		case errors.As(err, &te):
			return fmt.Errorf("field %q has the wrong type", te.Field)
		default:
			// encoding/json has no type for an unknown field: its text is
			// the one detail passed on; no other error text reaches the
			// client.
			if field, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
				return fmt.Errorf("body is not a valid request: unknown field %s", field)
			}
			return errors.New("body is not a valid request")
		}
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("body has data after the JSON value")
	}
	return nil
}

// writeClientError writes what a client is told of err
// (broker.ClientError) with its HTTP status.
func writeClientError(w http.ResponseWriter, err error) {
	e := broker.ClientError(err)
	writeError(w, protocol.HTTPStatus(e.Code), e.Code, e.Message)
}

// statusCode maps an auth refusal status to its protocol code.
func statusCode(status int) string {
	if status == http.StatusUnauthorized {
		return protocol.CodeUnauthorized
	}
	return protocol.CodeForbidden
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, message string) {
	writeJSON(w, status, map[string]any{"error": errorBody{Code: code, Message: message}})
}
