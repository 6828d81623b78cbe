package ws

import (
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
	"testing"
)

// loopbackPairs opens n TCP connections over loopback and drains the far
// end of each with a goroutine, as a client per connection would. It
// returns the near ends' raw descriptors.
func loopbackPairs(tb testing.TB, n int) []syscall.RawConn {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	var (
		wg   sync.WaitGroup
		raws = make([]syscall.RawConn, n)
	)
	// Cleanups run last first: the readers are waited for after every
	// near end is closed.
	tb.Cleanup(wg.Wait)
	for i := range raws {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			tb.Fatal(err)
		}
		s, err := ln.Accept()
		if err != nil {
			tb.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _ = io.Copy(io.Discard, s)
		}()
		if raws[i], err = c.(*net.TCPConn).SyscallConn(); err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { _ = c.Close() })
	}
	return raws
}

// BenchmarkLoopbackWritev measures what the kernel charges the writer for
// one writev to a loopback socket whose reader waits in the Go poller, by
// frames per writev: the floor under the cost of a delivery on one machine.
// One op is one 150-byte frame.
func BenchmarkLoopbackWritev(b *testing.B) {
	const conns = 1000
	frame := make([]byte, 150)
	for _, perWrite := range []int{1, 4, 16} {
		b.Run(fmt.Sprintf("frames=%d", perWrite), func(b *testing.B) {
			raws := loopbackPairs(b, conns)
			var w rawWriter
			w.init()
			batch := make([][]byte, perWrite)
			for i := range batch {
				batch[i] = frame
			}
			b.SetBytes(int64(len(frame)))
			b.ResetTimer()
			for i := 0; i < b.N; i += perWrite {
				// A full socket takes part of the batch: the rest waits
				// for its reader, as a session's writer would.
				raw := raws[(i/perWrite)%conns]
				rest := batch
				for len(rest) > 0 {
					n, err := w.writeNow(raw, rest)
					if err != nil {
						b.Fatalf("writev: %v", err)
					}
					if n == bufsLen(rest) {
						break
					}
					// batch is reused: skip on a copy of its headers.
					rest = skipBytes(append([][]byte(nil), rest...), n)
					if len(rest) > 0 {
						waited := false
						_ = raw.Write(func(uintptr) bool { // wait until writable
							defer func() { waited = true }()
							return waited
						})
					}
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)*float64(perWrite), "ns/writev")
		})
	}
}

// TestWriteNowAllocatesNothing: a non-blocking writev, the delivery path's
// system call, allocates nothing once the session's rawWriter is set up,
// and writes every byte of a batch the socket has room for.
func TestWriteNowAllocatesNothing(t *testing.T) {
	raws := loopbackPairs(t, 1)
	var w rawWriter
	w.init()
	frame := make([]byte, 150)
	batch := [][]byte{frame, frame, frame}
	var (
		n   int
		err error
	)
	allocs := testing.AllocsPerRun(1000, func() { n, err = w.writeNow(raws[0], batch) })
	if err != nil || n != 3*len(frame) {
		t.Fatalf("writeNow wrote %d bytes (%v), want %d", n, err, 3*len(frame))
	}
	if allocs != 0 {
		t.Fatalf("writeNow allocates %.1f times per call, want 0", allocs)
	}
}
