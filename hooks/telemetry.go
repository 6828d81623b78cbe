package hooks

import (
	"context"
	"errors"
	"net/url"
	"strconv"
	"sync/atomic"
	"time"

	telem "github.com/tidings-io/tidings/internal/telemetry"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// scope is the instrumentation scope of the hooks' spans and metrics.
var scope = telem.Scope("hooks")

// Attributes of a hook span, beside the semantic conventions' HTTP client
// attributes (http.request.method, server.address, server.port,
// url.full without its query, http.response.status_code).
const (
	// AttrHook is the hook's name (connect, subscribe, publish, refresh).
	AttrHook = attribute.Key("tidings.hook")
	// AttrResult is the call's result: allow, deny, timeout, error or
	// overload, as in tidings_hook_results_total.
	AttrResult = attribute.Key("tidings.hook.result")
	// AttrAttempts counts the requests the call made (retries included).
	AttrAttempts = attribute.Key("tidings.hook.attempts")
	// AttrCode is the code of a refusal.
	AttrCode = attribute.Key("tidings.hook.code")
)

// result is how a call ended: the result attribute of
// tidings_hook_results_total.
type result uint8

const (
	resultAllow    result = iota // the backend allowed
	resultDeny                   // the backend refused
	resultTimeout                // the deadline passed while a request was open
	resultError                  // the backend failed: network, status, garbage
	resultOverload               // no free slot before the deadline
	numResults
)

var resultNames = [numResults]string{"allow", "deny", "timeout", "error", "overload"}

func (r result) String() string { return resultNames[r] }

// telemetry is the hooks' tracer and instruments, with the attribute sets
// of every hook and result made once.
type telemetry struct {
	tracer   trace.Tracer // nil when tracing is off
	duration metric.Float64Histogram
	results  metric.Int64Counter
	target   [numKinds][]attribute.KeyValue // span attributes of each hook's URL
	byHook   [numKinds]metric.MeasurementOption
	byResult [numKinds][numResults]metric.MeasurementOption
}

func (h *Hooks) setupTelemetry() {
	t := &h.tel
	t.tracer = telem.Tracer(h.cfg.TracerProvider, scope)
	in := telem.NewInstruments(telem.Meter(h.cfg.MeterProvider, scope))
	t.duration = in.Seconds("tidings.hook.duration",
		"Time a hook call took, by hook: the wait for a slot, every attempt and the pauses between them.")
	t.results = in.Int64Counter("tidings.hook.results",
		metric.WithUnit("{call}"),
		metric.WithDescription("Hook calls, by hook and result (allow, deny, timeout, error, overload)."))
	for k := range numKinds {
		hook := attribute.String("hook", kindNames[k])
		t.byHook[k] = telem.Attrs(hook)
		for r := range numResults {
			t.byResult[k][r] = telem.Attrs(hook, attribute.String("result", resultNames[r]))
		}
	}
	if h.cfg.MeterProvider != nil {
		in.Observe(telem.UpDownCounter("tidings.hook.in_flight", "{request}",
			"Hook requests open on this node (bounded by MaxConcurrent).",
			func(o telem.Observation) { o(int64(len(h.sem))) }))
	}
	in.LogErr(h.cfg.Logger, scope)
}

// targetAttrs are the span attributes of a hook's URL u: its query and
// user info are left out, as they may hold secrets.
func targetAttrs(u *url.URL) []attribute.KeyValue {
	full := url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path, RawPath: u.RawPath}
	attrs := []attribute.KeyValue{
		semconv.HTTPRequestMethodPost,
		semconv.URLFull(full.String()),
		semconv.ServerAddress(u.Hostname()),
	}
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	if p, err := strconv.Atoi(port); err == nil {
		attrs = append(attrs, semconv.ServerPort(p))
	}
	return attrs
}

// record counts a call of kind that ended with r, begun at start.
func (h *Hooks) record(ctx context.Context, kind Kind, r result, start time.Time) {
	h.tel.duration.Record(ctx, time.Since(start).Seconds(), h.tel.byHook[kind-1])
	h.tel.results.Add(ctx, 1, h.tel.byResult[kind-1][r])
}

// logGate lets one line a second through, and counts those it holds
// back.
type logGate struct {
	last       atomic.Int64 // when the last line went, in Unix nanoseconds
	suppressed atomic.Int64 // lines held back since
}

// allow reports whether a line may go now, and how many were held back
// before it.
func (g *logGate) allow(now time.Time) (bool, int64) {
	last := g.last.Load()
	if now.UnixNano()-last < int64(time.Second) || !g.last.CompareAndSwap(last, now.UnixNano()) {
		g.suppressed.Add(1)
		return false, 0
	}
	return true, g.suppressed.Swap(0)
}

// logFailure logs why a call of kind failed, at most once a second per
// hook. A call its caller gave up on (a closed session) is not logged.
func (h *Hooks) logFailure(kind Kind, c outcome) {
	if errors.Is(c.err, context.Canceled) {
		return
	}
	ok, held := h.logs[kind-1].allow(time.Now())
	if !ok {
		return
	}
	args := []any{"hook", kind.String(), "result", c.result.String(), "attempts", c.attempts, "err", c.err}
	if held > 0 {
		args = append(args, "not_logged", held)
	}
	h.cfg.Logger.Warn("hook failed", args...)
}
