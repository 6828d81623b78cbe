//go:build !linux

package ws

import (
	"errors"
	"syscall"
)

// readNow is Linux only, as the poller whose sessions use it.
func (rb *readBuffer) readNow(syscall.RawConn, []byte) (int, error) {
	return 0, errors.ErrUnsupported
}

func (rb *readBuffer) readFromFd(uintptr) bool { return true }

// queued cannot tell on this system.
func (rb *readBuffer) queued(syscall.RawConn) (int, bool) { return 0, false }

func (rb *readBuffer) inqFromFd(uintptr) {}
