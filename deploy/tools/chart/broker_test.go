package chart

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// repoRoot is the main module, relative to this package.
var repoRoot = filepath.Join("..", "..", "..")

// built is the broker binary, built once from the repository by brokerBinary.
var built struct {
	once      sync.Once
	dir, path string
	err       error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if built.dir != "" {
		os.RemoveAll(built.dir)
	}
	os.Exit(code)
}

// brokerBinary builds cmd/broker from the repository, once per test run.
func brokerBinary(t *testing.T) string {
	t.Helper()
	built.once.Do(func() {
		built.dir, built.err = os.MkdirTemp("", "tidings-chart-test-")
		if built.err != nil {
			return
		}
		built.path = filepath.Join(built.dir, "broker")
		// Built as cmd/broker's own process tests build it, so that after
		// `go test ./...` of the main module (make test) the build cache has it.
		cmd := exec.Command("go", "build", "-o", built.path, "./cmd/broker")
		cmd.Dir = repoRoot
		if out, err := cmd.CombinedOutput(); err != nil {
			built.err = errors.New("go build ./cmd/broker: " + err.Error() + "\n" + string(out))
		}
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
	return built.path
}

// brokerFlag is one flag as `broker -h` lists it.
type brokerFlag struct {
	name, env, def string
}

// usageLine is the line `broker -h` prints for each flag (printUsage in
// cmd/broker): "  -name (env TIDINGS_NAME, default value)".
var usageLine = regexp.MustCompile(`(?m)^  -(\S+) \(env (TIDINGS_[A-Z0-9_]+), default (.*)\)$`)

// brokerFlags runs `broker -h` and returns its flags by environment variable.
func brokerFlags(t *testing.T) map[string]brokerFlag {
	t.Helper()
	out, err := exec.Command(brokerBinary(t), "-h").Output()
	if err != nil {
		t.Fatalf("broker -h: %v", err)
	}
	flags := map[string]brokerFlag{}
	for _, m := range usageLine.FindAllStringSubmatch(string(out), -1) {
		def := m[3]
		if def == `""` {
			def = ""
		}
		flags[m[2]] = brokerFlag{name: m[1], env: m[2], def: def}
	}
	if len(flags) < 10 || flags["TIDINGS_SHUTDOWN_TIMEOUT"].name != "shutdown-timeout" {
		t.Fatalf("could not read the flags from broker -h:\n%s", out)
	}
	return flags
}

// renderCase renders c's values and returns the release and the
// environment of its broker container.
func renderCase(t *testing.T, c chartCase) (*release, map[string]string) {
	t.Helper()
	var values []string
	if c.values != "" {
		values = []string{c.values}
	}
	r := render(t, values)
	ctr := container(t, r.Deployments[0].Spec.Template.Spec, "broker")
	return r, brokerEnv(t, r, c, ctr)
}

// TestChartEnvIsBrokerFlags: every TIDINGS_* variable the chart sets, in
// every values file, is a flag of the broker (TIDINGS_SHUTDOWN_TIMEOUT is
// -shutdown-timeout, and so on), so none is silently ignored.
func TestChartEnvIsBrokerFlags(t *testing.T) {
	flags := brokerFlags(t)
	for _, c := range cases {
		_, env := renderCase(t, c)
		names := make([]string, 0, len(env))
		for name := range env {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			if !strings.HasPrefix(name, "TIDINGS_") {
				continue
			}
			if _, ok := flags[name]; ok {
				continue
			}
			t.Errorf("%s: the chart sets %s, which is no flag of the broker", caseName(c), name)
		}
	}
}

// TestChartDefaultsAreBrokerDefaults: with default values the chart passes
// the broker's own defaults, so that values.yaml documents them truly.
func TestChartDefaultsAreBrokerDefaults(t *testing.T) {
	flags := brokerFlags(t)
	r := render(t, nil)
	cm := named(r.ConfigMaps, fullname)
	// The chart's deliberate choices: no demo page or demo traffic in a
	// deployment (the broker serves them by default, for `go run`), memory
	// budgets that fit under the pod's default memory limit, and the
	// private ranges, where an in-cluster ingress controller is, as trusted
	// proxies.
	deliberate := map[string]bool{"TIDINGS_DEMO": true, "TIDINGS_HISTORY_BYTES": true, "TIDINGS_OUTBOUND_BYTES": true,
		"TIDINGS_TRUSTED_PROXIES": true}
	for name, v := range cm.Data {
		f, ok := flags[name]
		if !ok || deliberate[name] {
			continue
		}
		if !sameValue(v, f.def) {
			t.Errorf("%s: the chart's default %q differs from the broker's -%s default %q", name, v, f.name, f.def)
		}
	}
	var unset []string
	for name := range flags {
		if _, ok := cm.Data[name]; !ok {
			unset = append(unset, name)
		}
	}
	sort.Strings(unset)
	t.Logf("left at the broker's default or set from a Secret: %s", strings.Join(unset, " "))
}

// sameValue compares a flag value as the broker would parse it: durations
// by length (5m is 5m0s), everything else as text.
func sameValue(a, b string) bool {
	da, errA := time.ParseDuration(a)
	db, errB := time.ParseDuration(b)
	if errA == nil && errB == nil {
		return da == db
	}
	return a == b
}

// TestChartConfigStartsBroker runs the broker with the environment the
// chart gives it (single node: defaults, and with API keys and origins) and
// checks it becomes ready and exits 0 on SIGTERM, as the kubelet sends it.
func TestChartConfigStartsBroker(t *testing.T) {
	bin := brokerBinary(t)
	for _, c := range cases {
		if c.redis != "" {
			continue // needs a Redis; the multi-node behaviour is the drain test's
		}
		t.Run(caseName(c), func(t *testing.T) {
			r, env := renderCase(t, c)
			if path, ok := env["TIDINGS_CONFIG"]; ok {
				// The config file, where the pod has it mounted.
				env["TIDINGS_CONFIG"] = mountConfigFile(t, r, path)
			}
			b := startBroker(t, bin, env, http.DefaultClient, "http")
			b.stop(t)
			// Every variable the chart sets is one the broker knows.
			if strings.Contains(b.output.String(), "unknown environment variable") {
				t.Errorf("the broker warns of a variable the chart sets:\n%s", b.output.String())
			}
		})
	}
}

// runningBroker is a broker process started by startBroker.
type runningBroker struct {
	addr    string
	cmd     *exec.Cmd
	exited  chan error
	output  *bytes.Buffer
	timeout time.Duration // its shutdown timeout
}

// startBroker runs the broker with env, listening on loopback, and waits
// until client gets 200 from its /readyz over scheme (http or https).
func startBroker(t *testing.T, bin string, env map[string]string, client *http.Client, scheme string) *runningBroker {
	t.Helper()
	addr := freeAddr(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	// The command line wins over the environment: listen on loopback
	// instead of the chart's :8080.
	cmd := exec.CommandContext(ctx, bin, "-addr", addr)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	b := &runningBroker{addr: addr, cmd: cmd, exited: make(chan error, 1), output: &bytes.Buffer{}}
	b.timeout, _ = time.ParseDuration(env["TIDINGS_SHUTDOWN_TIMEOUT"])
	cmd.Stdout, cmd.Stderr = b.output, b.output
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { b.exited <- cmd.Wait() }()

	ready := false
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline) && !ready; {
		select {
		case err := <-b.exited:
			t.Fatalf("broker exited before it was ready: %v\n%s", err, b.output.String())
		case <-time.After(50 * time.Millisecond):
		}
		resp, err := client.Get(scheme + "://" + addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			ready = resp.StatusCode == http.StatusOK
		}
	}
	if !ready {
		cmd.Process.Kill()
		t.Fatalf("broker not ready on %s within 20s\n%s", addr, b.output.String())
	}
	return b
}

// stop sends SIGTERM, as the kubelet does, and checks that the broker
// exits 0 within its shutdown timeout.
func (b *runningBroker) stop(t *testing.T) {
	t.Helper()
	if err := b.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-b.exited:
		if err != nil {
			t.Fatalf("broker exited with %v after SIGTERM, want 0\n%s", err, b.output.String())
		}
	case <-time.After(b.timeout + 5*time.Second):
		t.Fatalf("broker still running %v after SIGTERM\n%s", b.timeout+5*time.Second, b.output.String())
	}
}

// freeAddr returns a loopback address with a port that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return "127.0.0.1:" + strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
}

// TestIngressHostsArePublicHosts: the default Origin rule accepts pages on
// the names browsers reach the broker by, so the chart passes the ingress
// hosts, with broker.publicHosts, as TIDINGS_PUBLIC_HOSTS.
func TestIngressHostsArePublicHosts(t *testing.T) {
	if got := named(render(t, nil).ConfigMaps, fullname).Data["TIDINGS_PUBLIC_HOSTS"]; got != "" {
		t.Errorf("without an Ingress TIDINGS_PUBLIC_HOSTS = %q, want it unset", got)
	}
	r := render(t, []string{"ci/autoscaling-ingress-values.yaml"}, "--set", "broker.publicHosts={app.example.com}")
	if got, want := named(r.ConfigMaps, fullname).Data["TIDINGS_PUBLIC_HOSTS"], "app.example.com,tidings.example.com"; got != want {
		t.Errorf("with an Ingress TIDINGS_PUBLIC_HOSTS = %q, want %q", got, want)
	}
}
