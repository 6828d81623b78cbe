package ws

import (
	"errors"
	"syscall"

	"golang.org/x/sys/unix"
)

// maxIovecs is the kernel's bound on the buffers of one writev (IOV_MAX).
const maxIovecs = 1024

// writeNow writes frames to the socket of raw with writev without waiting:
// it returns how many bytes the socket took before it was full. err is nil
// when it took them all or was full (the caller waits and writes the rest),
// and the socket's error otherwise.
func writeNow(raw syscall.RawConn, frames [][]byte) (n int, err error) {
	for len(frames) > 0 {
		batch := frames[:min(len(frames), maxIovecs)]
		var (
			m    int
			werr error
		)
		cerr := raw.Write(func(fd uintptr) bool {
			for {
				m, werr = unix.Writev(int(fd), batch)
				if !errors.Is(werr, unix.EINTR) {
					return true
				}
			}
		})
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
