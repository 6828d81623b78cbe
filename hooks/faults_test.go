package hooks_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tidings-io/tidings/broker"
	"github.com/tidings-io/tidings/hooks"
)

// slack is what a call may take beyond its timeout, on a loaded machine
// under the race detector.
const slack = 2 * time.Second

// stalling starts a backend that answers nothing until the client goes
// away or the test ends (before the server stops).
func stalling(t testing.TB) *backend {
	release := make(chan struct{})
	b := newBackend(t, func(_ http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	t.Cleanup(func() { close(release) })
	return b
}

// TestTimeout: a backend slower than Timeout fails the call as
// unavailable (ErrTimeout) once Timeout has passed, without a retry.
func TestTimeout(t *testing.T) {
	t.Parallel()
	b := stalling(t)
	cfg := allHooks(b)
	cfg.Timeout = 150 * time.Millisecond
	h := newHooks(t, cfg)
	for _, k := range []hooks.Kind{hooks.Connect, hooks.Publish} {
		start := time.Now()
		_, err := h.Call(t.Context(), k, hooks.Request{})
		took := time.Since(start)
		wantUnavailable(t, err, hooks.ErrTimeout)
		if took < cfg.Timeout || took > cfg.Timeout+slack {
			t.Errorf("%v took %v, want about %v", k, took, cfg.Timeout)
		}
	}
	if n := b.requests.Load(); n != 2 {
		t.Errorf("the backend got %d requests, want 2 (a timeout is not retried)", n)
	}
}

// TestCallerDeadline: a caller's deadline sooner than Timeout bounds the
// call.
func TestCallerDeadline(t *testing.T) {
	t.Parallel()
	b := stalling(t)
	h := newHooks(t, allHooks(b)) // Timeout 2s
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := h.Call(ctx, hooks.Subscribe, hooks.Request{})
	wantUnavailable(t, err, hooks.ErrTimeout)
	if took := time.Since(start); took > time.Second {
		t.Errorf("took %v, want about 100ms", took)
	}
}

// TestCanceled: a caller that gives up (its session closed) ends the call
// at once, unavailable, and nothing is logged.
func TestCanceled(t *testing.T) {
	t.Parallel()
	b := stalling(t)
	cfg := allHooks(b)
	log, lines := logger()
	cfg.Logger = log
	h := newHooks(t, cfg)
	ctx, cancel := context.WithCancel(t.Context())
	go func() {
		defer cancel()
		select {
		case <-b.arrived:
		case <-ctx.Done():
		}
	}()
	_, err := h.Call(ctx, hooks.Connect, hooks.Request{})
	wantUnavailable(t, err, context.Canceled)
	if n := b.requests.Load(); n != 1 {
		t.Errorf("the backend got %d requests, want 1 (no retry after the caller left)", n)
	}
	if s := lines.String(); s != "" {
		t.Errorf("logged %q, want nothing", s)
	}
}

// TestConnectionRefused: a backend that is not there fails the call as
// unavailable (ErrBackend), quickly, retries included.
func TestConnectionRefused(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	log, lines := logger()
	h := newHooks(t, hooks.Config{
		Connect: "http://" + addr + "/connect", Publish: "http://" + addr + "/publish",
		Retries: 2, Logger: log,
	})
	for _, k := range []hooks.Kind{hooks.Connect, hooks.Publish} {
		start := time.Now()
		_, err := h.Call(t.Context(), k, hooks.Request{})
		wantUnavailable(t, err, hooks.ErrBackend)
		if took := time.Since(start); took > time.Second {
			t.Errorf("%v took %v", k, took)
		}
	}
	s := lines.String()
	for _, want := range []string{"hook=connect", "result=error", "attempts=3", "hook=publish", "attempts=1", "connection refused"} {
		if !strings.Contains(s, want) {
			t.Errorf("the log %q does not say %s", s, want)
		}
	}
}

// TestRetries: a 5xx is retried Config.Retries times for connect,
// subscribe and refresh, and never for publish; a 4xx, a redirect and a
// refusal are not retried.
func TestRetries(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		status  int
		kind    hooks.Kind
		retries int
		want    int64
	}{
		{"connect 500", 500, hooks.Connect, 0, 2},
		{"subscribe 502", 502, hooks.Subscribe, 0, 2},
		{"refresh 503", 503, hooks.Refresh, 0, 2},
		{"connect 500, 3 retries", 500, hooks.Connect, 3, 4},
		{"connect 500, no retry", 500, hooks.Connect, -1, 1},
		{"publish 500", 500, hooks.Publish, 0, 1},
		{"publish 503, 3 retries", 503, hooks.Publish, 3, 1},
		{"connect 400", 400, hooks.Connect, 3, 1},
		{"connect 404", 404, hooks.Connect, 3, 1},
		{"connect 302", 302, hooks.Connect, 3, 1},
		{"subscribe 204", 204, hooks.Subscribe, 3, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
				if tc.status == http.StatusFound {
					http.Redirect(w, r, "/elsewhere", tc.status)
					return
				}
				reply(tc.status, `{"allow": true}`)(w, r)
			})
			cfg := allHooks(b)
			cfg.Retries = tc.retries
			log, lines := logger()
			cfg.Logger = log
			h := newHooks(t, cfg)
			_, err := h.Call(t.Context(), tc.kind, hooks.Request{})
			wantUnavailable(t, err, hooks.ErrBackend)
			if n := b.requests.Load(); n != tc.want {
				t.Errorf("the backend got %d requests, want %d", n, tc.want)
			}
			if s := lines.String(); !strings.Contains(s, "status "+strconv.Itoa(tc.status)) {
				t.Errorf("the log %q does not give the status", s)
			}
		})
	}
}

// TestRetrySucceeds: a connect whose first answer is a 503 takes the
// second's allow.
func TestRetrySucceeds(t *testing.T) {
	t.Parallel()
	var n atomic.Int64
	b := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 1 {
			reply(http.StatusServiceUnavailable, "")(w, r)
			return
		}
		reply(http.StatusOK, `{"allow": true, "user": "u7"}`)(w, r)
	})
	h := newHooks(t, allHooks(b))
	a, err := h.Call(t.Context(), hooks.Connect, hooks.Request{})
	if err != nil || a.User != "u7" {
		t.Fatalf("Call = %+v, %v; want user u7", a, err)
	}
	if got := b.requests.Load(); got != 2 {
		t.Errorf("the backend got %d requests, want 2", got)
	}
}

// TestRetriesStayWithinTimeout: retries stop when the timeout leaves no
// time for them.
func TestRetriesStayWithinTimeout(t *testing.T) {
	t.Parallel()
	b := newBackend(t, reply(http.StatusInternalServerError, ""))
	cfg := allHooks(b)
	cfg.Retries = 1000
	cfg.Timeout = 300 * time.Millisecond
	h := newHooks(t, cfg)
	start := time.Now()
	_, err := h.Call(t.Context(), hooks.Connect, hooks.Request{})
	// The last attempt may be cut by the deadline: an error or a timeout.
	wantUnavailable(t, err, broker.ErrUnavailable)
	if took := time.Since(start); took > cfg.Timeout+slack {
		t.Errorf("took %v, want at most about %v", took, cfg.Timeout)
	}
	if n := b.requests.Load(); n < 2 || n > 20 {
		t.Errorf("the backend got %d requests, want a few (jittered backoff)", n)
	}
}

// TestOversizedAnswer: an answer over MaxAnswerBytes fails as
// unavailable, whether its length is announced or not.
func TestOversizedAnswer(t *testing.T) {
	t.Parallel()
	const max = 1000
	body := `{"allow": true, "info": {"a": "` + strings.Repeat("x", max) + `"}}`
	for _, tc := range []struct {
		name    string
		chunked bool
		body    string
		ok      bool
	}{
		{"announced", false, body, false},
		{"chunked", true, body, false},
		{"at the bound", false, `{"allow":true}` + strings.Repeat(" ", max-len(`{"allow":true}`)), true},
		{"at the bound, chunked", true, `{"allow":true}` + strings.Repeat(" ", max-len(`{"allow":true}`)), true},
		{"one byte over, chunked", true, `{"allow":true}` + strings.Repeat(" ", max+1-len(`{"allow":true}`)), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := newBackend(t, func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				if !tc.chunked {
					w.Header().Set("Content-Length", strconv.Itoa(len(tc.body)))
				}
				half := len(tc.body) / 2
				_, _ = io.WriteString(w, tc.body[:half])
				if tc.chunked {
					http.NewResponseController(w).Flush()
				}
				_, _ = io.WriteString(w, tc.body[half:])
			})
			cfg := allHooks(b)
			cfg.MaxAnswerBytes = max
			log, lines := logger()
			cfg.Logger = log
			h := newHooks(t, cfg)
			_, err := h.Call(t.Context(), hooks.Connect, hooks.Request{})
			if tc.ok {
				if err != nil {
					t.Fatalf("Call: %v", err)
				}
				return
			}
			wantUnavailable(t, err, hooks.ErrBackend)
			if s := lines.String(); !strings.Contains(s, "larger than 1000 bytes") {
				t.Errorf("the log %q does not say the answer was too large", s)
			}
		})
	}
}

// TestFailuresAreLoggedOnceASecond: a failing backend gives one log line
// a second per hook, with the detail the client is not told and the
// count of lines left out.
func TestFailuresAreLoggedOnceASecond(t *testing.T) {
	t.Parallel()
	b := newBackend(t, reply(http.StatusBadGateway, ""))
	cfg := allHooks(b)
	cfg.Retries = -1
	log, lines := logger()
	cfg.Logger = log
	h := newHooks(t, cfg)
	for range 5 {
		_, err := h.Call(t.Context(), hooks.Subscribe, hooks.Request{})
		wantUnavailable(t, err, hooks.ErrBackend)
		if strings.Contains(err.Error(), "502") {
			t.Errorf("the client would be told %q", err)
		}
	}
	if _, err := h.Call(t.Context(), hooks.Connect, hooks.Request{}); err == nil {
		t.Fatal("connect did not fail")
	}
	s := lines.String()
	if n := strings.Count(s, "hook=subscribe"); n != 1 {
		t.Errorf("logged %d subscribe lines, want 1:\n%s", n, s)
	}
	if n := strings.Count(s, "hook=connect"); n != 1 {
		t.Errorf("logged %d connect lines, want 1:\n%s", n, s)
	}
	if !strings.Contains(s, "status 502") {
		t.Errorf("the log does not give the status:\n%s", s)
	}
}
