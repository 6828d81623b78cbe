package redistest

import (
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// Link is a TCP proxy to a Redis server that a test can break: Cut drops
// every connection through it and refuses new ones; Stall drops them and
// holds new ones open without forwarding a byte, as a Redis that stopped
// answering does. Restore forwards again.
type Link struct {
	ln     net.Listener
	target string
	wg     sync.WaitGroup

	// mu guards conns, held and mode.
	mu    sync.Mutex
	conns map[net.Conn]struct{}
	held  map[net.Conn]struct{}
	mode  linkMode
}

type linkMode int

const (
	linkUp linkMode = iota
	linkCut
	linkStalled
)

// StartLink proxies a free loopback port to target (host:port); it is
// closed at cleanup.
func StartLink(t testing.TB, target string) *Link {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &Link{ln: ln, target: target, conns: make(map[net.Conn]struct{}), held: make(map[net.Conn]struct{})}
	l.wg.Add(1)
	go l.serve()
	t.Cleanup(l.close)
	return l
}

// Addr is the link's host:port.
func (l *Link) Addr() string { return l.ln.Addr().String() }

// URL is the link's redis:// URL.
func (l *Link) URL() string { return "redis://" + l.Addr() + "/0" }

func (l *Link) serve() {
	defer l.wg.Done()
	for {
		in, err := l.ln.Accept()
		if err != nil {
			return
		}
		l.mu.Lock()
		switch l.mode {
		case linkCut:
			l.mu.Unlock()
			_ = in.Close()
			continue
		case linkStalled:
			l.held[in] = struct{}{}
			l.mu.Unlock()
			continue
		}
		l.mu.Unlock()
		out, err := net.DialTimeout("tcp", l.target, 2*time.Second)
		if err != nil {
			_ = in.Close()
			continue
		}
		l.mu.Lock()
		if l.mode != linkUp {
			l.mu.Unlock()
			_ = in.Close()
			_ = out.Close()
			continue
		}
		l.conns[in], l.conns[out] = struct{}{}, struct{}{}
		l.mu.Unlock()
		l.wg.Add(2)
		go l.pipe(in, out)
		go l.pipe(out, in)
	}
}

// pipe copies src to dst until either ends, then closes both.
func (l *Link) pipe(dst, src net.Conn) {
	defer l.wg.Done()
	_, _ = io.Copy(dst, src)
	_ = dst.Close()
	_ = src.Close()
	l.mu.Lock()
	delete(l.conns, dst)
	delete(l.conns, src)
	l.mu.Unlock()
}

// set drops every connection and switches to mode.
func (l *Link) set(mode linkMode) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.mode = mode
	for c := range l.conns {
		_ = c.Close()
	}
	for c := range l.held {
		_ = c.Close()
		delete(l.held, c)
	}
}

// Cut drops every connection and refuses new ones.
func (l *Link) Cut() { l.set(linkCut) }

// Stall drops every connection and holds new ones open, silent.
func (l *Link) Stall() { l.set(linkStalled) }

// Restore closes the held connections and forwards new ones again.
func (l *Link) Restore() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.mode = linkUp
	for c := range l.held {
		_ = c.Close()
		delete(l.held, c)
	}
}

func (l *Link) close() {
	_ = l.ln.Close()
	l.Cut()
	l.wg.Wait()
}
