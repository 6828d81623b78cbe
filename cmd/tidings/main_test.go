package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tidings-io/tidings/auth"
	"github.com/tidings-io/tidings/broker"
	"github.com/tidings-io/tidings/control/node"
	"github.com/tidings-io/tidings/internal/testkit"
	"github.com/tidings-io/tidings/internal/wstest"
	"github.com/tidings-io/tidings/session"
	"github.com/tidings-io/tidings/store/memory"
	"github.com/tidings-io/tidings/transport/httpapi"
	"github.com/tidings-io/tidings/transport/ws"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// broker is a node in process: memory store, control plane with presence,
// WebSocket server (with token authentication when secret is set) and the
// HTTP API, behind a real listener.
type testBroker struct {
	b   *broker.Broker
	url string
}

func startBroker(t *testing.T, secret string) *testBroker {
	t.Helper()
	st := memory.New(memory.Config{})
	b := broker.New(broker.Config{}, st, ws.Encoder{})
	ctl := node.New(node.Config{Broker: b, Backend: st, ID: "cli-node", Presence: true})
	if err := ctl.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	wcfg := ws.Config{NodeID: "cli-node", CloseTimeout: time.Second, Services: session.Services{Registry: ctl, Presence: ctl}}
	if secret != "" {
		v, err := auth.New(auth.Config{HMACKey: []byte(secret)})
		if err != nil {
			t.Fatal(err)
		}
		v.CheckRevocation(ctl.Check)
		wcfg.Tokens = v
	}
	wsrv := ws.New(wcfg, b)
	srv := httptest.NewServer(httpapi.New(httpapi.Config{Control: ctl}, b, wsrv))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = wsrv.Shutdown(ctx)
		srv.Close()
		ctl.Close()
		_ = st.Close()
	})
	return &testBroker{b: b, url: srv.URL}
}

// result is what a command printed and its exit status.
type result struct {
	code           int
	stdout, stderr string
}

// tidings runs the command line args with stdin and no TIDINGS_*
// environment but env.
func tidings(ctx context.Context, stdin string, env map[string]string, args ...string) result {
	var out, errOut bytes.Buffer
	code := run(ctx, args, envOf(stdin, &out, &errOut, env))
	return result{code, out.String(), errOut.String()}
}

func envOf(stdin string, out, errOut *bytes.Buffer, vars map[string]string) env {
	return env{stdin: strings.NewReader(stdin), stdout: out, stderr: errOut, getenv: func(k string) string { return vars[k] }}
}

func mustRun(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	r := tidings(context.Background(), stdin, nil, args...)
	if r.code != exitOK {
		t.Fatalf("tidings %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

// sub receives what pub sends, in order, from an argument and from
// stdin, and stops after --count.
func TestSubReceivesWhatPubSends(t *testing.T) {
	t.Parallel()
	br := startBroker(t, "")
	var wg sync.WaitGroup
	var sub result
	wg.Add(1)
	go func() {
		defer wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		sub = tidings(ctx, "", map[string]string{"TIDINGS_URL": br.url}, "sub", "cli.>", "--count", "4")
	}()
	testkit.Eventually(t, 10*time.Second, func() error {
		if n := br.b.Stats().WildcardSubscriptions; n != 1 {
			return fmt.Errorf("%d wildcard subscriptions, want the sub's", n)
		}
		return nil
	})
	if out := mustRun(t, "", "pub", "cli.a", `{"n":1}`, "--url", br.url); !strings.Contains(out, "cli.a offset 1 epoch") {
		t.Fatalf("pub printed %q", out)
	}
	if out := mustRun(t, "2\nplain text\n{\"n\":4}\n", "pub", "--url", br.url, "cli.a", "-"); out != "published 3 messages to cli.a\n" {
		t.Fatalf("pub - printed %q", out)
	}
	wg.Wait()
	if sub.code != exitOK {
		t.Fatalf("sub: exit %d: %s", sub.code, sub.stderr)
	}
	lines := strings.Split(strings.TrimSpace(sub.stdout), "\n")
	wantData := []string{`{"n":1}`, `2`, `"plain text"`, `{"n":4}`}
	if len(lines) != len(wantData) {
		t.Fatalf("sub printed %q, want 4 lines", sub.stdout)
	}
	for i, l := range lines {
		var m subLine
		if err := json.Unmarshal([]byte(l), &m); err != nil || m.Topic != "cli.a" || m.Offset != uint64(i+1) || string(m.Data) != wantData[i] || m.Sub != "cli.>" {
			t.Errorf("line %d = %s (%v), want offset %d data %s through cli.>", i, l, err, i+1, wantData[i])
		}
	}
	// --raw prints the data only; --since resumes an exact topic.
	var first subLine
	_ = json.Unmarshal([]byte(lines[0]), &first)
	raw := mustRun(t, "", "sub", "--url", br.url, "cli.a", "--raw", "--count", "2", "--since", fmt.Sprintf("2@%s", first.Epoch))
	if raw != "\"plain text\"\n{\"n\":4}\n" {
		t.Errorf("sub --raw --since 2 printed %q, want offsets 3 and 4's data", raw)
	}
}

// A token from `tidings token` opens a session on a broker with that
// secret, as its user, and is refused by one with another; token check
// says the same.
func TestTokenIsAcceptedByItsSecretOnly(t *testing.T) {
	t.Parallel()
	const secret = "cli-test-secret-0123456789abcdef-0123"
	const other = "another-secret-0123456789abcdef-01234"
	tok := strings.TrimSpace(mustRun(t, "", "token", "--secret", secret, "--sub", "alice", "--subscribe", "chat.>,news.*", "--ttl", "10m", "--jti", "t-1"))
	good, bad := startBroker(t, secret), startBroker(t, other)
	c := wstest.Dial(t, "ws"+strings.TrimPrefix(good.url, "http")+"/v1/ws?token="+tok)
	if c.Welcome.User != "alice" {
		t.Fatalf("welcome %s, want user alice", c.Welcome.Raw)
	}
	c.Subscribe("chat.lobby")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := wstest.Open(ctx, "ws"+strings.TrimPrefix(bad.url, "http")+"/v1/ws?token="+tok); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("a broker with another secret: %v, want 401", err)
	}
	if out := mustRun(t, "", "token", "check", tok, "--secret", secret); !strings.Contains(out, `valid: sub "alice"`) || !strings.Contains(out, "jti: t-1") {
		t.Errorf("token check printed %q", out)
	}
	r := tidings(context.Background(), "", map[string]string{"TIDINGS_JWT_KEY": other}, "token", "check", tok)
	if r.code != exitError || !strings.Contains(r.stderr, "the broker would refuse it") {
		t.Errorf("token check with another secret: exit %d %q", r.code, r.stderr)
	}
	if r := tidings(context.Background(), "", nil, "token", "--secret", "short", "--sub", "x"); r.code != exitUsage {
		t.Errorf("a short secret: exit %d %q, want 2", r.code, r.stderr)
	}
}

// The server API's commands print the broker's answers.
func TestServerCommands(t *testing.T) {
	t.Parallel()
	const secret = "cli-test-secret-0123456789abcdef-0123"
	br := startBroker(t, secret)
	tok := strings.TrimSpace(mustRun(t, "", "token", "--secret", secret, "--sub", "bob", "--subscribe", ">"))
	c := wstest.Dial(t, "ws"+strings.TrimPrefix(br.url, "http")+"/v1/ws?token="+tok)
	c.Subscribe("room.1")
	mustRun(t, "", "pub", "--url", br.url, "room.1", `"hi"`)
	c.Expect("message")
	testkit.Eventually(t, 10*time.Second, func() error {
		if out := mustRun(t, "", "presence", "--url", br.url, "room.1", "--stats"); !strings.Contains(out, `"Sessions": 1`) {
			return fmt.Errorf("presence --stats printed %s", out)
		}
		return nil
	})
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"info"}, `"ID": "cli-node"`},
		{[]string{"presence", "room.1"}, `"User": "bob"`},
		{[]string{"history", "room.1", "--limit", "1"}, `"Data": "hi"`},
		{[]string{"topics", "room.>"}, `"Topic": "room.1"`},
	} {
		if out := mustRun(t, "", append(tc.args, "--url", br.url)...); !strings.Contains(out, tc.want) {
			t.Errorf("tidings %v printed %s, want %s in it", tc.args, out, tc.want)
		}
	}
	mustRun(t, "", "disconnect", "--url", br.url, "--user", "bob", "--code", "4501", "--reason", "bye")
	if ce := c.WaitClose(); ce.Code != 4501 || ce.Reason != "bye" {
		t.Fatalf("closed with %d %q, want 4501 bye", ce.Code, ce.Reason)
	}
	mustRun(t, "", "revoke", "--url", br.url, "--user", "bob")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := wstest.Open(ctx, "ws"+strings.TrimPrefix(br.url, "http")+"/v1/ws?token="+tok); err == nil || !strings.Contains(err.Error(), "token revoked") {
		t.Fatalf("connect after tidings revoke: %v, want 401 token revoked", err)
	}
}

// config example is a file config check accepts; a bad file is refused
// with its line.
func TestConfigCheck(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	good := filepath.Join(dir, "tidings.yaml")
	if err := os.WriteFile(good, []byte(mustRun(t, "", "config", "example")), 0o600); err != nil {
		t.Fatal(err)
	}
	if out := mustRun(t, "", "config", "check", good); out == "" {
		t.Error("config check printed nothing for a good file")
	}
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("history-size: 10\nno-such-key: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := tidings(context.Background(), "", nil, "config", "check", bad)
	if r.code != exitError || !strings.Contains(r.stderr, "bad.yaml") || !strings.Contains(r.stderr, "2") || !strings.Contains(r.stderr, "no-such-key") {
		t.Errorf("config check on a bad file: exit %d %q, want 1 naming the file, line 2 and the key", r.code, r.stderr)
	}
}

// bench measures a broker and prints rates and percentiles.
func TestBench(t *testing.T) {
	t.Parallel()
	br := startBroker(t, "")
	out := mustRun(t, "", "bench", "--url", br.url, "--msgs", "200", "--subs", "2", "--batch", "10", "--size", "16")
	for _, want := range []string{"200 messages of 16 bytes", "published", "delivered", "latency p50"} {
		if !strings.Contains(out, want) {
			t.Errorf("bench printed %q, want %q in it", out, want)
		}
	}
}

// Bad command lines exit 2 with the usage; --help exits 0 with an example.
func TestUsage(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{}, {"nope"}, {"sub"}, {"pub"}, {"pub", "a.b", "not json"}, {"disconnect"}, {"sub", "a", "--since", "x"}, {"history"}, {"config"}} {
		if r := tidings(context.Background(), "", nil, args...); r.code != exitUsage {
			t.Errorf("tidings %q: exit %d, want 2 (%s)", args, r.code, r.stderr)
		}
	}
	for name := range commands {
		r := tidings(context.Background(), "", nil, name, "--help")
		if r.code != exitOK || !strings.Contains(r.stdout, "Example:") || !strings.Contains(r.stdout, "--url") {
			t.Errorf("tidings %s --help: exit %d %q", name, r.code, r.stdout)
		}
	}
	if r := tidings(context.Background(), "", nil, "--help"); r.code != exitOK || !strings.Contains(r.stdout, "bench") {
		t.Errorf("tidings --help: exit %d %q", r.code, r.stdout)
	}
}

// Ctrl-C (the context ending) stops sub with exit status 0.
func TestSubExitsZeroOnInterrupt(t *testing.T) {
	t.Parallel()
	br := startBroker(t, "")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan result, 1)
	go func() { done <- tidings(ctx, "", nil, "sub", "--url", br.url, "quiet.topic") }()
	testkit.Eventually(t, 10*time.Second, func() error {
		if n := br.b.Stats().ExactSubscriptions; n != 1 {
			return fmt.Errorf("%d subscriptions, want the sub's", n)
		}
		return nil
	})
	cancel()
	select {
	case r := <-done:
		if r.code != exitOK {
			t.Fatalf("sub after Ctrl-C: exit %d %s", r.code, r.stderr)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("sub did not stop on Ctrl-C")
	}
}
