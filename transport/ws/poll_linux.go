package ws

import (
	"errors"
	"syscall"

	"golang.org/x/sys/unix"
)

// poller tells which idle sessions have bytes to read, so that no
// goroutine waits on a quiet socket: each session's socket is in one
// epoll set, armed for one event (EPOLLONESHOT) each time its reader
// parks; the reader that event starts parks again once it has read
// everything buffered. The socket stays in the Go runtime's own poller
// too; reads and writes go through net.Conn as usual.
type poller struct {
	epfd int
	// wakefd is an eventfd in the set whose event stops a wait early.
	wakefd int
	events []unix.EpollEvent // wait's buffer: only the event loop waits
}

// pollInterest is what a session's socket is armed for: bytes to read or
// the peer's end, once.
const pollInterest = unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT

// wakeID is the id of wakefd's events; session ids start at 1.
const wakeID = 0

func newPoller() (*poller, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	wakefd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		_ = unix.Close(epfd)
		return nil, err
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN}
	setEventID(&ev, wakeID)
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wakefd, &ev); err != nil {
		_ = unix.Close(epfd)
		_ = unix.Close(wakefd)
		return nil, err
	}
	return &poller{epfd: epfd, wakefd: wakefd, events: make([]unix.EpollEvent, pollEvents)}, nil
}

// setEventID stores id in the event's user data (the Fd and Pad fields
// are the kernel's 64-bit epoll_data, which epoll hands back untouched).
func setEventID(ev *unix.EpollEvent, id uint64) {
	ev.Fd = int32(uint32(id))
	ev.Pad = int32(uint32(id >> 32))
}

func eventID(ev *unix.EpollEvent) uint64 {
	return uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
}

// add puts the socket of raw in the set with id, not armed: the first
// rearm arms it. Were it armed here too, the session's first park would
// arm it a second time, and when bytes came between the two, both events
// would start a reader: the second after the first had read them and
// parked, to wait on an empty socket until the heartbeat.
func (p *poller) add(raw syscall.RawConn, id uint64) error {
	// The kernel adds EPOLLERR and EPOLLHUP to any interest; EPOLLONESHOT
	// makes even those fire at most once before the first rearm, and a
	// hung-up socket's reader ends at once rather than wait.
	return p.ctl(raw, unix.EPOLL_CTL_ADD, id, unix.EPOLLONESHOT)
}

// rearm arms the socket of raw for its next event.
func (p *poller) rearm(raw syscall.RawConn, id uint64) error {
	return p.ctl(raw, unix.EPOLL_CTL_MOD, id, pollInterest)
}

// ctl runs epoll_ctl under raw.Control, which keeps the descriptor open
// (and so not reused by another socket) for the call.
func (p *poller) ctl(raw syscall.RawConn, op int, id uint64, interest uint32) error {
	var err error
	ev := unix.EpollEvent{Events: interest}
	setEventID(&ev, id)
	cerr := raw.Control(func(fd uintptr) {
		err = unix.EpollCtl(p.epfd, op, int(fd), &ev)
	})
	return errors.Join(cerr, err)
}

// wait blocks up to msec milliseconds (-1: no bound) for events and calls
// ready with the id of each session socket that has one. It reports
// whether the wake eventfd fired.
func (p *poller) wait(msec int, ready func(id uint64)) (woken bool, err error) {
	events := p.events
	n, err := unix.EpollWait(p.epfd, events, msec)
	if err != nil {
		if errors.Is(err, unix.EINTR) {
			return false, nil
		}
		return false, err
	}
	for i := range events[:n] {
		id := eventID(&events[i])
		if id == wakeID {
			var buf [8]byte
			_, _ = unix.Read(p.wakefd, buf[:])
			woken = true
			continue
		}
		ready(id)
	}
	return woken, nil
}

// wake makes a wait return now.
func (p *poller) wake() {
	one := [8]byte{1}
	_, _ = unix.Write(p.wakefd, one[:])
}

// close releases the set; sockets still in it are unaffected.
func (p *poller) close() {
	_ = unix.Close(p.epfd)
	_ = unix.Close(p.wakefd)
}

// pollEvents is how many events one wait takes at most.
const pollEvents = 256
