package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tidings-io/tidings/internal/redistest"
	"github.com/tidings-io/tidings/internal/testkit"
)

// readmeBlock returns the first ```sh block after heading in README.md.
func readmeBlock(t *testing.T, heading string) string {
	t.Helper()
	raw, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(raw)
	i := strings.Index(s, "\n"+heading+"\n")
	if i < 0 {
		t.Fatalf("README.md has no %q", heading)
	}
	s = s[i:]
	start := strings.Index(s, "```sh\n")
	end := strings.Index(s[start+6:], "```")
	if start < 0 || end < 0 {
		t.Fatalf("no sh block after %q", heading)
	}
	return s[start+6 : start+6+end]
}

// The README's server API examples run as they are against a broker
// started as the README says (on another port): every curl succeeds and
// prints a JSON object.
func TestREADMEServerAPIExamplesRun(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatal("curl is needed: install it (make deps does)")
	}
	n := startNode(t, nil, "-presence", "-join-leave")
	block := readmeBlock(t, "## Control plane")
	if !strings.Contains(block, "http://localhost:8080/") {
		t.Fatal("the examples do not address the README's broker")
	}
	script := strings.ReplaceAll(block, "http://localhost:8080/", "http://"+n.addr+"/")
	// --fail-with-body: an HTTP error fails the script. Each answer is
	// one line.
	script = strings.ReplaceAll(script, "curl -s ", "curl -sS --fail-with-body ")
	out, err := exec.Command("bash", "-euo", "pipefail", "-c", script).CombinedOutput()
	if err != nil {
		t.Fatalf("the README's examples failed: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if want := strings.Count(block, "curl -s "); len(lines) != want {
		t.Fatalf("%d answers, want %d:\n%s", len(lines), want, out)
	}
	for _, l := range lines {
		var v map[string]any
		if err := json.Unmarshal([]byte(l), &v); err != nil {
			t.Errorf("answer %q is not a JSON object", l)
		}
	}
}

// A node killed with SIGKILL leaves its sessions' presence behind: it
// expires after -presence-ttl, and the node drops out of /v1/info.
func TestPresenceOfAKilledNodeExpires(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the broker binary")
	}
	t.Parallel()
	srv := redistest.Start(t)
	bin := testkit.BuildBroker(t)
	args := []string{"-redis", srv.URL(), "-presence", "-presence-ttl", "3s", "-demo=false"}
	live := startNode(t, nil, append(args, "-node-id", "live")...)
	doomed := startProc(t, bin, append(args, "-node-id", "doomed")...)
	deadline := time.Now().Add(20 * time.Second)
	openSession(t, doomed.addr, deadline, "proc.room")
	hc := newHTTPClient(t)
	get := func(path string, out any) error {
		resp, err := hc.Get("http://" + live.addr + path)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: %d %s", path, resp.StatusCode, raw)
		}
		return json.Unmarshal(raw, out)
	}
	state := func(wantSessions int, wantNodes string) func() error {
		return func() error {
			var st struct{ Sessions int }
			var info struct{ Nodes []struct{ ID string } }
			if err := get("/v1/presence/stats?topic=proc.room", &st); err != nil {
				return err
			}
			if err := get("/v1/info", &info); err != nil {
				return err
			}
			var ids []string
			for _, nd := range info.Nodes {
				ids = append(ids, nd.ID)
			}
			if st.Sessions != wantSessions || strings.Join(ids, " ") != wantNodes {
				return fmt.Errorf("presence %d sessions and nodes %v, want %d and %s", st.Sessions, ids, wantSessions, wantNodes)
			}
			return nil
		}
	}
	testkit.Eventually(t, 10*time.Second, state(1, "doomed live"))
	doomed.signal(t, syscall.SIGKILL)
	doomed.wait(t, 10*time.Second)
	killed := time.Now()
	testkit.Eventually(t, 10*time.Second, state(0, "live"))
	if after := time.Since(killed); after > 5*time.Second {
		t.Errorf("the killed node's presence went after %v, want within the 3 s TTL (and a refresh)", after)
	}
}
