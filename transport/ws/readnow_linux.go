package ws

import (
	"io"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// readNow reads into dst what the socket of raw has, without waiting:
// errWouldBlock when it has nothing, io.EOF when the peer has ended its
// side.
func (rb *readBuffer) readNow(raw syscall.RawConn, dst []byte) (int, error) {
	rb.dst = dst
	cerr := raw.Read(rb.readFd)
	n, err := rb.n, rb.err
	rb.dst, rb.n, rb.err = nil, 0, nil // pins neither the message buffer nor an error
	switch {
	case cerr != nil:
		return 0, cerr
	case err == unix.EAGAIN:
		return 0, errWouldBlock
	case err != nil:
		return 0, os.NewSyscallError("read", err)
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// readFromFd is readNow's callback: one read(2) on the non-blocking
// socket. It returns true, so that RawConn.Read never waits.
func (rb *readBuffer) readFromFd(fd uintptr) bool {
	for {
		n, err := unix.Read(int(fd), rb.dst)
		if err == unix.EINTR {
			continue
		}
		rb.n, rb.err = max(n, 0), err
		return true
	}
}

// queued returns how many bytes the socket of raw has received and not
// yet given to a read (SIOCINQ); ok is false when it cannot tell.
func (rb *readBuffer) queued(raw syscall.RawConn) (n int, ok bool) {
	if cerr := raw.Control(rb.inqFd); cerr != nil || rb.err != nil {
		rb.n, rb.err = 0, nil
		return 0, false
	}
	n, rb.n = rb.n, 0
	return n, true
}

// inqFromFd is queued's callback.
func (rb *readBuffer) inqFromFd(fd uintptr) {
	rb.n, rb.err = unix.IoctlGetInt(int(fd), unix.SIOCINQ)
}
