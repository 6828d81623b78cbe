package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/tidings-io/tidings/internal/redistest"
)

// freePort returns a loopback port that is free now; never 6379.
func freePort(t *testing.T) int {
	t.Helper()
	for {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		_ = ln.Close()
		if port != 6379 {
			return port
		}
	}
}

// logFile is a broker's stdout and stderr: every line goes to a file, and
// the first "listening" record closes listening.
type logFile struct {
	mu        sync.Mutex // guards f, partial and once
	f         *os.File
	partial   []byte
	listening chan struct{}
	once      bool
}

func (l *logFile) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, err := l.f.Write(p); err != nil {
		return 0, err
	}
	l.partial = append(l.partial, p...)
	for {
		i := bytes.IndexByte(l.partial, '\n')
		if i < 0 {
			break
		}
		line := l.partial[:i]
		l.partial = l.partial[i+1:]
		if l.once {
			continue
		}
		var rec struct{ Msg string }
		if json.Unmarshal(line, &rec) == nil && rec.Msg == "listening" {
			l.once = true
			close(l.listening)
		}
	}
	return len(p), nil
}

// brokerNode is one broker process on a fixed loopback port, which the
// test stops and starts again.
type brokerNode struct {
	t    *testing.T
	id   string
	addr string
	bin  string
	args []string
	logs string // path of the node's log file, all its lives appended

	mu  sync.Mutex // guards cur
	cur *brokerProc
}

// brokerProc is one life of a node.
type brokerProc struct {
	cmd  *exec.Cmd
	log  *logFile
	done chan struct{} // closed once the process has exited
	err  error         // its exit status, once done is closed
}

func newNode(t *testing.T, bin, id, dir string, args []string) *brokerNode {
	n := &brokerNode{t: t, id: id, bin: bin, addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t))),
		args: args, logs: filepath.Join(dir, id+".log")}
	_ = os.Remove(n.logs) // a kept log of an earlier run
	t.Cleanup(func() { n.kill() })
	n.start()
	return n
}

func (n *brokerNode) wsURL() string   { return "ws://" + n.addr + "/v1/ws" }
func (n *brokerNode) httpURL() string { return "http://" + n.addr }

// start runs the node and waits for its listening record (30 s at most).
func (n *brokerNode) start() {
	n.t.Helper()
	f, err := os.OpenFile(n.logs, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		n.t.Fatal(err)
	}
	args := append([]string{"-addr", n.addr, "-node-id", n.id}, n.args...)
	cmd := exec.Command(n.bin, args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TIDINGS_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	lf := &logFile{f: f, listening: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = lf, lf
	if err := cmd.Start(); err != nil {
		_ = f.Close()
		n.t.Fatalf("starting broker %s: %v", n.id, err)
	}
	p := &brokerProc{cmd: cmd, log: lf, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		_ = f.Close()
		close(p.done)
	}()
	n.mu.Lock()
	n.cur = p
	n.mu.Unlock()
	timer := time.NewTimer(30 * time.Second)
	defer timer.Stop()
	select {
	case <-lf.listening:
	case <-p.done:
		n.t.Fatalf("broker %s exited at start: %v\n%s", n.id, p.err, n.tail(20))
	case <-timer.C:
		n.t.Fatalf("broker %s did not listen within 30s\n%s", n.id, n.tail(20))
	}
}

// running returns the current life, or nil when the node is down.
func (n *brokerNode) running() *brokerProc {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cur
}

// stop signals the node and waits for it to exit, at most within; it
// reports whether it exited in time (if not, it is killed).
func (n *brokerNode) stop(sig syscall.Signal, within time.Duration) bool {
	p := n.running()
	if p == nil {
		return true
	}
	_ = p.cmd.Process.Signal(sig)
	timer := time.NewTimer(within)
	defer timer.Stop()
	ok := true
	select {
	case <-p.done:
	case <-timer.C:
		ok = false
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	n.mu.Lock()
	n.cur = nil
	n.mu.Unlock()
	return ok
}

// kill ends the node with SIGKILL, if it runs.
func (n *brokerNode) kill() { n.stop(syscall.SIGKILL, time.Minute) }

// tail returns the last lines of the node's log.
func (n *brokerNode) tail(lines int) string {
	b, _ := os.ReadFile(n.logs)
	all := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}

// ready reports whether the node answers /readyz with 200.
func (n *brokerNode) ready(client *http.Client) bool {
	resp, err := client.Get(n.httpURL() + "/readyz")
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// redisAdmin runs one admin command on a Redis server.
func redisAdmin(s *redistest.Server, timeout time.Duration, args ...any) (any, error) {
	c := redis.NewClient(&redis.Options{Addr: s.Addr(), MaxRetries: -1, DialTimeout: time.Second, ReadTimeout: timeout, WriteTimeout: timeout})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return c.Do(ctx, args...).Result()
}

// redisPID returns the process id of a Redis server, from INFO.
func redisPID(s *redistest.Server) (int, error) {
	v, err := redisAdmin(s, 2*time.Second, "INFO", "server")
	if err != nil {
		return 0, err
	}
	info, _ := v.(string)
	for _, line := range strings.Split(info, "\n") {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "process_id:"); ok {
			return strconv.Atoi(rest)
		}
	}
	return 0, fmt.Errorf("no process_id in INFO of %s", s.Addr())
}

// saveAndKill stops Redis with its data: writes are paused so that nothing
// acknowledged after the snapshot is lost, the dataset is saved, then the
// server is killed.
func saveAndKill(s *redistest.Server) error {
	if _, err := redisAdmin(s, 2*time.Second, "CLIENT", "PAUSE", "30000", "WRITE"); err != nil {
		return fmt.Errorf("CLIENT PAUSE: %w", err)
	}
	if _, err := redisAdmin(s, 20*time.Second, "SAVE"); err != nil {
		return fmt.Errorf("SAVE: %w", err)
	}
	s.Kill()
	return nil
}
