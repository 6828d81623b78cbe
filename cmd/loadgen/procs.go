//go:build linux

package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat times (100 on Linux
// for every architecture Go supports).
const clockTicks = 100

// procSample is one reading of a process's memory and CPU.
type procSample struct {
	RSS    int64         // bytes (VmRSS)
	CPU    time.Duration // user + system
	Writes int64         // write-family system calls (/proc/<pid>/io syscw), 0 if unreadable
	At     time.Time
}

// sampleProc reads /proc/<pid>/status VmRSS and /proc/<pid>/stat utime+stime.
func sampleProc(pid int) (procSample, error) {
	s := procSample{At: time.Now()}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, err
	}
	if s.RSS, err = parseVmRSS(status); err != nil {
		return s, err
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, err
	}
	s.CPU, err = parseStatCPU(stat)
	if io, ioErr := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid)); ioErr == nil {
		s.Writes = parseSyscw(io)
	}
	return s, err
}

// parseSyscw returns the syscw count of a /proc/<pid>/io file (0 if absent).
func parseSyscw(io []byte) int64 {
	for _, line := range strings.Split(string(io), "\n") {
		if v, ok := strings.CutPrefix(line, "syscw:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n
		}
	}
	return 0
}

// parseVmRSS returns VmRSS in bytes from a /proc/<pid>/status file.
func parseVmRSS(status []byte) (int64, error) {
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 2 && f[0] == "VmRSS:" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("VmRSS %q: %w", f[1], err)
			}
			return kb * 1024, nil
		}
	}
	return 0, errors.New("no VmRSS line (process gone?)")
}

// parseStatCPU returns utime+stime from a /proc/<pid>/stat line. The
// command name in parentheses may hold spaces, so fields are counted
// after the last ')'.
func parseStatCPU(stat []byte) (time.Duration, error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("malformed stat line")
	}
	f := strings.Fields(string(stat[i+1:]))
	// After ')': state(3) ppid(4) … utime(14) stime(15): indexes 11, 12.
	if len(f) < 13 {
		return 0, errors.New("short stat line")
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, errors.New("bad utime/stime in stat line")
	}
	return time.Duration(ut+st) * time.Second / clockTicks, nil
}

// freePort returns a free TCP port on 127.0.0.1, never 6379.
func freePort() (int, error) {
	for range 10 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		p := ln.Addr().(*net.TCPAddr).Port
		_ = ln.Close()
		if p != 6379 {
			return p, nil
		}
	}
	return 0, errors.New("no free port")
}

// moduleRoot finds the Tidings module's directory from the working directory up.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.Contains(b, []byte("module github.com/tidings-io/tidings")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("not inside the tidings module: give -broker-bin or -url")
		}
		dir = parent
	}
}

// buildBroker builds ./cmd/broker into dir and returns the binary's path.
func buildBroker(ctx context.Context, dir string) (string, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "broker")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/broker")
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build ./cmd/broker: %v\n%s", err, out)
	}
	return bin, nil
}

// brokerFlags lists which flags a broker binary has, from its -h output,
// so that the loadgen relaxes only the limits that exist.
func brokerFlags(ctx context.Context, bin string) (map[string]bool, error) {
	out, err := exec.CommandContext(ctx, bin, "-h").CombinedOutput()
	if err != nil && len(out) == 0 {
		return nil, fmt.Errorf("%s -h: %w", bin, err)
	}
	flags := map[string]bool{}
	for _, line := range strings.Split(string(out), "\n") {
		t := strings.TrimSpace(line)
		if strings.HasPrefix(t, "-") {
			name := strings.TrimPrefix(strings.Fields(t)[0], "-")
			flags[name] = true
		}
	}
	return flags, nil
}

// relaxFlags are the broker's per-client limits, which would refuse a load
// generator's thousands of connections from a few addresses; each is set
// to "no limit" when the broker has it.
var relaxFlags = []string{"ip-max-conns", "ip-conn-rate", "max-sessions", "op-rate", "publish-rate"}

// brokerProc is a broker process the loadgen started.
type brokerProc struct {
	cmd       *exec.Cmd
	addr      string // host:port
	pprofAddr string // host:port of /debug/pprof, "" if none
	log       *os.File
	exited    chan struct{}
}

func (b *brokerProc) pid() int { return b.cmd.Process.Pid }

// startBroker starts bin listening on a free loopback port with args, and
// waits until /healthz answers.
func startBroker(ctx context.Context, bin string, have map[string]bool, args []string, logDir string, n int) (*brokerProc, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	full := []string{"-addr", addr, "-log-level", "warn", "-shutdown-timeout", "5s"}
	if have["demo"] {
		full = append(full, "-demo=false")
	}
	for _, f := range relaxFlags {
		if have[f] {
			full = append(full, "-"+f+"=0")
		}
	}
	b := &brokerProc{addr: addr, exited: make(chan struct{})}
	if have["pprof-addr"] {
		pp, err := freePort()
		if err != nil {
			return nil, err
		}
		b.pprofAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(pp))
		full = append(full, "-pprof-addr", b.pprofAddr)
	}
	full = append(full, args...)
	logf, err := os.Create(filepath.Join(logDir, fmt.Sprintf("broker-%d.log", n)))
	if err != nil {
		return nil, err
	}
	b.log = logf
	b.cmd = exec.Command(bin, full...)
	b.cmd.Stdout, b.cmd.Stderr = logf, logf
	if err := b.cmd.Start(); err != nil {
		_ = logf.Close()
		return nil, fmt.Errorf("starting broker: %w", err)
	}
	go func() { _ = b.cmd.Wait(); close(b.exited) }()
	if err := waitHTTP(ctx, "http://"+addr+"/healthz", b.exited); err != nil {
		b.stop()
		return nil, fmt.Errorf("broker %s did not become healthy: %w (log: %s)", strings.Join(full, " "), err, logf.Name())
	}
	return b, nil
}

// waitHTTP polls url until it answers 200, the process exits, or 20 s pass.
func waitHTTP(ctx context.Context, url string, exited <-chan struct{}) error {
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return errors.New("process exited")
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return errors.New("timeout")
}

// stop ends the broker: SIGTERM, then SIGKILL after 10 s. Only this
// process, by its pid.
func (b *brokerProc) stop() {
	if b == nil || b.cmd.Process == nil {
		return
	}
	terminate(b.cmd.Process, b.exited, 10*time.Second)
	_ = b.log.Close()
}

// redisProc is a redis-server the loadgen started for the cluster scenario.
type redisProc struct {
	cmd    *exec.Cmd
	port   int
	exited chan struct{}
}

// startRedis runs redis-server without persistence on a free loopback port
// (never 6379) and waits until it accepts connections.
func startRedis(bin, dir string) (*redisProc, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	return startRedisOn(bin, dir, port)
}

// startRedisOn runs redis-server on port with extra arguments, its files
// in dir, and waits until it answers PING.
func startRedisOn(bin, dir string, port int, extra ...string) (*redisProc, error) {
	args := append([]string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", dir, "--daemonize", "no", "--loglevel", "warning"}, extra...)
	cmd := exec.Command(bin, args...)
	logf, err := os.Create(filepath.Join(dir, "redis.log"))
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	r := &redisProc{cmd: cmd, port: port, exited: make(chan struct{})}
	go func() { _ = cmd.Wait(); _ = logf.Close(); close(r.exited) }()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", r.addr(), time.Second)
		if err == nil {
			_, _ = c.Write([]byte("PING\r\n"))
			_ = c.SetReadDeadline(time.Now().Add(time.Second))
			buf := make([]byte, 16)
			n, _ := c.Read(buf)
			_ = c.Close()
			if strings.HasPrefix(string(buf[:n]), "+PONG") {
				return r, nil
			}
		}
		select {
		case <-r.exited:
			return nil, errors.New("redis-server exited at start")
		case <-time.After(50 * time.Millisecond):
		}
	}
	r.stop()
	return nil, errors.New("redis-server did not answer PING")
}

func (r *redisProc) addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(r.port)) }

// stop kills the redis-server this loadgen started (by its pid).
func (r *redisProc) stop() {
	if r == nil {
		return
	}
	terminate(r.cmd.Process, r.exited, 5*time.Second)
}

// terminate sends p SIGTERM and, when it has not exited (exited closed)
// within grace, SIGKILL; it returns once p has exited.
func terminate(p *os.Process, exited <-chan struct{}, grace time.Duration) {
	_ = p.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(grace):
		_ = p.Kill()
		<-exited
	}
}

// listenerPID finds the process listening on a loopback TCP port, from
// /proc/net/tcp and the /proc/<pid>/fd links, for -url runs without
// -broker-pid. It returns 0 when none is found (or not readable).
func listenerPID(port int) int {
	inodes := map[string]bool{}
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			fs := strings.Fields(line)
			if len(fs) < 10 || fs[3] != "0A" { // 0A: LISTEN
				continue
			}
			_, hexPort, _ := strings.Cut(fs[1], ":")
			if p, err := strconv.ParseInt(hexPort, 16, 32); err == nil && int(p) == port {
				inodes[fs[9]] = true
			}
		}
	}
	if len(inodes) == 0 {
		return 0
	}
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil {
			continue
		}
		fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
		if err != nil {
			continue
		}
		for _, fd := range fds {
			l, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
			if err == nil && strings.HasPrefix(l, "socket:[") && inodes[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")] {
				return pid
			}
		}
	}
	return 0
}

// openFileLimit returns the soft "Max open files" of a process, or 0.
func openFileLimit(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "Max open files") {
			f := strings.Fields(strings.TrimPrefix(line, "Max open files"))
			if len(f) > 0 {
				n, _ := strconv.Atoi(f[0])
				return n
			}
		}
	}
	return 0
}
