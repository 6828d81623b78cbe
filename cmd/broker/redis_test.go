package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tidings-io/tidings/internal/redistest"
)

// TestTwoNodesOnOneRedis runs two brokers through run with -redis: a
// message published on one reaches a subscriber on the other, and the
// topic has one offset sequence across both.
func TestTwoNodesOnOneRedis(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	a := startNode(t, nil, "-redis", srv.URL())
	b := startNode(t, map[string]string{"TIDINGS_REDIS": srv.URL()})
	deadline := time.Now().Add(20 * time.Second)
	sub, _ := openSession(t, b.addr, deadline, "cmd.two.nodes", "cmd.>")
	hc := newHTTPClient(t)
	for i, n := range []*node{a, b} {
		status, reply, err := publish(hc, n.addr, "cmd.two.nodes", `{"n":1}`)
		if err != nil || status != http.StatusOK || reply.Offset != uint64(i+1) {
			t.Fatalf("publish on node %d: %d %+v %v, want offset %d", i, status, reply, err, i+1)
		}
	}
	// Each message arrives once per subscription, exact and wildcard, in
	// offset order per subscription.
	next := map[string]uint64{"": 1, "cmd.>": 1}
	for i := 0; i < 4; i++ {
		f, err := sub.Expect("message", deadline)
		if err != nil {
			t.Fatal(err)
		}
		if f.Topic != "cmd.two.nodes" || f.Offset != next[f.Sub] {
			t.Fatalf("got %s offset %d sub %q, want offset %d", f.Topic, f.Offset, f.Sub, next[f.Sub])
		}
		next[f.Sub]++
	}
}

// publishes publishes one message on n and checks it is stored with the
// offset want.
func publishes(t *testing.T, n *node, topic string, want uint64) {
	t.Helper()
	status, reply, err := publish(newHTTPClient(t), n.addr, topic, `{"n":1}`)
	if err != nil || status != http.StatusOK || reply.Offset != want {
		t.Fatalf("publish: %d %+v %v, want offset %d", status, reply, err, want)
	}
}

// TestRedisACLUserAndTLSFromEnvironment runs a node configured as a Helm
// chart would: the URL, the user and the TLS files from the environment,
// the password from TIDINGS_REDIS_PASSWORD (a Secret), against a Redis
// that serves TLS only, wants a client certificate and has the default
// user off. The password is never logged.
func TestRedisACLUserAndTLSFromEnvironment(t *testing.T) {
	t.Parallel()
	srv := redistest.StartWith(t, redistest.Options{Username: "alice", Password: "pw-alice-0123", TLS: true, TLSAuthClients: "yes"})
	n := startNode(t, map[string]string{
		"TIDINGS_REDIS":          "rediss://" + srv.Addr() + "/0",
		"TIDINGS_REDIS_USERNAME": "alice",
		"TIDINGS_REDIS_PASSWORD": "pw-alice-0123",
		"TIDINGS_REDIS_TLS_CA":   srv.CA.CertFile,
		"TIDINGS_REDIS_TLS_CERT": srv.ClientCertFile,
		"TIDINGS_REDIS_TLS_KEY":  srv.ClientKeyFile,
	})
	publishes(t, n, "auth.tls.env", 1)
	n.stop(t, 30*time.Second)
	if strings.Contains(n.log.String(), "pw-alice-0123") {
		t.Errorf("the password is in the log:\n%s", n.log.String())
	}
}

// TestRedisPasswordFileAndTLSFlags: the password from a file (a mounted
// Secret), -redis-tls on a redis:// URL, the CA and the server name from
// flags.
func TestRedisPasswordFileAndTLSFlags(t *testing.T) {
	t.Parallel()
	srv := redistest.StartWith(t, redistest.Options{Password: "pw-file-0123", TLS: true})
	passFile := filepath.Join(t.TempDir(), "redis-password")
	if err := os.WriteFile(passFile, []byte("pw-file-0123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	n := startNode(t, nil, "-redis", "redis://"+srv.Addr()+"/0", "-redis-password-file", passFile,
		"-redis-tls", "-redis-tls-ca", srv.CA.CertFile, "-redis-tls-server-name", "localhost")
	publishes(t, n, "auth.file.flags", 1)
}

// TestRedisSentinelPasswordsFromEnvironment: a sentinel with a password
// of its own in front of a master with another, both from the
// environment.
func TestRedisSentinelPasswordsFromEnvironment(t *testing.T) {
	t.Parallel()
	master := redistest.StartWith(t, redistest.Options{Password: "pw-master-0123"})
	sentinel := redistest.StartSentinelWith(t, master, redistest.SentinelOptions{Password: "pw-sentinel-0123"})
	n := startNode(t, map[string]string{
		"TIDINGS_REDIS_SENTINEL":          "mymaster@" + sentinel.Addr(),
		"TIDINGS_REDIS_PASSWORD":          "pw-master-0123",
		"TIDINGS_REDIS_SENTINEL_PASSWORD": "pw-sentinel-0123",
	})
	publishes(t, n, "auth.sentinel", 1)
	n.stop(t, 30*time.Second)
	if log := n.log.String(); strings.Contains(log, "pw-master-0123") || strings.Contains(log, "pw-sentinel-0123") {
		t.Errorf("a password is in the log:\n%s", log)
	}
}

// TestRedisWrongPasswordAtStartup: a password Redis refuses stops the
// node at startup with exit status 2 and a line that says so, without
// the password or Redis's address.
func TestRedisWrongPasswordAtStartup(t *testing.T) {
	t.Parallel()
	srv := redistest.StartWith(t, redistest.Options{Password: "pw-right-0123"})
	for name, env := range map[string]map[string]string{
		"wrong":   {"TIDINGS_REDIS": srv.URL(), "TIDINGS_REDIS_PASSWORD": "pw-wrong-0123"},
		"missing": {"TIDINGS_REDIS": srv.URL()},
		"in URL":  {"TIDINGS_REDIS": "redis://:pw-wrong-0123@" + srv.Addr()},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			var stdout, stderr bytes.Buffer
			err := run(context.Background(), []string{"-addr", "127.0.0.1:0"}, envOf(env), &stdout)
			if code := exitCode(err, &stderr); code != 2 {
				t.Fatalf("exit code %d (%v), want 2", code, err)
			}
			line := stderr.String()
			if !strings.Contains(line, "authentication refused") || strings.Count(line, "\n") != 1 {
				t.Errorf("stderr %q, want one line saying the authentication was refused", line)
			}
			_, port, _ := net.SplitHostPort(srv.Addr())
			for _, s := range []string{"pw-wrong-0123", "pw-right-0123", port} {
				if strings.Contains(line+stdout.String(), s) {
					t.Errorf("%q shows in stderr %q or the log\n%s", s, line, stdout.String())
				}
			}
			if strings.Contains(stdout.String(), `"msg":"listening"`) {
				t.Error("the node started listening")
			}
		})
	}
}

// TestGoRedisLogsAreRecords: when Redis goes away, go-redis's own log
// lines (its failed dials) come out as JSON records of the node's log,
// and neither they nor the node's own records name Redis's address.
func TestGoRedisLogsAreRecords(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	n := startNode(t, nil, "-redis", srv.URL(), "-redis-timeout", "500ms")
	publishes(t, n, "gorelog.t", 1)
	// Killed only once the health check has seen Redis up, so that it
	// logs Redis going down.
	if _, err := n.log.waitRecord("redis reachable", 20*time.Second, n.done); err != nil {
		t.Fatal(err)
	}
	srv.Kill()
	// go-redis's lines reach every open store's logger: nodes of other
	// tests may log some of theirs here too.
	rec := waitRecordWhere(t, n.log, 20*time.Second, func(rec map[string]any) bool {
		return rec["msg"] == "go-redis" && strings.Contains(fmt.Sprint(rec["detail"]), "failed to dial")
	})
	if rec["level"] != "WARN" || rec["node"] == nil {
		t.Errorf("go-redis record %v, want a warning, with the node", rec)
	}
	if _, err := n.log.waitRecord("redis unreachable", 20*time.Second, n.done); err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(srv.Addr())
	for _, l := range n.log.Lines() {
		if strings.Contains(l, srv.Addr()) || strings.Contains(l, ":"+port) {
			t.Errorf("a log line names Redis's address: %s", l)
		}
		if !strings.HasPrefix(l, "{") {
			t.Errorf("a log line is not a JSON record: %s", l)
		}
	}
}

// waitRecordWhere waits for the first JSON record of log that match
// accepts.
func waitRecordWhere(t *testing.T, log *logSink, within time.Duration, match func(map[string]any) bool) map[string]any {
	t.Helper()
	rec, err := log.waitMatch("matching", within, nil, match)
	if err != nil {
		t.Fatalf("%v; log:\n%s", err, log.String())
	}
	return rec
}
