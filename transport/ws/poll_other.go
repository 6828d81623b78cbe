//go:build !linux

package ws

import (
	"errors"
	"syscall"
)

// poller is Linux only; elsewhere every session has a reader goroutine.
type poller struct{}

func newPoller() (*poller, error) { return nil, errors.ErrUnsupported }

func (*poller) add(syscall.RawConn, uint64) error   { return errors.ErrUnsupported }
func (*poller) rearm(syscall.RawConn, uint64) error { return errors.ErrUnsupported }
func (*poller) wait(int, func(uint64)) (bool, error) {
	return false, errors.ErrUnsupported
}
func (*poller) wake()  {}
func (*poller) close() {}
