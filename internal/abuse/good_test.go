package abuse

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/tidings-io/tidings/internal/wstest"
)

// The well-behaved client runs in a process of its own, the test binary
// started again with goodClientEnv set to the node's address: the
// hostile clients' goroutines, in the test's process, would otherwise
// delay its reads and publishes, and their delay would be counted as the
// node's. It speaks a line protocol on stdin and stdout: it writes
// "ready" once subscribed; "count" answers the number of messages
// received; "finish" answers the goodReport as JSON and exits.
const goodClientEnv = "TIDINGS_ABUSE_GOOD_CLIENT"

// goodClientMain is the well-behaved client process; it returns the
// exit status.
func goodClientMain(addr string) int {
	g, err := openGood(context.Background(), addr)
	if err != nil {
		fmt.Fprintf(os.Stderr, "well-behaved client: %v\n", err)
		return 1
	}
	defer g.halt()
	fmt.Println("ready")
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		switch sc.Text() {
		case "count":
			fmt.Println(g.count())
		case "finish":
			if err := json.NewEncoder(os.Stdout).Encode(g.finish()); err != nil {
				fmt.Fprintf(os.Stderr, "well-behaved client: %v\n", err)
				return 1
			}
			return 0
		}
	}
	return 1 // stdin closed: the test is gone
}

// goodProc is the well-behaved client's process, seen from the test.
type goodProc struct {
	cmd    *exec.Cmd
	in     io.WriteCloser
	lines  chan string   // its stdout, line by line
	done   chan struct{} // closed when it has exited
	stderr *logTail
	mu     sync.Mutex // serializes requests
}

// startGood starts the well-behaved client on the node at addr and
// waits until it is subscribed. It is stopped when the test ends.
func startGood(t *testing.T, addr string) *goodProc {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), goodClientEnv+"="+addr)
	p := &goodProc{cmd: cmd, lines: make(chan string, 16), done: make(chan struct{}), stderr: &logTail{}}
	if p.in, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var readers sync.WaitGroup
	readers.Go(func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			p.stderr.add(sc.Text())
		}
	})
	readers.Go(func() {
		defer close(p.lines)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 4096), 1<<20)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
	})
	go func() {
		readers.Wait()
		_ = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = p.in.Close()
		select {
		case <-p.done:
		case <-time.After(ioTimeout):
			_ = cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			if s := p.stderr.String(); s != "" {
				t.Logf("well-behaved client's stderr:\n%s", s)
			}
		}
	})
	if line, err := p.read(); err != nil || line != "ready" {
		t.Fatalf("well-behaved client: %q %v\n%s", line, err, p.stderr.String())
	}
	return p
}

// read returns the process's next line.
func (p *goodProc) read() (string, error) {
	select {
	case line, ok := <-p.lines:
		if !ok {
			return "", fmt.Errorf("the well-behaved client exited: %s", p.stderr.String())
		}
		return line, nil
	case <-time.After(2 * ioTimeout):
		return "", fmt.Errorf("the well-behaved client did not answer within %v", 2*ioTimeout)
	}
}

// ask sends a request and returns the answer.
func (p *goodProc) ask(req string) (string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, err := io.WriteString(p.in, req+"\n"); err != nil {
		return "", err
	}
	return p.read()
}

// count returns how many messages the client has received.
func (p *goodProc) count() (int, error) {
	line, err := p.ask("count")
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(line)
}

// finish stops the client and returns its report.
func (p *goodProc) finish() (goodReport, error) {
	var r goodReport
	line, err := p.ask("finish")
	if err != nil {
		return r, err
	}
	err = json.Unmarshal([]byte(line), &r)
	return r, err
}

// goodTopic is the well-behaved client's topic.
const goodTopic = "good.t"

// goodEvery is how often the well-behaved publisher publishes.
const goodEvery = 20 * time.Millisecond

// goodClient is the well-behaved client: a WebSocket session from
// 127.0.0.1 subscribed to goodTopic, and a publisher posting to it over
// HTTP every goodEvery a message that carries its send time. It records
// the publish→receive latency of every message, and anything wrong: a
// failed publish, a gap in the offsets, a reset, a close.
type goodClient struct {
	addr string
	conn *wstest.Conn
	pub  *http.Client
	stop chan struct{} // closed to stop the publisher
	wg   sync.WaitGroup
	// got is signalled after each message received.
	got chan struct{}

	mu       sync.Mutex // guards what follows
	lat      []time.Duration
	lags     []time.Duration // how late the wake-up probe's timers fired
	acked    uint64          // the highest offset a publish was answered with
	received uint64          // the offset of the last message received
	problems []string
	closing  bool // set before the test closes the session
}

// openGood connects the well-behaved client to the node at addr and
// starts its publisher.
func openGood(ctx context.Context, addr string) (*goodClient, error) {
	ctx, cancel := context.WithTimeout(ctx, ioTimeout)
	defer cancel()
	conn, err := wstest.Open(ctx, "ws://"+addr+"/v1/ws")
	if err != nil {
		return nil, err
	}
	g := &goodClient{addr: addr, conn: conn, stop: make(chan struct{}), got: make(chan struct{}, 1),
		pub: &http.Client{Timeout: ioTimeout, Transport: &http.Transport{MaxIdleConnsPerHost: 1, DisableCompression: true}}}
	deadline := time.Now().Add(ioTimeout)
	if _, err := conn.Expect("welcome", deadline); err != nil {
		_ = conn.Close()
		return nil, err
	}
	if err := conn.Subscribe(deadline, goodTopic); err != nil {
		_ = conn.Close()
		return nil, err
	}
	g.wg.Add(3)
	go g.receive()
	go g.publish()
	go g.probe()
	return g, nil
}

// problem records something the well-behaved client should not see.
func (g *goodClient) problem(format string, args ...any) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.problems) < 20 {
		g.problems = append(g.problems, fmt.Sprintf(format, args...))
	}
}

// receive reads the session until it is closed.
func (g *goodClient) receive() {
	defer g.wg.Done()
	for {
		f, err := g.conn.Next(time.Now().Add(ioTimeout))
		now := time.Now()
		if err != nil {
			g.mu.Lock()
			closing := g.closing
			g.mu.Unlock()
			if !closing {
				g.problem("session ended: %v", err)
			}
			return
		}
		if f.Type != "message" || f.Topic != goodTopic {
			g.problem("unexpected frame %s", f.Raw)
			continue
		}
		var data struct {
			T int64 `json:"t"`
		}
		if err := json.Unmarshal(f.Data, &data); err != nil {
			g.problem("message data %s: %v", f.Data, err)
			continue
		}
		g.mu.Lock()
		prev := g.received
		g.received = f.Offset
		g.lat = append(g.lat, now.Sub(time.Unix(0, data.T)))
		g.mu.Unlock()

		if f.Offset != prev+1 {
			g.problem("offset %d after %d: a gap or a repeat", f.Offset, prev)
		}
		select {
		case g.got <- struct{}{}:
		default:
		}
	}
}

// publish publishes every goodEvery until stopped.
func (g *goodClient) publish() {
	defer g.wg.Done()
	tick := time.NewTicker(goodEvery)
	defer tick.Stop()
	for n := 0; ; n++ {
		select {
		case <-g.stop:
			return
		case <-tick.C:
		}
		body := fmt.Appendf(nil, `{"topic":%q,"data":{"t":%d,"n":%d}}`, goodTopic, time.Now().UnixNano(), n)
		ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
		off, err := publish(ctx, g.pub, g.addr, body)
		cancel()
		if err != nil {
			g.problem("publish %d: %v", n, err)
			continue
		}
		g.mu.Lock()
		g.acked = max(g.acked, off)
		g.mu.Unlock()
	}
}

// wakeEvery is the period of the wake-up probe.
const wakeEvery = 10 * time.Millisecond

// probe measures, until stopped, how late a timer of wakeEvery fires in
// the client's process: a measure of how busy the host's CPUs are, which
// delays the client's reads as it delays the node.
func (g *goodClient) probe() {
	defer g.wg.Done()
	timer := time.NewTimer(wakeEvery)
	defer timer.Stop()
	for {
		start := time.Now()
		timer.Reset(wakeEvery)
		select {
		case <-g.stop:
			return
		case <-timer.C:
		}
		g.mu.Lock()
		g.lags = append(g.lags, time.Since(start)-wakeEvery)
		g.mu.Unlock()
	}
}

// count returns how many messages the client has received.
func (g *goodClient) count() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.lat)
}

// goodReport is what the well-behaved client saw.
type goodReport struct {
	Messages      int
	P50, P99, Max time.Duration
	// WakeP99 is the 99th percentile of how late the client's own
	// timers fired: above a few milliseconds, the host was busy.
	WakeP99  time.Duration
	Problems []string
}

// finish stops the publisher, waits (bounded) until every message it was
// answered for has arrived, closes the session and reports.
func (g *goodClient) finish() goodReport {
	select {
	case <-g.stop:
	default:
		close(g.stop)
	}
	deadline := time.After(ioTimeout)
	for waiting := true; waiting; {
		g.mu.Lock()
		done := g.received >= g.acked
		acked, received := g.acked, g.received
		g.mu.Unlock()
		if done {
			break
		}
		select {
		case <-g.got:
		case <-deadline:
			g.problem("offsets up to %d were acknowledged, only %d received %v later", acked, received, ioTimeout)
			waiting = false
		}
	}
	g.halt()
	g.mu.Lock()
	defer g.mu.Unlock()
	r := goodReport{Messages: len(g.lat), Problems: slices.Clone(g.problems)}
	if len(g.lat) == 0 {
		r.Problems = append(r.Problems, "no message received")
		return r
	}
	if len(g.lags) > 0 {
		lags := slices.Clone(g.lags)
		slices.Sort(lags)
		r.WakeP99 = percentile(lags, 0.99)
	}
	lat := slices.Clone(g.lat)
	slices.Sort(lat)
	r.P50, r.P99, r.Max = percentile(lat, 0.50), percentile(lat, 0.99), lat[len(lat)-1]
	return r
}

// halt stops both goroutines, once.
func (g *goodClient) halt() {
	select {
	case <-g.stop:
	default:
		close(g.stop)
	}
	g.mu.Lock()
	g.closing = true
	g.mu.Unlock()
	_ = g.conn.Close()
	g.wg.Wait()
}

// percentile returns the p-quantile of sorted (nearest rank).
func percentile(sorted []time.Duration, p float64) time.Duration {
	i := int(float64(len(sorted))*p+0.999999) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}
