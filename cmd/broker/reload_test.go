package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	tdconfig "github.com/tidings-io/tidings/config"
	"github.com/tidings-io/tidings/internal/testkit"
	"github.com/tidings-io/tidings/internal/wstest"
)

// records returns the JSON log records whose msg is msg.
func (s *logSink) records(msg string) []map[string]any {
	var out []map[string]any
	for _, l := range s.Lines() {
		var rec map[string]any
		if json.Unmarshal([]byte(l), &rec) == nil && rec["msg"] == msg {
			out = append(out, rec)
		}
	}
	return out
}

// waitRecords waits until the log holds n records whose msg is msg and
// returns the nth.
func (n *node) waitRecords(t *testing.T, msg string, count int) map[string]any {
	t.Helper()
	var rec map[string]any
	testkit.Eventually(t, 10*time.Second, func() error {
		recs := n.log.records(msg)
		if len(recs) < count {
			return fmt.Errorf("%d %q log records, want %d", len(recs), msg, count)
		}
		rec = recs[count-1]
		return nil
	})
	return rec
}

// hup sends SIGHUP to the test process, which every node it runs
// handles: the tests that send it do not run in parallel with others.
func hup(t *testing.T) {
	t.Helper()
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
}

// strs reads a log attribute that is a list of strings.
func strs(v any) []string {
	var out []string
	list, _ := v.([]any)
	for _, x := range list {
		out = append(out, fmt.Sprint(x))
	}
	return out
}

const reloadBefore = `
max-subscriptions: 10
max-body-size: 100000
namespaces:
  - pattern: "room.>"
    presence: false
`

const reloadAfter = `
max-subscriptions: 2
max-body-size: 200
op-rate: 2000
shards: 8
namespaces:
  - pattern: "room.>"
    presence: true
  - pattern: "private.*"
    anonymous_subscribe: false
  - pattern: "small.>"
    max_message_size: 8
`

// TestReloadUnderLoad: SIGHUP rereads the config file while sessions
// receive a steady stream; none of them is dropped or misses a message,
// and the new namespaces and limits apply at once, to the sessions
// already open too. A setting that cannot change live is named in the
// log and keeps its value; a file with a fault changes nothing.
func TestReloadUnderLoad(t *testing.T) {
	path := writeConfig(t, reloadBefore)
	n := startNode(t, nil, "-config", path, "-demo=false")
	wsURL := "ws://" + n.addr + "/v1/ws"
	hc := newHTTPClient(t)

	// The load: sessions that read every message of load.t, in order,
	// while a publisher publishes to it without pause.
	const sessions = 20
	var last [sessions]atomic.Uint64
	var wg sync.WaitGroup
	readErrs := make(chan error, sessions)
	ctx, cancel := context.WithCancel(context.Background())
	var conns []*wstest.Conn
	for i := range sessions {
		c := wstest.Dial(t, wsURL)
		c.Subscribe("load.t")
		conns = append(conns, c.Conn)
		wg.Go(func() {
			for {
				f, err := c.Conn.Next(time.Now().Add(time.Minute))
				if err != nil {
					if ctx.Err() == nil {
						readErrs <- fmt.Errorf("session %d: %v", i, err)
					}
					return
				}
				if f.Type != "message" {
					continue
				}
				if prev := last[i].Load(); f.Offset != prev+1 {
					readErrs <- fmt.Errorf("session %d: offset %d after %d", i, f.Offset, prev)
					return
				}
				last[i].Store(f.Offset)
			}
		})
	}
	pubHC := newHTTPClient(t)
	var published atomic.Uint64
	wg.Go(func() {
		for ctx.Err() == nil {
			if status, r, err := publish(pubHC, n.addr, "load.t", "1"); err == nil && status == http.StatusOK {
				published.Store(r.Offset)
			}
		}
	})
	// stopLoad stops the publisher and the readers (closing their
	// connections) and waits for them.
	var once sync.Once
	stopLoad := func() {
		once.Do(func() {
			cancel()
			for _, c := range conns {
				_ = c.Close()
			}
			wg.Wait()
		})
	}
	t.Cleanup(stopLoad)
	testkit.Eventually(t, 10*time.Second, func() error {
		if p := published.Load(); p < 100 {
			return fmt.Errorf("%d messages published, want 100 before the reload", p)
		}
		return nil
	})

	// An anonymous session on topics whose namespace changes.
	anon := wstest.Dial(t, wsURL)
	anon.Subscribe("private.alice", "room.a", "plain.a")
	if status := getJSON(t, hc, n.addr, "/v1/presence?topic=room.a", nil); status != http.StatusBadRequest {
		t.Fatalf("presence of room.a before the reload: %d, want 400", status)
	}

	if err := os.WriteFile(path, []byte(reloadAfter), 0o600); err != nil {
		t.Fatal(err)
	}
	hup(t)
	rec := n.waitRecords(t, "configuration reloaded", 1)
	applied := strs(rec["applied"])
	for _, want := range []string{"max-subscriptions", "max-body-size", "op-rate", "namespaces"} {
		if !slices.Contains(applied, want) {
			t.Errorf("applied %v, want %s in it", applied, want)
		}
	}
	if rec := n.waitRecords(t, "configuration changes that need a restart were not applied", 1); !reflect.DeepEqual(strs(rec["settings"]), []string{"shards"}) {
		t.Errorf("needing a restart: %v, want [shards]", rec["settings"])
	}

	// The anonymous session loses private.alice, and only it; room.a now
	// keeps presence, the session's included.
	if f := anon.Expect("unsubscribed"); f.Topic != "private.alice" || f.Ref != "" {
		t.Errorf("got %s, want unsubscribed private.alice without ref", f.Raw)
	}
	testkit.Eventually(t, 10*time.Second, func() error {
		var p struct {
			Clients []struct{ Session string } `json:"clients"`
		}
		if status := getJSON(t, hc, n.addr, "/v1/presence?topic=room.a", &p); status != http.StatusOK {
			return fmt.Errorf("presence of room.a: %d", status)
		}
		if len(p.Clients) != 1 || p.Clients[0].Session != anon.Welcome.Session {
			return fmt.Errorf("presence of room.a: %+v, want the session subscribed before the reload", p.Clients)
		}
		return nil
	})
	wantError(t, subscribeAnswer(anon, "private.bob"), "forbidden", "may not subscribe to private.bob")
	// The new limits: two subscriptions a session, 200-byte bodies, 8
	// bytes of data on small.*.
	fresh := wstest.Dial(t, wsURL)
	fresh.Subscribe("plain.1", "plain.2")
	wantError(t, subscribeAnswer(fresh, "plain.3"), "too_large", "a session may hold 2")
	wantError(t, wsPublish(fresh, "small.x", `"1234567"`), "too_large", "limit of 8 bytes")
	if status, _, err := publish(hc, n.addr, "plain.b", `"`+strings.Repeat("b", 300)+`"`); err != nil || status != http.StatusRequestEntityTooLarge {
		t.Errorf("a 300-byte body after the reload: %d %v, want 413", status, err)
	}
	var info struct {
		Config tdconfig.Snapshot `json:"config"`
	}
	getJSON(t, hc, n.addr, "/v1/info", &info)
	if s := info.Config.Settings; s["max-subscriptions"] != 2.0 || s["shards"] != 64.0 || len(info.Config.Namespaces) != 3 {
		t.Errorf("GET /v1/info config: max-subscriptions %v shards %v, %d namespaces; want 2, 64 (not reloaded), 3",
			s["max-subscriptions"], s["shards"], len(info.Config.Namespaces))
	}

	// Every load session is still open and gets every message, those
	// published after the reload included.
	marker := mustPublish(t, hc, n.addr, "load.t", "1").Offset
	testkit.Eventually(t, 20*time.Second, func() error {
		select {
		case err := <-readErrs:
			t.Fatal(err)
		default:
		}
		for i := range sessions {
			if got := last[i].Load(); got < marker {
				return fmt.Errorf("session %d is at offset %d, want %d", i, got, marker)
			}
		}
		return nil
	})

	// A file with a fault changes nothing: the node keeps its configuration.
	if err := os.WriteFile(path, []byte("max-subscriptions: many\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	hup(t)
	if rec := n.waitRecords(t, "configuration not reloaded: the node keeps the one it has", 1); !strings.Contains(fmt.Sprint(rec["err"]), ":1: max-subscriptions") {
		t.Errorf("the error logged %v does not name the line and key", rec["err"])
	}
	wantError(t, subscribeAnswer(fresh, "plain.3"), "too_large", "a session may hold 2")
	stopLoad()
	select {
	case err := <-readErrs:
		t.Fatal(err)
	default:
	}
}

// TestReloadFromTakesReloadOptions: reloadFrom takes every option that
// package config marks Reload, and the namespaces, and nothing else:
// after it the configuration equals the one read again, but for the
// options that need a restart.
func TestReloadFromTakesReloadOptions(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	b.WriteString("namespaces:\n  - pattern: 'x.>'\n    history_size: 3\n")
	for _, o := range tdconfig.Options() {
		if !o.Reload {
			continue
		}
		v := map[tdconfig.Type]string{tdconfig.Int: "3", tdconfig.Float: "3", tdconfig.Bool: "true", tdconfig.Duration: "3s"}[o.Type]
		if v == "" {
			t.Fatalf("%s: no test value of type %v", o.Name, o.Type)
		}
		b.WriteString(o.Name + ": " + v + "\n")
	}
	b.WriteString("shards: 8\n")
	before, err := parseConfig([]string{"-node-id", "n1"}, noEnv, &strings.Builder{})
	if err != nil {
		t.Fatal(err)
	}
	path := writeConfig(t, b.String())
	after, err := parseConfig([]string{"-node-id", "n1", "-config", path}, noEnv, &strings.Builder{})
	if err != nil {
		t.Fatal(err)
	}
	applied, restart := before.reloadFrom(after)
	if !reflect.DeepEqual(restart, []string{"shards"}) {
		t.Errorf("restart %v, want [shards]", restart)
	}
	if !slices.Contains(applied, "namespaces") {
		t.Errorf("applied %v lacks namespaces", applied)
	}
	// What may differ: the -config flag (fixed at start), where values
	// came from, and shards.
	before.configFile, after.configFile = "", ""
	before.fromFile, after.fromFile = nil, nil
	before.fromEnv, after.fromEnv = nil, nil
	before.sources, after.sources = nil, nil
	after.shards = before.shards
	after.settings["shards"] = before.settings["shards"]
	if !reflect.DeepEqual(before, after) {
		t.Errorf("after reloadFrom the configuration differs from the one read again:\n%+v\n%+v", before, after)
	}
}
