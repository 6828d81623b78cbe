package ws

import (
	"errors"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// maxIovecs is the kernel's bound on the buffers of one writev (IOV_MAX).
const maxIovecs = 1024

// rawWriter writes frames to a socket with writev without waiting. The
// callback it hands to syscall.RawConn.Write is bound once, in init, so
// that a write allocates nothing; a session's writes never overlap, so
// one rawWriter serves them all.
type rawWriter struct {
	call func(fd uintptr) bool // writevFD, bound to this rawWriter

	// The current call's buffers and result.
	batch [][]byte
	n     int
	err   error
}

// init binds w's callback.
func (w *rawWriter) init() { w.call = w.writevFD }

// writevFD is the RawConn.Write callback: one writev of w.batch, retried
// when a signal interrupts it.
func (w *rawWriter) writevFD(fd uintptr) bool {
	for {
		w.n, w.err = writev(int(fd), w.batch)
		if !errors.Is(w.err, unix.EINTR) {
			return true
		}
	}
}

// writeNow writes frames to the socket of raw with writev without
// waiting: it returns how many bytes the socket took before it was full. err is nil when it took them
// all or was full (the caller waits and writes the rest), and the socket's
// error otherwise.
func (w *rawWriter) writeNow(raw syscall.RawConn, frames [][]byte) (n int, err error) {
	for len(frames) > 0 {
		w.batch = frames[:min(len(frames), maxIovecs)]
		cerr := raw.Write(w.call)
		m, werr, batch := w.n, w.err, w.batch
		w.batch = nil // no reference to the frames outlives the call
		if cerr != nil {
			return n, cerr
		}
		if m > 0 {
			n += m
		}
		if errors.Is(werr, unix.EAGAIN) {
			return n, nil
		}
		if werr != nil {
			return n, werr
		}
		if m < bufsLen(batch) {
			return n, nil
		}
		frames = frames[len(batch):]
	}
	return n, nil
}

func bufsLen(bufs [][]byte) int {
	n := 0
	for _, b := range bufs {
		n += len(b)
	}
	return n
}

// iovecs holds writev's buffer lists between calls: unix.Writev allocates
// one per call, which was the broker's largest allocation under load.
var iovecs = sync.Pool{New: func() any {
	v := make([]unix.Iovec, 0, 64)
	return &v
}}

// writev is one writev system call with a pooled buffer list.
func writev(fd int, bufs [][]byte) (int, error) {
	p := iovecs.Get().(*[]unix.Iovec)
	iov := (*p)[:0]
	for _, b := range bufs {
		if len(b) > 0 {
			v := unix.Iovec{Base: &b[0]}
			v.SetLen(len(b))
			iov = append(iov, v)
		}
	}
	var (
		n     uintptr
		errno syscall.Errno
	)
	if len(iov) > 0 {
		n, _, errno = unix.Syscall(unix.SYS_WRITEV, uintptr(fd), uintptr(unsafe.Pointer(&iov[0])), uintptr(len(iov)))
	}
	clear(iov) // no reference to the frames outlives the call
	*p = iov[:0]
	iovecs.Put(p)
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

// unacked returns how many bytes the socket of raw holds that the peer has
// not acknowledged yet (SIOCOUTQ); ok is false when it cannot tell.
func unacked(raw syscall.RawConn) (n int, ok bool) {
	var err error
	if cerr := raw.Control(func(fd uintptr) { n, err = unix.IoctlGetInt(int(fd), unix.SIOCOUTQ) }); cerr != nil || err != nil {
		return 0, false
	}
	return n, true
}
