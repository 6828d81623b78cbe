package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/tidings-io/tidings/protocol"
)

// Defaults of Config.
const (
	// DefaultTimeout bounds each HTTP request.
	DefaultTimeout = 10 * time.Second
	// DefaultRetries is how many times an HTTP request is retried.
	DefaultRetries = 3
)

// HTTP retry schedule: full jitter, attempt n waits a random time in
// [0, min(retryCap, retryBase·2ⁿ)), or the broker's Retry-After when
// that is longer.
const (
	retryBase = 100 * time.Millisecond
	retryCap  = 5 * time.Second
	// maxResponse bounds the answers the client reads.
	maxResponse = 256 << 20
)

// Config configures a Client. Only URL is required.
type Config struct {
	// URL is the broker's base URL, http(s)://host:port, possibly with a
	// path prefix when a proxy serves the broker under one. The
	// WebSocket endpoint is derived from it (ws(s)://…/v1/ws); a
	// ws(s):// URL is accepted too.
	URL string
	// APIKey is sent as `Authorization: Bearer` with HTTP publishes and
	// server API calls. Empty: none (a broker with no key configured
	// accepts them from loopback only).
	APIKey string
	// Token is the session JWT for WebSocket subscriptions, sent as the
	// `token` query parameter. Empty: anonymous sessions.
	Token string
	// TokenFunc, when set, is called before every WebSocket connection,
	// the reconnects included, for a fresh token; it replaces Token. An
	// error it returns counts as a failed connection.
	TokenFunc func(ctx context.Context) (string, error)
	// HTTPClient makes the HTTP requests; its transport's TLS
	// configuration is used for wss:// too. Nil: a client on
	// http.DefaultTransport.
	HTTPClient *http.Client
	// Timeout bounds each HTTP request (each attempt of a retried one).
	// Zero means DefaultTimeout (10 s).
	Timeout time.Duration
	// Retries is how many times an HTTP request is retried after a 429,
	// a 502/503/504 or a network error (never after another answer),
	// waiting with full-jitter backoff or the broker's Retry-After.
	// Publishes keep their idempotency key across retries. Zero means
	// DefaultRetries (3); negative: no retry.
	Retries int
	// Logger receives the client's events (reconnects, retries). Nil:
	// none.
	Logger *slog.Logger
	// MaxPublishBatch bounds how many concurrent Publish calls one
	// request carries: calls made while the client's publish requests
	// are in flight go together in the next one, the cheapest way for
	// the broker to take many messages. Zero means
	// DefaultMaxPublishBatch (100); 1 or less: every call is a request
	// of its own.
	MaxPublishBatch int
}

// Client talks to one broker (or a load balancer in front of several
// nodes): HTTP publishes, WebSocket subscriptions and the server API. It
// is safe for concurrent use and holds no resource of its own: there is
// nothing to close (close each Subscription).
type Client struct {
	cfg     Config
	base    *url.URL // http(s), path without a trailing slash
	wsURL   string   // ws(s)://…/v1/ws
	hc      *http.Client
	retries int
	log     *slog.Logger
	// maxBatch is Config.MaxPublishBatch with its default applied.
	maxBatch int
	pubs     publishQueue
}

// New checks cfg and returns a client. It does not connect.
func New(cfg Config) (*Client, error) {
	if cfg.URL == "" {
		return nil, errors.New("tidings: Config.URL is required")
	}
	u, err := url.Parse(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("tidings: Config.URL: %w", err)
	}
	switch u.Scheme {
	case "http", "https":
	case "ws":
		u.Scheme = "http"
	case "wss":
		u.Scheme = "https"
	default:
		return nil, fmt.Errorf("tidings: Config.URL %q: the scheme must be http, https, ws or wss", cfg.URL)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("tidings: Config.URL %q has no host", cfg.URL)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	u.RawPath, u.RawQuery, u.Fragment = "", "", ""
	c := &Client{cfg: cfg, base: u, hc: cfg.HTTPClient, log: cfg.Logger}
	ws := *u
	ws.Scheme = "ws"
	if u.Scheme == "https" {
		ws.Scheme = "wss"
	}
	ws.Path += "/v1/ws"
	c.wsURL = ws.String()
	if c.hc == nil {
		c.hc = &http.Client{}
	}
	if c.cfg.Timeout <= 0 {
		c.cfg.Timeout = DefaultTimeout
	}
	switch {
	case cfg.Retries == 0:
		c.retries = DefaultRetries
	case cfg.Retries > 0:
		c.retries = cfg.Retries
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	c.maxBatch = cfg.MaxPublishBatch
	if c.maxBatch == 0 {
		c.maxBatch = DefaultMaxPublishBatch
	}
	return c, nil
}

// request is one HTTP call of the client.
type request struct {
	method string
	path   string     // under the base URL, e.g. /v1/publish
	query  url.Values // nil: none
	body   []byte     // JSON; nil: no body
	header http.Header
}

// call runs req, retrying as Config.Retries says, and decodes a 200
// answer into out (when not nil). On an error answer it returns an *Error
// and the answer's body.
func (c *Client) call(ctx context.Context, req request, out any) ([]byte, error) {
	for attempt := 0; ; attempt++ {
		body, err := c.once(ctx, req)
		if err == nil {
			if out != nil {
				if err := json.Unmarshal(body, out); err != nil {
					return body, &Error{Code: protocol.CodeInternal, Message: fmt.Sprintf("%s %s: the answer is not valid: %v", req.method, req.path, err), Status: http.StatusOK, err: err}
				}
			}
			return body, nil
		}
		if ctx.Err() != nil {
			return body, ctx.Err()
		}
		var e *Error
		if attempt >= c.retries || !errors.As(err, &e) || !retryable(e) {
			return body, err
		}
		wait := max(jitter(retryBase, retryCap, attempt), e.RetryAfter)
		if dl, ok := ctx.Deadline(); ok && time.Now().Add(wait).After(dl) {
			return body, err // no time left for another try
		}
		c.log.Info("tidings: retrying", "method", req.method, "path", req.path, "attempt", attempt+1, "wait", wait, "err", err)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return body, ctx.Err()
		case <-t.C:
		}
	}
}

// jitter is the full-jitter delay of attempt n (from 0): a random time
// in [0, min(ceil, base·2ⁿ)).
func jitter(base, ceil time.Duration, n int) time.Duration {
	d := base
	for i := 0; i < n && d < ceil; i++ {
		d *= 2
	}
	return rand.N(min(d, ceil))
}

// retryable reports whether a request that failed with e may be tried
// again: the broker was not reached, or it asked to come back later.
func retryable(e *Error) bool {
	switch e.Status {
	case 0:
		return e.Code == protocol.CodeUnavailable
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

// once runs req once, within Config.Timeout, and returns the body of a
// 200 answer, or an *Error (with the body of an error answer).
func (c *Client) once(ctx context.Context, req request) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	u := *c.base
	u.Path += req.path
	if req.query != nil {
		u.RawQuery = req.query.Encode()
	}
	var rd io.Reader
	if req.body != nil {
		rd = bytes.NewReader(req.body)
	}
	hr, err := http.NewRequestWithContext(ctx, req.method, u.String(), rd)
	if err != nil {
		return nil, &Error{Code: protocol.CodeBadRequest, Message: err.Error(), err: err}
	}
	for k, v := range req.header {
		hr.Header[k] = v
	}
	if req.body != nil {
		hr.Header.Set("Content-Type", "application/json")
	}
	hr.Header.Set("Accept", "application/json")
	if c.cfg.APIKey != "" {
		hr.Header.Set("Authorization", "Bearer "+c.cfg.APIKey)
	}
	resp, err := c.hc.Do(hr)
	if err != nil {
		return nil, &Error{Code: protocol.CodeUnavailable, Message: fmt.Sprintf("%s %s: %v", req.method, req.path, err), err: err}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return nil, &Error{Code: protocol.CodeUnavailable, Message: fmt.Sprintf("%s %s: reading the answer: %v", req.method, req.path, err), err: err}
	}
	if resp.StatusCode == http.StatusOK {
		return body, nil
	}
	return body, answerError(resp.StatusCode, resp.Header, body)
}

// answerError is the *Error of an answer with status other than 200: the
// broker's code and message from its JSON body, or, for a body that is
// not the broker's, the code of the status and the body's start.
func answerError(status int, h http.Header, body []byte) *Error {
	e := &Error{Status: status, RetryAfter: retryAfter(h)}
	var eb struct {
		Error *struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &eb) == nil && eb.Error != nil && eb.Error.Code != "" {
		e.Code, e.Message = eb.Error.Code, eb.Error.Message
		return e
	}
	e.Code = protocol.CodeOfStatus(status)
	e.Message = http.StatusText(status)
	if s := strings.TrimSpace(string(body)); s != "" {
		if len(s) > 200 {
			s = s[:200] + "…"
		}
		e.Message += ": " + s
	}
	return e
}

// retryAfter reads a Retry-After header given in seconds (the broker's
// form) or as an HTTP date; zero when absent or unreadable.
func retryAfter(h http.Header) time.Duration {
	v := h.Get("Retry-After")
	if v == "" {
		return 0
	}
	if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && n >= 0 {
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(time.Until(t), 0)
	}
	return 0
}
