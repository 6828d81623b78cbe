// Package hooks asks the application's backend, over HTTP, whether a
// client may connect, subscribe, publish or refresh its session
// (docs/HOOKS.md): each hook is a POST of a JSON Request to the URL the
// operator configured, answered with {"allow": true, ...} or
// {"allow": false, "code": ..., "message": ...}.
//
// Call turns the answer into what a session needs: the checked Answer of
// an allow; a refusal as a *broker.Error carrying the backend's code and
// message, which reach the client unchanged; and any failure of the
// backend (down, too slow, a status other than 200, garbage, too large)
// as a *broker.Error wrapping broker.ErrUnavailable with the message
// "backend unavailable", never a hang. A call never outlives
// Config.Timeout, and the node never has more than Config.MaxConcurrent
// hook requests open.
//
// The package knows nothing of sessions or transports: a transport
// captures the forwarded headers and cookies at the upgrade (Forwarded),
// and the session calls the hooks.
package hooks

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"time"

	"github.com/tidings-io/tidings/broker"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// Hooks calls the backend's hooks. It is safe for concurrent use.
type Hooks struct {
	cfg  Config
	urls [numKinds]string // "" when the hook is off
	// client sends the requests; own is its transport when New built it
	// (Close closes its idle connections), nil when the config gave one.
	client *http.Client
	own    *http.Transport
	// sem holds a token for each hook request open on the node.
	sem  chan struct{}
	tel  telemetry
	logs [numKinds]logGate
}

// New returns the hooks of cfg. It fails, with an error wrapping
// ErrConfig, when a URL is not an absolute http or https URL, or a
// forwarding list holds an empty name. Every hook may be off: Enabled
// then reports false for each.
func New(cfg Config) (*Hooks, error) {
	cfg = cfg.withDefaults()
	h := &Hooks{cfg: cfg, sem: make(chan struct{}, cfg.MaxConcurrent)}
	for k := Connect; k <= Refresh; k++ {
		raw := cfg.url(k)
		if raw == "" {
			continue
		}
		u, err := checkURL(k, raw)
		if err != nil {
			return nil, err
		}
		h.urls[k-1] = raw
		h.tel.target[k-1] = targetAttrs(u)
	}
	if err := checkNames("headers", cfg.ForwardHeaders); err != nil {
		return nil, err
	}
	if err := checkNames("cookies", cfg.ForwardCookies); err != nil {
		return nil, err
	}
	h.client = cfg.HTTPClient
	if h.client == nil {
		h.client, h.own = newClient(cfg.MaxConcurrent)
	}
	h.setupTelemetry()
	return h, nil
}

// Enabled reports whether kind's hook is on (it has a URL). A nil *Hooks
// has every hook off.
func (h *Hooks) Enabled(kind Kind) bool {
	return h != nil && kind.valid() && h.urls[kind-1] != ""
}

// Close closes the idle connections of the HTTP client New built; calls
// in flight go on. It does nothing to a client the config gave.
func (h *Hooks) Close() {
	if h != nil && h.own != nil {
		h.own.CloseIdleConnections()
	}
}

// Call asks the backend's kind hook about req, within Config.Timeout (or
// ctx's deadline, if sooner), and returns the checked Answer of an allow.
// It sets req.Hook and req.Node.
//
// A refusal is a *broker.Error with the backend's code (one of the
// protocol's client codes; any other code is forbidden) and message (cut
// at MaxMessageBytes), wrapping ErrDenied. A failure is a *broker.Error
// wrapping broker.ErrUnavailable with UnavailableMessage, whose cause
// (for errors.Is and the log, not the client) wraps ErrTimeout,
// ErrOverload or ErrBackend; it is logged. A connect, subscribe or
// refresh that meets a network error or a 5xx answer is tried again
// (Config.Retries) while time is left; a publish never is.
//
// Call fails with ErrOff when kind's hook is off, and with an encoding
// error when req.Info or req.Data is not JSON: faults of the caller,
// which a client is told as "internal".
func (h *Hooks) Call(ctx context.Context, kind Kind, req Request) (Answer, error) {
	if !h.Enabled(kind) {
		return Answer{}, fmt.Errorf("%w: %s", ErrOff, kind)
	}
	start := time.Now()
	req.Hook = kind.String()
	req.Node = h.cfg.Node
	body, err := json.Marshal(&req)
	if err != nil {
		h.record(ctx, kind, resultError, start)
		return Answer{}, fmt.Errorf("hooks: encoding the %s request: %w", kind, err)
	}
	ctx, cancel := context.WithTimeout(ctx, h.cfg.Timeout)
	defer cancel()
	var span trace.Span
	if h.tel.tracer != nil {
		ctx, span = h.tel.tracer.Start(ctx, "hook "+kind.String(),
			trace.WithSpanKind(trace.SpanKindClient),
			trace.WithAttributes(h.tel.target[kind-1]...),
			trace.WithAttributes(AttrHook.String(kind.String())))
	}
	a, c := h.call(ctx, kind, body)
	h.record(ctx, kind, c.result, start)
	if span != nil {
		h.endSpan(span, c)
	}
	switch {
	case c.result == resultAllow:
		return a, nil
	case c.deny != nil:
		return Answer{}, c.deny
	}
	h.logFailure(kind, c)
	return Answer{}, broker.WrapErrorf(broker.ErrUnavailable, c.err, "%s", UnavailableMessage)
}

// outcome is how a call ended: its result, its refusal or its failure,
// and what the span tells.
type outcome struct {
	result   result
	deny     *broker.Error // a refusal
	err      error         // a failure, for the log and the span
	status   int           // the last answer's status; 0 with none
	attempts int
}

// failure is how an attempt failed.
type failure struct {
	result result // resultTimeout or resultError
	retry  bool   // a network error or a 5xx: worth trying again
	status int
	err    error
}

// call makes the attempts of one call within ctx's deadline.
func (h *Hooks) call(ctx context.Context, kind Kind, body []byte) (Answer, outcome) {
	retries := h.cfg.Retries
	if kind == Publish {
		retries = 0
	}
	var o outcome
	for {
		if err := h.acquire(ctx); err != nil {
			if o.attempts == 0 {
				// After a failed attempt, that failure is the reason.
				o.result, o.err = h.slotless(err)
			}
			return Answer{}, o
		}
		o.attempts++
		raw, f := h.attempt(ctx, kind, body)
		<-h.sem
		if f == nil {
			o.status = http.StatusOK
			a, deny, err := decode(kind, raw)
			switch {
			case err != nil:
				o.result, o.err = resultError, fmt.Errorf("%w: %w", ErrBackend, err)
			case deny != nil:
				o.result, o.deny = resultDeny, deny
			default:
				o.result = resultAllow
			}
			return a, o
		}
		o.result, o.err, o.status = f.result, f.err, f.status
		if !f.retry || o.attempts > retries || !pause(ctx, o.attempts) {
			return Answer{}, o
		}
	}
}

// slotless is the result and error of a wait for a slot that ended with
// err (acquire's): overload when the call's deadline passed, an error
// when its context was canceled.
func (h *Hooks) slotless(err error) (result, error) {
	if errors.Is(err, context.DeadlineExceeded) {
		return resultOverload, fmt.Errorf("%w: no free slot of %d before the deadline: %w", ErrOverload, cap(h.sem), err)
	}
	return resultError, fmt.Errorf("%w: %w", ErrBackend, err)
}

// acquire takes a slot, waiting until ctx is done. A slot taken as ctx
// ends is given back, so that no request starts past the deadline: a
// slot freed by a call that reached it may be taken by one with the same
// deadline (select chooses at random between ready cases, and a context
// learns of its parent's end a little after the parent does).
func (h *Hooks) acquire(ctx context.Context) error {
	select {
	case h.sem <- struct{}{}:
	default:
		select {
		case h.sem <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if err := ctx.Err(); err != nil {
		<-h.sem
		return err
	}
	if dl, ok := ctx.Deadline(); ok && !time.Now().Before(dl) {
		<-h.sem
		return context.DeadlineExceeded
	}
	return nil
}

// Backoff between attempts: the n-th retry waits about baseBackoff·2ⁿ⁻¹
// (from half to one and a half times that), at most maxBackoff.
const (
	baseBackoff = 25 * time.Millisecond
	maxBackoff  = 500 * time.Millisecond
)

// pause waits before the retry that follows attempt n, and reports
// whether there is time left to make it: false, without waiting, when the
// pause would reach ctx's deadline.
func pause(ctx context.Context, n int) bool {
	d := min(baseBackoff<<(n-1), maxBackoff)
	d = d/2 + rand.N(d)
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) <= d {
		return false
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// attempt POSTs body to kind's URL once and reads a 200 answer's body.
func (h *Hooks) attempt(ctx context.Context, kind Kind, body []byte) ([]byte, *failure) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.urls[kind-1], bytes.NewReader(body))
	if err != nil {
		return nil, &failure{result: resultError, err: fmt.Errorf("%w: %w", ErrBackend, err)}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "tidings-hooks")
	h.cfg.Propagator.Inject(ctx, propagation.HeaderCarrier(req.Header))
	resp, err := h.client.Do(req)
	if err != nil {
		return nil, netFailure(ctx, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		// Read a little of it, so that the connection may be used again.
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		return nil, &failure{
			result: resultError,
			retry:  resp.StatusCode >= 500,
			status: resp.StatusCode,
			err:    fmt.Errorf("%w: status %d", ErrBackend, resp.StatusCode),
		}
	}
	max := h.cfg.MaxAnswerBytes
	if resp.ContentLength > max {
		return nil, tooLarge(resp.ContentLength, max)
	}
	raw, err := readAnswer(resp.Body, resp.ContentLength, max)
	if err != nil {
		f := netFailure(ctx, err)
		f.status = resp.StatusCode
		return nil, f
	}
	if int64(len(raw)) > max {
		return nil, tooLarge(-1, max)
	}
	return raw, nil
}

// readAnswer reads r to its end, or to max+1 bytes: a buffer the size of
// the announced length n (-1: unknown) plus one, to meet the end without
// growing it.
func readAnswer(r io.Reader, n, max int64) ([]byte, error) {
	size := n + 1
	if n < 0 || size > 4<<10 {
		size = 512
	}
	buf := make([]byte, 0, size)
	for int64(len(buf)) <= max {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		room := buf[len(buf):min(int64(cap(buf)), max+1)]
		m, err := r.Read(room)
		buf = buf[:len(buf)+m]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return nil, err
		}
	}
	return buf, nil
}

// tooLarge is the failure of an answer over max bytes (n of them, when
// the answer said).
func tooLarge(n, max int64) *failure {
	err := fmt.Errorf("%w: the answer is larger than %d bytes", ErrBackend, max)
	if n >= 0 {
		err = fmt.Errorf("%w: the answer is larger than %d bytes (%d announced)", ErrBackend, max, n)
	}
	return &failure{result: resultError, status: http.StatusOK, err: err}
}

// netFailure is the failure of a request that ended with err: a timeout
// when ctx's deadline passed, an error (not tried again) when ctx was
// canceled, and otherwise a network error, worth trying again.
func netFailure(ctx context.Context, err error) *failure {
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return &failure{result: resultTimeout, err: fmt.Errorf("%w: %w", ErrTimeout, err)}
	case ctx.Err() != nil:
		return &failure{result: resultError, err: fmt.Errorf("%w: %w", ErrBackend, err)}
	}
	return &failure{result: resultError, retry: true, err: fmt.Errorf("%w: %w", ErrBackend, err)}
}

// endSpan ends a call's span with its outcome.
func (h *Hooks) endSpan(span trace.Span, c outcome) {
	if span.IsRecording() {
		span.SetAttributes(AttrResult.String(c.result.String()), AttrAttempts.Int(c.attempts))
		if c.status != 0 {
			span.SetAttributes(semconv.HTTPResponseStatusCode(c.status))
		}
		switch {
		case c.deny != nil:
			span.SetAttributes(AttrCode.String(c.deny.Code))
		case c.err != nil:
			span.RecordError(c.err)
			span.SetStatus(codes.Error, UnavailableMessage+": "+c.result.String())
			span.SetAttributes(semconv.ErrorTypeKey.String(c.result.String()))
		}
	}
	span.End()
}
