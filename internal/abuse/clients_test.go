package abuse

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
	"github.com/tidings-io/tidings/internal/wstest"
)

// ioTimeout bounds every dial, read and write of the test's clients.
const ioTimeout = 20 * time.Second

// countingConn counts the bytes written to it into sent.
type countingConn struct {
	net.Conn
	sent *atomic.Int64
}

func (c countingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.sent.Add(int64(n))
	return n, err
}

// dialFrom opens a TCP connection to addr from the loopback address src,
// counting what is written to it into sent.
func dialFrom(ctx context.Context, src, addr string, sent *atomic.Int64) (net.Conn, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: ioTimeout}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return countingConn{Conn: nc, sent: sent}, nil
}

// addrs hands out loopback source addresses 127.0.0.2, 127.0.0.3, …, so
// that each group of hostile clients has addresses of its own and stays
// within the per-address limits (1 000 sessions, a burst of 1 000 new
// ones). 127.0.0.1 is the well-behaved client's and the probes'.
type addrs struct{ next atomic.Int32 }

// take returns a fresh source address.
func (a *addrs) take() string {
	n := a.next.Add(1)
	return fmt.Sprintf("127.0.%d.%d", n/250, n%250+1)
}

// attacker is a hostile WebSocket session held as lean as the test can:
// a socket, and a small reader while it reads.
type attacker struct {
	nc net.Conn
	br *bufio.Reader
}

// upgradeRequest is the WebSocket upgrade, as any client sends it.
const upgradeRequest = "GET /v1/ws HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
	"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: pubsub.v1\r\n\r\n"

// dialWS opens a session from src and reads its welcome frame.
func dialWS(ctx context.Context, src, addr string, sent *atomic.Int64) (*attacker, error) {
	nc, err := dialFrom(ctx, src, addr, sent)
	if err != nil {
		return nil, err
	}
	a := &attacker{nc: nc, br: bufio.NewReaderSize(nc, 1024)}
	_ = nc.SetDeadline(time.Now().Add(ioTimeout))
	if _, err := fmt.Fprintf(nc, upgradeRequest, addr); err != nil {
		_ = nc.Close()
		return nil, err
	}
	resp, err := http.ReadResponse(a.br, nil)
	if err != nil {
		_ = nc.Close()
		return nil, fmt.Errorf("upgrade from %s: %w", src, err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusSwitchingProtocols {
		_ = nc.Close()
		return nil, fmt.Errorf("upgrade from %s: %s", src, resp.Status)
	}
	f, err := a.next()
	if err != nil || f.Type != "welcome" {
		_ = nc.Close()
		return nil, fmt.Errorf("welcome from %s: %+v %v", src, f, err)
	}
	return a, nil
}

// answer is the part of a server frame the attackers look at.
type answer struct {
	Type, Code, Topic string
}

// parseAnswer reads type, code and topic from a server frame: the
// broker writes them as `"type":"…"`, and the attackers read
// thousands of answers, so they look for them rather than decode.
func parseAnswer(p []byte) (answer, error) {
	field := func(name string) string {
		_, v, ok := bytes.Cut(p, []byte(`"`+name+`":"`))
		if !ok {
			return ""
		}
		v, _, _ = bytes.Cut(v, []byte(`"`))
		return string(v)
	}
	f := answer{Type: field("type"), Code: field("code"), Topic: field("topic")}
	if f.Type == "" {
		return f, fmt.Errorf("server frame %q has no type", p)
	}
	return f, nil
}

// next reads the next text frame, answering pings on the way.
func (a *attacker) next() (answer, error) {
	_ = a.nc.SetReadDeadline(time.Now().Add(ioTimeout))
	for {
		h, err := ws.ReadHeader(a.br)
		if err != nil {
			return answer{}, err
		}
		if h.Length > 1<<20 {
			return answer{}, fmt.Errorf("frame of %d bytes", h.Length)
		}
		p := make([]byte, h.Length)
		if _, err := io.ReadFull(a.br, p); err != nil {
			return answer{}, err
		}
		switch h.OpCode {
		case ws.OpText:
			return parseAnswer(p)
		case ws.OpPing:
			if err := ws.WriteFrame(a.nc, ws.MaskFrameInPlace(ws.NewPongFrame(p))); err != nil {
				return answer{}, err
			}
		case ws.OpClose:
			code, reason := ws.ParseCloseFrameData(p)
			return answer{}, &wstest.CloseError{Code: code, Reason: reason}
		}
	}
}

// send writes the commands, each a JSON object, as masked text frames in
// one write.
func (a *attacker) send(cmds ...string) error {
	var buf bytes.Buffer
	for _, c := range cmds {
		if err := ws.WriteFrame(&buf, ws.MaskFrameInPlace(ws.NewTextFrame([]byte(c)))); err != nil {
			return err
		}
	}
	_ = a.nc.SetWriteDeadline(time.Now().Add(ioTimeout))
	_, err := a.nc.Write(buf.Bytes())
	return err
}

// quiet drops the session's reader: from now on it reads nothing.
func (a *attacker) quiet() { a.br = nil }

// close closes the socket without a close frame, as a client that just
// goes away.
func (a *attacker) close() { _ = a.nc.Close() }

// subscribeCmd is a subscribe command for topic.
func subscribeCmd(topic string) string { return `{"op":"subscribe","topic":"` + topic + `"}` }

// unsubscribeCmd is an unsubscribe command for topic.
func unsubscribeCmd(topic string) string { return `{"op":"unsubscribe","topic":"` + topic + `"}` }

// crowd is a group of hostile sessions.
type crowd []*attacker

// openCrowd opens n sessions, at most perAddr from each source address
// taken from src, a few at a time.
func openCrowd(ctx context.Context, n int, perAddr int, src *addrs, addr string, sent *atomic.Int64) (crowd, error) {
	out := make(crowd, n)
	from := make([]string, (n+perAddr-1)/perAddr)
	for i := range from {
		from[i] = src.take()
	}
	err := forEach(ctx, n, 32, func(i int) error {
		a, err := dialWS(ctx, from[i/perAddr], addr, sent)
		out[i] = a
		return err
	})
	if err != nil {
		out.close()
		return nil, err
	}
	return out, nil
}

// close closes every session.
func (c crowd) close() {
	for _, a := range c {
		if a != nil {
			a.close()
		}
	}
}

// forEach calls f for 0…n-1 from at most workers goroutines, and returns
// the first error; after one, the calls not started are skipped.
func forEach(ctx context.Context, n, workers int, f func(i int) error) error {
	var (
		next  atomic.Int64
		wg    sync.WaitGroup
		once  sync.Once
		first error
	)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for range min(workers, n) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				if err := f(i); err != nil {
					once.Do(func() { first = err; cancel() })
					return
				}
			}
		})
	}
	wg.Wait()
	if first == nil && ctx.Err() != nil && !errors.Is(ctx.Err(), context.Canceled) {
		return ctx.Err()
	}
	return first
}

// publishResult is the answer of POST /v1/publish.
type publishResult struct {
	Offset uint64 `json:"offset"`
}

// publish posts body to /v1/publish and returns the offset the node
// answered.
func publish(ctx context.Context, c *http.Client, addr string, body []byte) (uint64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+"/v1/publish", bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("publish: %s %s", resp.Status, answer)
	}
	var r publishResult
	if err := json.Unmarshal(answer, &r); err != nil {
		return 0, fmt.Errorf("publish answer %q: %w", answer, err)
	}
	return r.Offset, nil
}

// rawPublisher publishes over one HTTP/1.1 keep-alive connection it
// writes by hand: a request is its head, then its body's parts as they
// are, so that a large message is not copied on the way (the test runs
// under the race detector, which makes every copy slow).
type rawPublisher struct {
	addr string
	nc   net.Conn
	br   *bufio.Reader
}

// dialPublisher opens a publisher's connection from src.
func dialPublisher(ctx context.Context, src, addr string, sent *atomic.Int64) (*rawPublisher, error) {
	nc, err := dialFrom(ctx, src, addr, sent)
	if err != nil {
		return nil, err
	}
	return &rawPublisher{addr: addr, nc: nc, br: bufio.NewReaderSize(nc, 1024)}, nil
}

// publish posts the body made of parts to path (/v1/publish or
// /v1/publish/batch), which must answer 200.
func (p *rawPublisher) publish(path string, parts ...[]byte) error {
	n := 0
	for _, b := range parts {
		n += len(b)
	}
	head := fmt.Appendf(nil, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", path, p.addr, n)
	bufs := append(net.Buffers{head}, parts...)
	_ = p.nc.SetDeadline(time.Now().Add(ioTimeout))
	if _, err := bufs.WriteTo(p.nc); err != nil {
		return err
	}
	resp, err := http.ReadResponse(p.br, nil)
	if err != nil {
		return err
	}
	answer, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("publish: %s %s", resp.Status, answer)
	}
	return nil
}

// close closes the publisher's connection.
func (p *rawPublisher) close() { _ = p.nc.Close() }

// keepAliveConn is an HTTP/1.1 connection left idle after one request.
type keepAliveConn struct{ nc net.Conn }

// keepAlive opens a connection from src, sends one GET of path and reads
// its answer, and leaves the connection open. ok is false when the node
// refused to keep it: it closed the connection instead of answering, or
// answered with Connection: close.
func keepAlive(ctx context.Context, src, addr, path string, sent *atomic.Int64) (c keepAliveConn, ok bool, err error) {
	nc, err := dialFrom(ctx, src, addr, sent)
	if err != nil {
		return c, false, err
	}
	_ = nc.SetDeadline(time.Now().Add(ioTimeout))
	if _, err := fmt.Fprintf(nc, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", path, addr); err != nil {
		_ = nc.Close()
		return c, false, nil
	}
	br := bufio.NewReaderSize(nc, 512)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		_ = nc.Close()
		if isClosed(err) {
			return c, false, nil
		}
		return c, false, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return c, false, fmt.Errorf("GET %s from %s: %s", path, src, resp.Status)
	}
	if resp.Close {
		// Answered with Connection: close: the node will not keep it.
		_ = nc.Close()
		return c, false, nil
	}
	return keepAliveConn{nc: nc}, true, nil
}

// isClosed reports whether err is the peer closing or resetting the
// connection.
func isClosed(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) ||
		strings.Contains(err.Error(), "connection reset")
}

// partialFrame is a masked text frame header declaring 65 536 bytes,
// followed by the first byte of its payload only.
func partialFrame() []byte {
	b := []byte{0x81, 0x80 | 127}
	b = binary.BigEndian.AppendUint64(b, 65536)
	b = append(b, 1, 2, 3, 4) // the mask
	return append(b, '{'^1)
}
