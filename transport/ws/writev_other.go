//go:build !linux

package ws

import "syscall"

// rawWriter writes nothing where writev without waiting is not wired: the
// caller writes every frame through net.Conn.
type rawWriter struct{}

// init does nothing.
func (*rawWriter) init() {}

// writeNow writes nothing.
func (*rawWriter) writeNow(syscall.RawConn, [][]byte) (int, error) { return 0, nil }

// unacked cannot tell on this system: a wait then counts as progress only
// when bytes were written.
func unacked(syscall.RawConn) (int, bool) { return 0, false }
