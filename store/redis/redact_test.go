package redis

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/tidings-io/tidings/broker"
)

func TestRedactText(t *testing.T) {
	t.Parallel()
	r := newRedactor(Config{
		URL:  "redis://url-user:url%21pass@redis-primary.prod.svc:6380/0",
		Auth: Auth{Password: "hunter2-secret", SentinelUsername: "sentry", SentinelPassword: "sentinel-secret"},
	})
	for _, tc := range []struct{ in, want string }{
		{"dial tcp 10.1.2.3:6379: connect: connection refused", "dial tcp [redacted]: connect: connection refused"},
		{"dial tcp [::1]:6379: connect: connection refused", "dial tcp [redacted]: connect: connection refused"},
		{"dial tcp [fe80::1%eth0]:6379: i/o timeout", "dial tcp [redacted]: i/o timeout"},
		{"read tcp 127.0.0.1:51234->127.0.0.1:6379: read: connection reset by peer", "read tcp [redacted]->[redacted]: read: connection reset by peer"},
		{"lookup redis-primary.prod.svc on 10.96.0.10:53: no such host", "lookup [redacted] on [redacted]: no such host"},
		{"dial tcp: lookup redis-primary.prod.svc: no such host", "dial tcp: lookup [redacted]: no such host"},
		{"MOVED 3999 redis-2.redis:6381", "MOVED 3999 [redacted]"},
		{"addr ::1 and 2001:db8::7", "addr [redacted] and [redacted]"},
		{`parse "redis://u:p@h:x": invalid port`, `parse "[redacted]": invalid port`},
		{"AUTH hunter2-secret failed", "AUTH [redacted] failed"},
		{"user url-user with url!pass", "user [redacted] with [redacted]"},
		{"sentinel sentry sentinel-secret", "sentinel [redacted] [redacted]"},
		{"x509: certificate is valid for redis-a, redis-b, not redis-c", "x509: certificate is valid for [redacted], not [redacted]"},
		// What names nothing is left as it is.
		{"WRONGPASS invalid username-password pair or user is disabled.", "WRONGPASS invalid username-password pair or user is disabled."},
		{"ERR user_script:12: Script attempted to access nonexistent global variable", "ERR user_script:12: Script attempted to access nonexistent global variable"},
		{"redis: connection pool: failed to dial after 5 attempts", "redis: connection pool: failed to dial after 5 attempts"},
		{"context deadline exceeded", "context deadline exceeded"},
		{"default user", "default user"},
	} {
		if got := r.text(tc.in); got != tc.want {
			t.Errorf("text(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestRedactedErrorKeepsIs(t *testing.T) {
	t.Parallel()
	r := newRedactor(Config{URL: "redis://:pw-123@10.0.0.1:6379"})
	err := r.err(fmt.Errorf("redis: publishing via 10.0.0.1:6379 with pw-123: %w", context.DeadlineExceeded))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("errors.Is(%v, DeadlineExceeded) = false", err)
	}
	if errors.Unwrap(err) != nil {
		t.Errorf("a redacted error unwraps to %v: the original text would be reachable", errors.Unwrap(err))
	}
	if got, want := err.Error(), "redis: publishing via [redacted] with [redacted]: context deadline exceeded"; got != want {
		t.Errorf("text %q, want %q", got, want)
	}
	if r.err(err) != err || r.err(nil) != nil || r.err(ErrClosed) != ErrClosed {
		t.Error("err is not the identity on nil, ErrClosed and redacted errors")
	}
	part := r.err(fmt.Errorf("%w: 1 of 2 topics: %w", broker.ErrPartialBatch, err))
	if !errors.Is(part, broker.ErrPartialBatch) || !errors.Is(part, context.DeadlineExceeded) {
		t.Errorf("%v: want errors.Is to see ErrPartialBatch and DeadlineExceeded", part)
	}
	auth := r.wrap(ErrAuth, errors.New("WRONGPASS from 10.0.0.1:6379"))
	if !errors.Is(auth, ErrAuth) || auth.Error() != ErrAuth.Error()+": WRONGPASS from [redacted]" {
		t.Errorf("wrap: %v", auth)
	}
}

// collect is a slog.Handler that keeps the records' messages, levels and
// attributes.
type collect struct {
	mu   sync.Mutex
	recs []string
}

func (c *collect) Enabled(context.Context, slog.Level) bool { return true }
func (c *collect) WithAttrs([]slog.Attr) slog.Handler       { return c }
func (c *collect) WithGroup(string) slog.Handler            { return c }
func (c *collect) Handle(_ context.Context, r slog.Record) error {
	line := r.Level.String() + " " + r.Message
	r.Attrs(func(a slog.Attr) bool {
		line += fmt.Sprintf(" %s=%v", a.Key, a.Value)
		return true
	})
	c.mu.Lock()
	c.recs = append(c.recs, line)
	c.mu.Unlock()
	return nil
}

func (c *collect) lines(token string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, l := range c.recs {
		if strings.Contains(l, token) {
			out = append(out, l)
		}
	}
	return out
}

// TestGoRedisLoggerMakesRecords calls go-redis's logger as go-redis does:
// each line is a record of every open store's logger, redacted with its
// secrets, at warn for a failure; a repeated line is counted, not logged.
func TestGoRedisLoggerMakesRecords(t *testing.T) {
	t.Parallel()
	var a, b collect
	sa := &Store{log: slog.New(&a), red: newRedactor(Config{URL: "redis://:pw-a@redis-a:6379"})}
	sb := &Store{log: slog.New(&b), red: newRedactor(Config{URL: "redis://redis-b:6379"})}
	logGoRedisTo(sa)
	logGoRedisTo(sb)
	defer stopLoggingGoRedisTo(sa)
	defer stopLoggingGoRedisTo(sb)
	var l goRedisLogger
	ctx := context.Background()
	token := fmt.Sprintf("tok%p", &a) // unique to this test: other stores' sinks may be open
	for range 3 {
		l.Printf(ctx, "redis: connection pool: failed to dial after %d attempts: %v (%s)", 5,
			errors.New("dial tcp 10.9.8.7:6379: connect: connection refused; lookup redis-a; pw-a"), token)
	}
	l.Printf(ctx, "sentinel: selected addr=%s masterAddr=%s %s", "10.0.0.5:26379", "10.0.0.6:6379", token)
	want := []string{
		"WARN go-redis detail=redis: connection pool: failed to dial after 5 attempts: dial tcp [redacted]: connect: connection refused; lookup [redacted]; [redacted] (" + token + ")",
		"INFO go-redis detail=sentinel: selected addr=[redacted] masterAddr=[redacted] " + token,
	}
	if got := a.lines(token); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("store a got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if got := b.lines(token); len(got) != 2 || !strings.Contains(got[0], "dial tcp [redacted]") {
		t.Errorf("store b got %q, want the same two records", got)
	}
	// Once the window is over, the next record counts the lines left out.
	goRedisLog.mu.Lock()
	for _, k := range goRedisLog.sinks {
		if k.store == sa {
			for text, r := range k.seen {
				r.at = r.at.Add(-repeatWindow)
				k.seen[text] = r
			}
		}
	}
	goRedisLog.mu.Unlock()
	l.Printf(ctx, "redis: connection pool: failed to dial after %d attempts: %v (%s)", 5,
		errors.New("dial tcp 10.9.8.7:6379: connect: connection refused; lookup redis-a; pw-a"), token)
	if got := a.lines(token); len(got) != 3 || !strings.HasSuffix(got[2], " repeated=2") {
		t.Errorf("store a got %q, want a third record with repeated=2", got)
	}
	stopLoggingGoRedisTo(sb)
	l.Printf(ctx, "after b closed %s", token)
	if got := b.lines("after b closed"); len(got) != 0 {
		t.Errorf("a closed store got %q", got)
	}
}

func TestLineLevel(t *testing.T) {
	t.Parallel()
	for line, want := range map[string]slog.Level{
		"redis: connection pool: failed to dial after 5 attempts: x": slog.LevelWarn,
		"sentinel: GetMasterAddrByName name=\"m\" failed: x":         slog.LevelWarn,
		"addIdleConn panic: x":                   slog.LevelWarn,
		"sentinel: selected addr=x masterAddr=y": slog.LevelInfo,
		"sentinel: new master=\"m\" addr=\"x\"":  slog.LevelInfo,
	} {
		if got := lineLevel(line); got != want {
			t.Errorf("lineLevel(%q) = %v, want %v", line, got, want)
		}
	}
}
