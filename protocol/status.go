package protocol

import "net/http"

// codeStatuses pairs each code with the HTTP status the HTTP API answers
// it with.
var codeStatuses = map[string]int{
	CodeBadRequest:           http.StatusBadRequest,
	CodeUnauthorized:         http.StatusUnauthorized,
	CodeForbidden:            http.StatusForbidden,
	CodeNotFound:             http.StatusNotFound,
	CodeMethodNotAllowed:     http.StatusMethodNotAllowed,
	CodeTooLarge:             http.StatusRequestEntityTooLarge,
	CodeUnsupportedMediaType: http.StatusUnsupportedMediaType,
	CodeRateLimited:          http.StatusTooManyRequests,
	CodeUnavailable:          http.StatusServiceUnavailable,
}

// HTTPStatus returns the HTTP status of an error with code: 500 for
// CodeInternal and any code the protocol does not name.
func HTTPStatus(code string) int {
	if status, ok := codeStatuses[code]; ok {
		return status
	}
	return http.StatusInternalServerError
}

// CodeOfStatus returns the code of an HTTP error status, for an answer
// whose body names none (a proxy's): CodeUnavailable for 502, 503 and
// 504, CodeInternal for a status no code has.
func CodeOfStatus(status int) string {
	switch status {
	case http.StatusBadGateway, http.StatusGatewayTimeout:
		return CodeUnavailable
	}
	for code, s := range codeStatuses {
		if s == status {
			return code
		}
	}
	return CodeInternal
}
