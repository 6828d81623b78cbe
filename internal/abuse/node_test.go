package abuse

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// logTail keeps the last lines a process wrote, for the failure report;
// the broker's "session closed" lines are left out.
type logTail struct {
	mu    sync.Mutex // guards lines
	lines []string
}

// maxLogLines is how many lines a logTail keeps.
const maxLogLines = 200

func (l *logTail) add(line string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.lines) == maxLogLines {
		l.lines = append(l.lines[:0], l.lines[1:]...)
	}
	l.lines = append(l.lines, line)
}

func (l *logTail) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// node is one broker process on loopback, with its profiling endpoints
// on a loopback port of their own.
type node struct {
	addr  string // host:port of the broker's listener
	pprof string // host:port of its -pprof-addr listener
	pid   int
	cmd   *exec.Cmd
	logs  *logTail
	done  chan struct{} // closed when the process has exited
	err   error         // its exit status, once done is closed
	// probe reads the profiling endpoints and /metrics over keep-alive
	// connections from 127.0.0.1, so that probing costs the node the
	// same few descriptors at every measurement.
	probe *http.Client
}

// startNode runs bin on free loopback ports with the default limits and
// extra arguments, and waits for its listening lines. The demo publisher
// is off (-demo=false): it is not a limit, and its traffic would blur
// the baseline. The process is stopped when the test ends.
func startNode(t *testing.T, bin string, extra ...string) *node {
	t.Helper()
	args := append([]string{"-addr", "127.0.0.1:0", "-pprof-addr", "127.0.0.1:0", "-demo=false", "-node-id", "abuse"}, extra...)
	cmd := exec.Command(bin, args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TIDINGS_") && !strings.HasPrefix(kv, "OTEL_") && !strings.HasPrefix(kv, "GOGC=") && !strings.HasPrefix(kv, "GOMEMLIMIT=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	n := &node{pid: cmd.Process.Pid, cmd: cmd, logs: &logTail{}, done: make(chan struct{})}
	listening := make(chan [2]string, 1)
	go func() {
		var addr, pprof string
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			if !bytes.Contains(sc.Bytes(), []byte(`"msg":"session closed"`)) {
				// One line per session would hide the others.
				n.logs.add(sc.Text())
			}
			var rec struct{ Msg, Addr string }
			if json.Unmarshal(sc.Bytes(), &rec) != nil {
				continue
			}
			switch rec.Msg {
			case "pprof listening":
				pprof = rec.Addr
			case "listening":
				addr = rec.Addr
				listening <- [2]string{addr, pprof}
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
		n.err = cmd.Wait()
		close(n.done)
	}()
	n.probe = &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			DialContext:         (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
			MaxIdleConnsPerHost: 2,
			DisableCompression:  true,
		},
	}
	t.Cleanup(func() {
		n.probe.CloseIdleConnections()
		n.stop(t)
		if t.Failed() {
			t.Logf("broker output (last %d lines):\n%s", maxLogLines, n.logs.String())
		}
	})
	select {
	case a := <-listening:
		n.addr, n.pprof = a[0], a[1]
	case <-n.done:
		t.Fatalf("broker exited before listening: %v\n%s", n.err, n.logs.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("broker did not log its listening line within 30s\n%s", n.logs.String())
	}
	if n.pprof == "" {
		t.Fatalf("broker logged no pprof listening line\n%s", n.logs.String())
	}
	return n
}

// stop sends SIGTERM, and SIGKILL if the node has not exited 20 seconds
// later; it returns once the process is gone.
func (n *node) stop(t *testing.T) {
	select {
	case <-n.done:
		return
	default:
	}
	_ = n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.done:
	case <-time.After(20 * time.Second):
		t.Errorf("broker still running 20s after SIGTERM; killing it")
		_ = n.cmd.Process.Kill()
		<-n.done
	}
}

// usage is what the node holds, from the runtime's own accounting.
type usage struct {
	Heap       int64 // HeapInuse after a collection
	Stack      int64 // StackInuse: the goroutines' stacks
	Goroutines int   // from the goroutine profile
	FDs        int   // entries of /proc/<pid>/fd
	RSS        int64 // VmRSS
	HWM        int64 // VmHWM: the peak RSS since the process started
}

// Mem is the memory the node holds for its objects and goroutines: heap
// in use after a collection and goroutine stacks.
func (u usage) Mem() int64 { return u.Heap + u.Stack }

// max returns the larger of u and v, field by field.
func (u usage) max(v usage) usage {
	return usage{
		Heap: max(u.Heap, v.Heap), Stack: max(u.Stack, v.Stack), Goroutines: max(u.Goroutines, v.Goroutines),
		FDs: max(u.FDs, v.FDs), RSS: max(u.RSS, v.RSS), HWM: max(u.HWM, v.HWM),
	}
}

func (u usage) String() string {
	return fmt.Sprintf("heap %s + stacks %s, %d goroutines, %d fds, RSS %s (peak %s)",
		kb(u.Heap), kb(u.Stack), u.Goroutines, u.FDs, kb(u.RSS), kb(u.HWM))
}

// kb formats a byte count in KB.
func kb(n int64) string { return fmt.Sprintf("%d KB", n/1024) }

// get reads url with the probe client, which must answer 200.
func (n *node) get(url string) ([]byte, error) {
	resp, err := n.probe.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return body, nil
}

// usage measures what the node holds now. The heap is read from the
// heap profile with gc=1, twice: the first collection moves sync.Pool
// contents to their victim cache, the second frees them.
func (n *node) usage() (usage, error) {
	var u usage
	var heap []byte
	for range 2 {
		var err error
		if heap, err = n.get("http://" + n.pprof + "/debug/pprof/heap?debug=1&gc=1"); err != nil {
			return u, err
		}
	}
	var err error
	if u.Heap, err = memStat(heap, "# HeapInuse = "); err != nil {
		return u, err
	}
	if u.Stack, err = memStat(heap, "# Stack = "); err != nil {
		return u, err
	}
	g, err := n.get("http://" + n.pprof + "/debug/pprof/goroutine?debug=1")
	if err != nil {
		return u, err
	}
	first, _, _ := bytes.Cut(g, []byte("\n"))
	total, ok := strings.CutPrefix(string(first), "goroutine profile: total ")
	if u.Goroutines, err = strconv.Atoi(total); !ok || err != nil {
		return u, fmt.Errorf("goroutine profile begins %q", first)
	}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", n.pid))
	if err != nil {
		return u, err
	}
	u.FDs = len(fds)
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", n.pid))
	if err != nil {
		return u, err
	}
	if u.RSS, err = procStat(status, "VmRSS:"); err != nil {
		return u, err
	}
	if u.HWM, err = procStat(status, "VmHWM:"); err != nil {
		return u, err
	}
	return u, nil
}

// mustUsage is usage for the goroutine running the test.
func (n *node) mustUsage(t *testing.T) usage {
	t.Helper()
	u, err := n.usage()
	if err != nil {
		t.Fatalf("measuring the node: %v", err)
	}
	return u
}

// memStat reads the number after prefix (a line of the heap profile's
// runtime.MemStats comment) in profile.
func memStat(profile []byte, prefix string) (int64, error) {
	for line := range strings.SplitSeq(string(profile), "\n") {
		if v, ok := strings.CutPrefix(line, prefix); ok {
			v, _, _ = strings.Cut(v, " ")
			return strconv.ParseInt(v, 10, 64)
		}
	}
	return 0, fmt.Errorf("no %q line in the heap profile", prefix)
}

// procStat reads a "Name: N kB" line of /proc/<pid>/status, in bytes.
func procStat(status []byte, name string) (int64, error) {
	for line := range strings.SplitSeq(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, name); ok {
			kB, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kB << 10, err
		}
	}
	return 0, fmt.Errorf("no %s line in /proc status", name)
}

// metrics reads the node's /metrics (Prometheus text) as a map from
// `name{labels}` to value.
func (n *node) metrics() (map[string]float64, error) {
	body, err := n.get("http://" + n.addr + "/metrics")
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	for line := range strings.SplitSeq(string(body), "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		out[line[:i]] = v
	}
	return out, nil
}

// sampler measures the node over and over while an attack runs, and
// keeps the largest value of each field.
type sampler struct {
	n    *node
	stop chan struct{}
	done chan struct{}
	mu   sync.Mutex // guards peak, count and err
	peak usage
	// count is the number of samples taken; err the first failure.
	count int
	err   error
}

// sampleEvery is the pause between two samples. A sample costs the node
// two collections, so it is not taken more often.
const sampleEvery = 200 * time.Millisecond

// startSampler starts sampling n until the sampler is stopped.
func (n *node) startSampler() *sampler {
	s := &sampler{n: n, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		for {
			u, err := n.usage()
			s.mu.Lock()
			if err != nil && s.err == nil {
				s.err = err
			}
			s.peak = s.peak.max(u)
			s.count++
			s.mu.Unlock()
			select {
			case <-s.stop:
				return
			case <-time.After(sampleEvery):
			}
		}
	}()
	return s
}

// add merges a measurement taken elsewhere into the peak.
func (s *sampler) add(u usage) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.peak = s.peak.max(u)
}

// halt stops the sampler, once, and waits for it.
func (s *sampler) halt() {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	<-s.done
}

// finish stops the sampler and returns the peak of every sample.
func (s *sampler) finish(t *testing.T) usage {
	t.Helper()
	s.halt()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		t.Errorf("sampling the node: %v", s.err)
	}
	return s.peak
}

// await calls cond until it returns nil, and returns its last error if
// that takes longer than within.
func await(t *testing.T, within time.Duration, cond func() error) error {
	deadline := time.Now().Add(within)
	pause := 20 * time.Millisecond
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("still, after %v: %w", within, err)
		}
		select {
		case <-time.After(pause):
		case <-t.Context().Done():
			return fmt.Errorf("test ended while waiting: %w", err)
		}
		pause = min(2*pause, 250*time.Millisecond)
	}
}
