//go:build linux

package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
	"time"
)

// poller reads many sockets from one goroutine with epoll (-client
// epoll), where the default gives each connection a reader goroutine.
// Sockets are level-triggered: one read per ready socket per wake-up, the
// rest is reported again by the next epoll_wait. It holds no goroutine per
// idle connection, but under traffic it measured slower than goroutines
// on the 2-core machine (docs/BENCHMARKS.md): kept for that comparison.
type poller struct {
	w    *worker
	epfd int
	sink sink

	// mu guards conns (fd → connection); the poller alone closes fds.
	mu    sync.Mutex
	conns map[int32]*wconn

	quit chan struct{}
	done chan struct{}
}

func newPoller(w *worker, id int) (*poller, error) {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	p := &poller{w: w, epfd: epfd, conns: map[int32]*wconn{}, quit: make(chan struct{}), done: make(chan struct{})}
	p.sink.sh = &w.shards[id%numShards]
	return p, nil
}

// add takes c's socket from the Go runtime (a duplicate descriptor; the
// net.Conn is closed) and registers it. Frames already buffered are
// handled by the poller at its next wake-up.
func (p *poller) add(c *wconn) error {
	tc, ok := c.nc.(*net.TCPConn)
	if !ok {
		return errors.New("epoll mode needs a TCP connection")
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return err
	}
	fd := -1
	var derr error
	if err := rc.Control(func(s uintptr) { fd, derr = syscall.Dup(int(s)) }); err != nil {
		return err
	}
	if derr != nil {
		return fmt.Errorf("dup: %w", derr)
	}
	syscall.CloseOnExec(fd)
	if err := syscall.SetNonblock(fd, true); err != nil {
		_ = syscall.Close(fd)
		return err
	}
	c.wmu.Lock()
	c.fd = fd
	_ = c.nc.Close() // the duplicate keeps the socket open
	c.wmu.Unlock()
	p.mu.Lock()
	p.conns[int32(fd)] = c
	p.mu.Unlock()
	if len(c.buf) > 0 {
		// Frames that came with the handshake answer.
		// A close frame among them shows as the end of the stream later.
		p.mu.Lock()
		_ = c.consume(&p.sink, time.Now().UnixNano())
		p.sink.flush()
		p.mu.Unlock()
	}
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP, Fd: int32(fd)}
	if err := syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_ADD, fd, &ev); err != nil {
		p.mu.Lock()
		delete(p.conns, int32(fd))
		p.mu.Unlock()
		_ = syscall.Close(fd)
		return fmt.Errorf("epoll_ctl: %w", err)
	}
	return nil
}

// run is the poller goroutine.
func (p *poller) run() {
	defer close(p.done)
	events := make([]syscall.EpollEvent, 256)
	for {
		select {
		case <-p.quit:
			return
		default:
		}
		// Poll without blocking first: under load there is nearly always
		// something ready, and a blocking epoll_wait costs the thread its P
		// (the runtime hands it off while the call blocks).
		n, err := syscall.EpollWait(p.epfd, events, 0)
		if err == nil && n == 0 {
			n, err = syscall.EpollWait(p.epfd, events, 100)
		}
		if err != nil {
			if errors.Is(err, syscall.EINTR) {
				continue
			}
			p.w.noteErr(fmt.Errorf("epoll_wait: %w", err))
			return
		}
		if n == 0 {
			continue
		}
		now := time.Now().UnixNano()
		p.mu.Lock()
		for _, ev := range events[:n] {
			c := p.conns[ev.Fd]
			if c == nil {
				continue
			}
			p.readable(c, now)
		}
		p.sink.flush()
		p.mu.Unlock()
	}
}

// readable reads once from c and handles what came; at the end of the
// stream it closes the descriptor. p.mu is held.
func (p *poller) readable(c *wconn, now int64) {
	if len(c.buf) == cap(c.buf) {
		// consume leaves room for the next frame; never read into nothing.
		nb := make([]byte, len(c.buf), 2*cap(c.buf)+1)
		copy(nb, c.buf)
		c.buf = nb
	}
	n, err := syscall.Read(c.fd, c.buf[len(c.buf):cap(c.buf)])
	if n > 0 {
		c.buf = c.buf[:len(c.buf)+n]
		if cerr := c.consume(&p.sink, now); cerr != nil {
			err = cerr
		}
	}
	switch {
	case err == nil && n == 0:
		err = errEOF
	case errors.Is(err, syscall.EAGAIN), errors.Is(err, syscall.EINTR):
		return
	case err == nil:
		return
	}
	_ = syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_DEL, c.fd, nil)
	delete(p.conns, int32(c.fd))
	c.wmu.Lock()
	_ = syscall.Close(c.fd)
	c.fd = -2 // closed: writes fail
	c.wmu.Unlock()
	c.ended(err)
	p.w.wg.Done()
}

// errEOF is the end of a stream without a close frame.
var errEOF = io.EOF

func (p *poller) stop() {
	close(p.quit)
	<-p.done
	_ = syscall.Close(p.epfd)
}
