package web_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/tidings-io/tidings/internal/browsertest"
	"github.com/tidings-io/tidings/internal/redistest"
	"github.com/tidings-io/tidings/internal/testkit"
	"github.com/tidings-io/tidings/web"
)

// drainJS opens many clients of the real browser client in one page, each
// recording the nodes it opened on, its close codes, its offsets on one
// topic and its resets.
const drainJS = `
import { Tidings } from '/v1/client.js';
window.clients = [];
window.startMany = (url, n, topic) => {
  for (let i = 0; i < n; i++) {
    const rec = { opens: [], closes: [], offsets: [], resets: [] };
    const c = new Tidings(url, { goingAwayDelay: 1000 });
    c.addEventListener('open', (e) => rec.opens.push(e.node));
    c.addEventListener('close', (e) => rec.closes.push(e.code));
    c.subscribe(topic, (m) => rec.offsets.push(m.offset), { onReset: (r) => rec.resets.push(r.reason) });
    window.clients.push({ c, rec });
  }
  return true;
};
window.opened = () => window.clients.filter((x) => x.rec.opens.length > 0).length;
window.received = (n) => window.clients.filter((x) => x.rec.offsets.length >= n).length;
window.summary = () => window.clients.map((x) => x.rec);
window.drainReady = true;
`

// brokerProcess is one broker binary running on real Redis.
type brokerProcess struct {
	cmd  *exec.Cmd
	addr string
	node string
	done chan struct{} // closed when the process has exited
	err  error         // its exit status, once done is closed
}

// startBroker runs the binary and waits for its listening line.
func startBroker(t *testing.T, bin, node string, args ...string) *brokerProcess {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"-addr", "127.0.0.1:0", "-node-id", node, "-demo=false", "-allowed-origins", "*"}, args...)...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &brokerProcess{cmd: cmd, node: node, done: make(chan struct{})}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var line struct{ Msg, Addr string }
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "listening" {
				addr <- line.Addr
			}
		}
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
	})
	select {
	case p.addr = <-addr:
	case <-p.done:
		t.Fatalf("broker %s exited: %v", node, p.err)
	case <-time.After(30 * time.Second):
		t.Fatalf("broker %s did not start", node)
	}
	return p
}

// balancer is a TCP load balancer like a Kubernetes Service: each new
// connection goes to the next backend that accepts it.
type balancer struct {
	ln       net.Listener
	backends []string
	mu       sync.Mutex // guards next and conns
	next     int
	conns    map[net.Conn]struct{}
	wg       sync.WaitGroup
}

func startBalancer(t *testing.T, backends ...string) *balancer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &balancer{ln: ln, backends: backends, conns: map[net.Conn]struct{}{}}
	b.wg.Add(1)
	go b.serve()
	t.Cleanup(func() {
		_ = ln.Close()
		b.mu.Lock()
		for c := range b.conns {
			_ = c.Close()
		}
		b.mu.Unlock()
		b.wg.Wait()
	})
	return b
}

func (b *balancer) serve() {
	defer b.wg.Done()
	for {
		c, err := b.ln.Accept()
		if err != nil {
			return
		}
		b.wg.Add(1)
		go b.forward(c)
	}
}

// forward pipes c to the first backend, in round-robin order, that accepts.
func (b *balancer) forward(c net.Conn) {
	defer b.wg.Done()
	b.mu.Lock()
	start := b.next
	b.next++
	b.mu.Unlock()
	var up net.Conn
	for i := range b.backends {
		var err error
		if up, err = net.DialTimeout("tcp", b.backends[(start+i)%len(b.backends)], time.Second); err == nil {
			break
		}
	}
	if up == nil {
		_ = c.Close()
		return
	}
	b.mu.Lock()
	b.conns[c], b.conns[up] = struct{}{}, struct{}{}
	b.mu.Unlock()
	var pipes sync.WaitGroup
	pipes.Add(2)
	pipe := func(dst, src net.Conn) {
		defer pipes.Done()
		_, _ = io.Copy(dst, src)
		_ = dst.Close()
		_ = src.Close()
	}
	go pipe(up, c)
	go pipe(c, up)
	pipes.Wait()
	b.mu.Lock()
	delete(b.conns, c)
	delete(b.conns, up)
	b.mu.Unlock()
}

// poll reports whether expr became truthy within timeout.
func (p *page) poll(expr string, timeout time.Duration) bool {
	return browsertest.Poll(p.ctx, expr, 50*time.Millisecond, timeout) == nil
}

// TestDrainMovesClientsToTheOtherNode is the rollout drill: two broker
// processes on one Redis behind a balancer, 200 browser clients, a
// publisher running throughout, and SIGTERM to one node as Kubernetes sends
// it after preStop. Every client of that node gets 1001, reconnects to the
// other node, resumes with recovered:true, and no client loses or repeats
// a message.
func TestDrainMovesClientsToTheOtherNode(t *testing.T) {
	t.Parallel()
	const clients, topic = 200, "drain.feed"
	srv := redistest.Start(t)
	bin := testkit.BuildBroker(t)
	// History must cover what is published while a client reconnects:
	// here 50 messages/s for up to a few seconds of backoff.
	a := startBroker(t, bin, "node-a", "-redis", srv.URL(), "-history-size", "2000")
	b := startBroker(t, bin, "node-b", "-redis", srv.URL(), "-history-size", "2000")
	lb := startBalancer(t, a.addr, b.addr)

	mux := http.NewServeMux()
	mux.Handle("/v1/client.js", web.ClientHandler())
	mux.HandleFunc("/drain/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/drain/harness.js" {
			w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
			_, _ = io.WriteString(w, drainJS)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = io.WriteString(w, `<!doctype html><meta charset="utf-8"><script type="module" src="/drain/harness.js"></script>`)
	})
	pages := httptest.NewServer(mux)
	t.Cleanup(pages.Close)

	p := &page{t: t, ctx: tab(t)}
	if err := chromedp.Do(p.ctx, chromedp.Navigate(pages.URL+"/drain/")); err != nil {
		t.Fatal(err)
	}
	p.wait(`window.drainReady === true`, 10*time.Second)
	p.eval(fmt.Sprintf(`startMany(%q, %d, %q)`, "ws://"+lb.ln.Addr().String()+"/v1/ws", clients, topic), nil)
	p.wait(fmt.Sprintf(`opened() === %d`, clients), 60*time.Second)

	// The publisher runs throughout, alternating nodes; only accepted
	// messages count.
	stop := make(chan struct{})
	published := make(chan int, 1)
	go func() {
		n := 0
		hc := &http.Client{Timeout: 5 * time.Second}
		defer hc.CloseIdleConnections()
		for i := 0; ; i++ {
			select {
			case <-stop:
				published <- n
				return
			case <-time.After(20 * time.Millisecond):
			}
			target := []string{a.addr, b.addr}[i%2]
			body := fmt.Sprintf(`{"topic":%q,"data":%d}`, topic, i)
			resp, err := hc.Post("http://"+target+"/v1/publish", "application/json", bytes.NewBufferString(body))
			if err != nil {
				continue
			}
			if resp.StatusCode == http.StatusOK {
				n++
			}
			resp.Body.Close()
		}
	}()
	p.wait(fmt.Sprintf(`received(20) === %d`, clients), 30*time.Second)

	// SIGTERM to node A, as the kubelet sends it after preStop.
	if err := a.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-a.done:
		if a.err != nil {
			t.Fatalf("node A exited with %v, want 0", a.err)
		}
	case <-time.After(40 * time.Second):
		t.Fatal("node A did not exit")
	}
	// Let the clients come back and the stream flow on node B.
	p.wait(`window.clients.every((x) => x.rec.opens.at(-1) === 'node-b')`, 60*time.Second)
	close(stop)
	total := <-published
	if !p.poll(fmt.Sprintf(`received(%d) === %d`, total, clients), 60*time.Second) {
		var counts []int
		p.eval(`summary().map((r) => r.offsets.length)`, &counts)
		var sample any
		p.eval(`summary().find((r) => r.offsets.length < `+fmt.Sprint(total)+`)`, &sample)
		t.Fatalf("not every client received the %d messages: counts %v; one of them: %v", total, counts, sample)
	}

	var recs []struct {
		Opens   []string `json:"opens"`
		Closes  []int    `json:"closes"`
		Offsets []uint64 `json:"offsets"`
		Resets  []string `json:"resets"`
	}
	p.eval(`summary()`, &recs)
	movedCount := 0
	for i, r := range recs {
		want := make([]uint64, total)
		for k := range want {
			want[k] = uint64(k + 1)
		}
		if !slices.Equal(r.Offsets, want) {
			t.Fatalf("client %d received %d offsets (first gap or repeat matters): %v…, want 1…%d once each", i, len(r.Offsets), r.Offsets[:min(len(r.Offsets), 30)], total)
		}
		if len(r.Resets) != 0 {
			t.Fatalf("client %d was told to refetch (%v): the resume did not recover", i, r.Resets)
		}
		if r.Opens[0] == "node-a" {
			movedCount++
			if len(r.Closes) == 0 || r.Closes[0] != 1001 || len(r.Opens) < 2 || r.Opens[len(r.Opens)-1] != "node-b" {
				t.Fatalf("client %d of node A: opens %v closes %v, want 1001 then node B", i, r.Opens, r.Closes)
			}
		} else if len(r.Closes) != 0 {
			t.Fatalf("client %d of node B was disconnected: %v", i, r.Closes)
		}
	}
	if movedCount == 0 || movedCount == clients {
		t.Fatalf("%d of %d clients started on node A: the balancer did not spread them", movedCount, clients)
	}
	t.Logf("%d clients moved from node A to node B; %d messages, each delivered once to every client", movedCount, total)
}
