package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tidings-io/tidings/internal/testkit"
)

// The README's walk-through, step by step against a broker process: a
// config file from `config example` with its namespaces, a token from
// `token`, `sub` receiving what `pub` sends, and each namespace's rules
// seen through `history` and `presence`.
func TestREADMEWalkThrough(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the broker binary")
	}
	t.Parallel()
	const secret = "walk-through-secret-0123456789abcdef-01"
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "tidings.yaml")
	if err := os.WriteFile(cfgFile, []byte(mustRun(t, "", "config", "example")), 0o600); err != nil {
		t.Fatal(err)
	}
	mustRun(t, "", "config", "check", cfgFile)
	url := startBrokerProcess(t, map[string]string{"TIDINGS_JWT_KEY": secret}, "-config", cfgFile, "-addr", "127.0.0.1:0", "-demo=false")
	env := map[string]string{"TIDINGS_URL": url, "TIDINGS_JWT_KEY": secret}
	r := tidings(context.Background(), "", env, "token", "--sub", "alice", "--subscribe", ">", "--publish", "chat.>", "--ttl", "1h")
	if r.code != exitOK {
		t.Fatalf("token: %d %s", r.code, r.stderr)
	}
	env["TIDINGS_TOKEN"] = strings.TrimSpace(r.stdout)

	var wg sync.WaitGroup
	var sub result
	wg.Add(1)
	go func() {
		defer wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		sub = tidings(ctx, "", env, "sub", "chat.lobby", "prices.>", "--count", "21")
	}()
	call := func(args ...string) result { return tidings(context.Background(), "", env, args...) }
	// chat.> keeps presence: alice's sub is there once it has subscribed.
	testkit.Eventually(t, 20*time.Second, func() error {
		if r := call("presence", "chat.lobby"); r.code != exitOK || !strings.Contains(r.stdout, `"User": "alice"`) {
			return fmt.Errorf("presence chat.lobby: %d %s %s", r.code, r.stdout, r.stderr)
		}
		return nil
	})
	if r := call("pub", "chat.lobby", `{"text":"hello"}`); r.code != exitOK {
		t.Fatalf("pub: %d %s", r.code, r.stderr)
	}
	if r := call("pub", "prices.eur.usd", "--count", "20"); r.code != exitOK {
		t.Fatalf("pub --count 20: %d %s", r.code, r.stderr)
	}
	wg.Wait()
	if sub.code != exitOK || strings.Count(sub.stdout, "\n") != 21 || !strings.Contains(sub.stdout, `"data":{"text":"hello"}`) {
		t.Fatalf("sub: exit %d, printed %q (%s)", sub.code, sub.stdout, sub.stderr)
	}
	// prices.> keeps 10 messages.
	r = call("history", "prices.eur.usd")
	var h struct{ Messages []struct{ Offset uint64 } }
	if r.code != exitOK || json.Unmarshal([]byte(r.stdout), &h) != nil || len(h.Messages) != 10 || h.Messages[0].Offset != 11 {
		t.Fatalf("history prices.eur.usd: %d %s, want offsets 11 to 20", r.code, r.stdout)
	}
	// prices.> has no presence.
	if r := call("presence", "prices.eur.usd"); r.code != exitError || !strings.Contains(r.stderr, "bad_request") {
		t.Fatalf("presence prices.eur.usd: %d %s %s, want a bad_request", r.code, r.stdout, r.stderr)
	}
}

// startBrokerProcess builds and starts the broker with args and env,
// and returns its base URL once it listens; it is killed at cleanup.
func startBrokerProcess(t *testing.T, env map[string]string, args ...string) string {
	t.Helper()
	cmd := exec.Command(testkit.BuildBroker(t), args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TIDINGS_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var rec struct{ Msg, Addr string }
			if json.Unmarshal(sc.Bytes(), &rec) == nil && rec.Msg == "listening" {
				addr <- rec.Addr
			}
		}
		_, _ = io.Copy(io.Discard, out)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	select {
	case a := <-addr:
		return "http://" + a
	case <-time.After(30 * time.Second):
		t.Fatal("the broker did not log that it listens")
		return ""
	}
}
