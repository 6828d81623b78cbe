package main

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

// TestPprofAddrValues checks which -pprof-addr values parseConfig takes:
// host:port on a loopback host only, from the flag or the environment.
func TestPprofAddrValues(t *testing.T) {
	t.Parallel()
	for _, v := range []string{"127.0.0.1:0", "127.0.0.1:6060", "127.1.2.3:6060", "[::1]:6060", "[::1]:0", "localhost:6060", "LocalHost:0"} {
		c, err := parseConfig([]string{"-pprof-addr", v}, noEnv, &bytes.Buffer{})
		if err != nil || c.pprofAddr != v {
			t.Errorf("-pprof-addr %q: %q, %v; want it taken", v, c.pprofAddr, err)
		}
		c, err = parseConfig(nil, envOf(map[string]string{"TIDINGS_PPROF_ADDR": v}), &bytes.Buffer{})
		if err != nil || c.pprofAddr != v {
			t.Errorf("TIDINGS_PPROF_ADDR=%q: %q, %v; want it taken", v, c.pprofAddr, err)
		}
	}
	for _, v := range []string{
		"0.0.0.0:6060", ":6060", "[::]:6060", "10.1.2.3:6060", "192.0.2.1:6060", "[2001:db8::1]:6060",
		"example.com:6060", "localhost.example.com:6060", "[fe80::1%lo]:6060", "[::1%lo]:6060",
		"nonsense", "127.0.0.1", "127.0.0.1:", "127.0.0.1:65536", "localhost:http", "[::1]", "::1:6060",
	} {
		_, err := parseConfig([]string{"-pprof-addr", v}, noEnv, &bytes.Buffer{})
		var ue usageError
		if !errors.As(err, &ue) || !strings.HasPrefix(err.Error(), "invalid value for flag -pprof-addr: ") || !strings.Contains(err.Error(), "loopback only") {
			t.Errorf("-pprof-addr %q: %v; want a usage error naming -pprof-addr and saying loopback only", v, err)
		}
		_, err = parseConfig(nil, envOf(map[string]string{"TIDINGS_PPROF_ADDR": v}), &bytes.Buffer{})
		if !errors.As(err, &ue) || !strings.HasPrefix(err.Error(), "invalid value for flag -pprof-addr from TIDINGS_PPROF_ADDR: ") || !strings.Contains(err.Error(), "loopback only") {
			t.Errorf("TIDINGS_PPROF_ADDR=%q: %v; want a usage error naming -pprof-addr and TIDINGS_PPROF_ADDR", v, err)
		}
	}
}

// TestPprofServer runs a broker with -pprof-addr: the profiling endpoints
// answer on their own loopback listener only, not on the main one, and
// that listener closes when the broker stops.
func TestPprofServer(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil, "-pprof-addr", "127.0.0.1:0")
	rec, err := n.log.waitRecord("pprof listening", time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	paddr, _ := rec["addr"].(string)
	host, port, err := net.SplitHostPort(paddr)
	if err != nil || host != "127.0.0.1" || port == "0" || paddr == n.addr {
		t.Fatalf("pprof listening on %q (main %q), want 127.0.0.1 and a port of its own", paddr, n.addr)
	}
	hc := newHTTPClient(t)
	get := func(addr, path string) (int, string) {
		t.Helper()
		resp, err := hc.Get("http://" + addr + path)
		if err != nil {
			t.Fatalf("GET %s%s: %v", addr, path, err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("GET %s%s: reading the body: %v", addr, path, err)
		}
		return resp.StatusCode, string(body)
	}

	if code, body := get(paddr, "/debug/pprof/"); code != http.StatusOK || !strings.Contains(body, "goroutine") || !strings.Contains(body, "heap") {
		t.Errorf("GET /debug/pprof/ on the pprof listener: %d %.300q; want 200 listing the profiles", code, body)
	}
	if code, body := get(paddr, "/debug/pprof/cmdline"); code != http.StatusOK || body != strings.Join(os.Args, "\x00") {
		t.Errorf("GET /debug/pprof/cmdline: %d %q; want 200 and the command line %q", code, body, os.Args)
	}
	if code, body := get(paddr, "/debug/pprof/symbol"); code != http.StatusOK || !strings.Contains(body, "num_symbols") {
		t.Errorf("GET /debug/pprof/symbol: %d %q; want 200 num_symbols", code, body)
	}
	if code, body := get(paddr, "/debug/pprof/goroutine?debug=1"); code != http.StatusOK || !strings.Contains(body, "goroutine profile:") {
		t.Errorf("GET /debug/pprof/goroutine?debug=1: %d %.300q; want 200 and the goroutine profile", code, body)
	}
	// The pprof listener serves nothing else.
	if code, _ := get(paddr, "/healthz"); code != http.StatusNotFound {
		t.Errorf("GET /healthz on the pprof listener: %d, want 404", code)
	}
	// The main listener does not serve the profiles.
	for _, path := range []string{"/debug/pprof/", "/debug/pprof/cmdline", "/debug/pprof/goroutine"} {
		if code, _ := get(n.addr, path); code != http.StatusNotFound {
			t.Errorf("GET %s on the main listener: %d, want 404", path, code)
		}
	}

	if _, err := n.stop(t, 60*time.Second); err != nil {
		t.Fatalf("run: %v", err)
	}
	if _, err := n.log.waitRecord("shutdown complete", 0, nil); err != nil {
		t.Error(err)
	}
	if c, err := net.DialTimeout("tcp", paddr, 10*time.Second); err == nil {
		c.Close()
		t.Errorf("the pprof listener %s still accepts connections after the broker stopped", paddr)
	}
}

// TestPprofOffByDefault checks that without -pprof-addr no profiling
// listener is started.
func TestPprofOffByDefault(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil)
	if _, err := n.log.waitRecord("pprof listening", 0, nil); err == nil {
		t.Errorf("pprof listening logged without -pprof-addr")
	}
	if code, err := getStatus(newHTTPClient(t), n.addr, "/debug/pprof/"); err != nil || code != http.StatusNotFound {
		t.Errorf("GET /debug/pprof/ on the main listener: %d %v, want 404", code, err)
	}
}
