package hooks

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/tidings-io/tidings/internal/defaults"
	telem "github.com/tidings-io/tidings/internal/telemetry"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Defaults of Config: what a zero field means.
const (
	// DefaultTimeout is Config.Timeout's default.
	DefaultTimeout = 2 * time.Second
	// DefaultMaxConcurrent is Config.MaxConcurrent's default, in hook
	// requests open at once on a node.
	DefaultMaxConcurrent = 256
	// DefaultRetries is Config.Retries' default: one retry.
	DefaultRetries = 1
	// DefaultMaxAnswerBytes is Config.MaxAnswerBytes' default: 64 KiB.
	DefaultMaxAnswerBytes = 64 << 10
)

// ErrConfig is wrapped by New's errors: the configuration cannot work.
var ErrConfig = errors.New("hooks: bad configuration")

// Config says which hooks are on, where their backend is and how the
// node calls it. A zero field means its default: the Default* constant
// its comment names, or what it says for an empty or nil value.
type Config struct {
	// Connect, Subscribe, Publish and Refresh are the http or https URLs
	// the node POSTs each hook's requests to. Empty (the default): that
	// hook is off.
	Connect, Subscribe, Publish, Refresh string
	// Timeout bounds a whole call: the wait for a free slot
	// (MaxConcurrent), every attempt and the pauses between them. A call
	// that reaches it fails as unavailable. Zero or negative means
	// DefaultTimeout (2s).
	Timeout time.Duration
	// MaxConcurrent bounds the hook requests the node has open at once,
	// all hooks together; a call waits for a slot, within Timeout. Zero
	// or negative means DefaultMaxConcurrent (256).
	MaxConcurrent int
	// ForwardHeaders names the headers of the client's upgrade request
	// that go to the backend in "headers" (case-insensitive; see
	// Forwarded). Cookie and Authorization go only when named here. Empty
	// (the default): none.
	ForwardHeaders []string
	// ForwardCookies names the cookies of the client's upgrade request
	// that go to the backend in "cookies" (case-sensitive, as cookie
	// names are). Empty (the default): none.
	ForwardCookies []string
	// Retries is how many times a connect, subscribe or refresh call is
	// tried again after a network error or a 5xx answer, within Timeout,
	// after a short jittered pause. A publish is never tried again: the
	// backend may have acted on it. Zero means DefaultRetries (1);
	// negative: no retry.
	Retries int
	// MaxAnswerBytes bounds an answer's body; a larger one fails as
	// unavailable. Zero or negative means DefaultMaxAnswerBytes (64 KiB).
	MaxAnswerBytes int64
	// Node is the node's name, sent in every request's "node". Empty (the
	// default): not sent.
	Node string
	// TracerProvider traces each call with a client span "hook <kind>".
	// Nil (the default): off.
	TracerProvider trace.TracerProvider
	// MeterProvider receives the hook metrics (tidings_hook_*). Nil (the
	// default): none.
	MeterProvider metric.MeterProvider
	// Propagator writes the caller's trace context into each request
	// (traceparent, tracestate, baggage). Nil means W3C trace context and
	// baggage.
	Propagator propagation.TextMapPropagator
	// Logger receives the reason of each failed call (at most one line a
	// second per hook, with a count of those left out), which clients are
	// not told. Nil means discard.
	Logger *slog.Logger
	// HTTPClient sends the requests, with its own redirect policy and
	// transport. Nil (the default): a client with a keep-alive pool of
	// MaxConcurrent connections per backend host that follows no
	// redirect (a 3xx fails as unavailable) and uses the environment's
	// proxy settings, as net/http's default transport does; Close closes
	// its idle connections.
	HTTPClient *http.Client
}

// configDefaults is the default of each Config field that has one.
var configDefaults = Config{
	Timeout:        DefaultTimeout,
	MaxConcurrent:  DefaultMaxConcurrent,
	MaxAnswerBytes: DefaultMaxAnswerBytes,
	Propagator:     telem.W3C(),
	Logger:         defaults.Discard(),
}

func (c Config) withDefaults() Config {
	switch {
	case c.Retries == 0:
		c.Retries = DefaultRetries
	case c.Retries < 0:
		c.Retries = 0
	}
	return defaults.Fill(c, configDefaults)
}

// url returns the URL of kind's hook, "" when it is off.
func (c *Config) url(k Kind) string {
	switch k {
	case Connect:
		return c.Connect
	case Subscribe:
		return c.Subscribe
	case Publish:
		return c.Publish
	case Refresh:
		return c.Refresh
	}
	return ""
}

// checkURL parses the URL of kind's hook: an absolute http or https URL
// with a host.
func checkURL(k Kind, raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: the %s hook URL: %w", ErrConfig, k, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("%w: the %s hook URL %q is not an http(s) URL", ErrConfig, k, u.Redacted())
	}
	if u.Host == "" {
		return nil, fmt.Errorf("%w: the %s hook URL %q names no host", ErrConfig, k, u.Redacted())
	}
	if u.Fragment != "" {
		return nil, fmt.Errorf("%w: the %s hook URL %q has a fragment", ErrConfig, k, u.Redacted())
	}
	return u, nil
}

// checkNames refuses an empty name in a forwarding list.
func checkNames(what string, names []string) error {
	for _, n := range names {
		if n == "" {
			return fmt.Errorf("%w: an empty name in the %s to forward", ErrConfig, what)
		}
	}
	return nil
}

// newClient is the default HTTP client: keep-alive connections pooled by
// backend host, up to max idle per host, and no redirects.
func newClient(max int) (*http.Client, *http.Transport) {
	tr := &http.Transport{
		Proxy: http.ProxyFromEnvironment,
		DialContext: (&net.Dialer{
			Timeout:   30 * time.Second, // the call's deadline comes first
			KeepAlive: 30 * time.Second,
		}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          4 * max, // four hooks, perhaps four hosts
		MaxIdleConnsPerHost:   max,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	return &http.Client{
		Transport:     tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}, tr
}
