package main

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/tidings-io/tidings/internal/testkit"
	"github.com/tidings-io/tidings/internal/wstest"
)

// proc is the broker binary running as a child process.
type proc struct {
	cmd    *exec.Cmd
	addr   string
	log    *logSink
	stderr *testkit.Buffer // written by os/exec's copying goroutine
	done   chan struct{}   // closed when the process has exited
	state  *os.ProcessState
	err    error
}

// startProc starts bin on a free loopback port and waits for its listening
// line. The process is killed, if still running, when the test ends.
func startProc(t *testing.T, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{log: newLogSink(), stderr: &testkit.Buffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(bin, append([]string{"-addr", "127.0.0.1:0"}, args...)...)
	p.cmd.Stdout = p.log
	p.cmd.Stderr = p.stderr
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TIDINGS_") {
			p.cmd.Env = append(p.cmd.Env, kv)
		}
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
		p.state = p.cmd.ProcessState
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("broker stdout:\n%s\nbroker stderr:\n%s", p.log.String(), p.stderr.String())
		}
	})
	rec, err := p.log.waitRecord("listening", 30*time.Second, p.done)
	if err != nil {
		t.Fatalf("broker process: %v", err)
	}
	p.addr, _ = rec["addr"].(string)
	return p
}

// wait waits for the process to exit and returns how long that took.
func (p *proc) wait(t *testing.T, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	select {
	case <-p.done:
	case <-time.After(within):
		t.Fatalf("process still running %v later", within)
	}
	return time.Since(start)
}

func (p *proc) signal(t *testing.T, sig os.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("sending %v: %v", sig, err)
	}
}

// TestProcessSignals builds the broker and checks its signal handling as a
// real process: SIGTERM or SIGINT shuts down gracefully (the session gets
// 1001, exit status 0); a second signal exits at once.
func TestProcessSignals(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the broker binary")
	}
	t.Parallel()
	bin := testkit.BuildBroker(t)

	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run("graceful on "+sig.String(), func(t *testing.T) {
			t.Parallel()
			p := startProc(t, bin, "-shutdown-timeout", "20s")
			deadline := time.Now().Add(30 * time.Second)
			c, _ := openSession(t, p.addr, deadline, "proc.a")

			p.signal(t, sig)
			_, err := c.Next(deadline)
			ce := wstest.AsClose(err)
			if ce == nil || ce.Code != ws.StatusGoingAway || ce.Reason != "server shutting down" {
				t.Fatalf("after %v: %v, want close 1001 \"server shutting down\"", sig, err)
			}
			if err := c.SendClose(ws.StatusGoingAway, ""); err != nil {
				t.Fatalf("answering the close: %v", err)
			}
			p.wait(t, 20*time.Second)
			if p.err != nil || p.state.ExitCode() != 0 {
				t.Errorf("exit: %v (status %v), want 0", p.err, p.state)
			}
			if _, err := p.log.waitRecord("signal received, shutting down", time.Second, nil); err != nil {
				t.Error(err)
			}
			if _, err := p.log.waitRecord("shutdown complete", time.Second, nil); err != nil {
				t.Error(err)
			}
			if s := p.stderr.String(); s != "" {
				t.Errorf("stderr: %q, want nothing", s)
			}
		})
	}

	t.Run("second signal exits at once", func(t *testing.T) {
		t.Parallel()
		p := startProc(t, bin, "-shutdown-timeout", "30s")
		deadline := time.Now().Add(30 * time.Second)
		c, _ := openSession(t, p.addr, deadline)

		p.signal(t, syscall.SIGTERM)
		// The session gets its 1001 and does not answer: the broker now
		// waits for the reply.
		if _, err := c.Next(deadline); wstest.AsClose(err) == nil || wstest.AsClose(err).Code != ws.StatusGoingAway {
			t.Fatalf("after SIGTERM: %v, want close 1001", err)
		}
		if _, err := p.log.waitRecord("signal received, shutting down", 10*time.Second, p.done); err != nil {
			t.Fatal(err)
		}
		p.signal(t, syscall.SIGTERM)
		took := p.wait(t, 10*time.Second)
		var ee *exec.ExitError
		if !errors.As(p.err, &ee) || !p.state.Exited() || p.state.ExitCode() == 0 {
			t.Errorf("exit after the second signal: %v (status %v), want a non-zero exit status", p.err, p.state)
		}
		if _, err := p.log.waitRecord("shutdown complete", 0, nil); err == nil {
			t.Errorf("the broker completed a graceful shutdown instead of exiting at once")
		}
		t.Logf("exited %v after the second signal with %v", took, p.state)
	})
}
