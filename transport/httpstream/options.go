package httpstream

import (
	"log/slog"
	"time"

	"github.com/tidings-io/tidings/internal/defaults"
)

// Options are a server's, shared by its streams. Heartbeat and
// WriteTimeout have no default: a transport sets them from its Config
// (see Defaults).
type Options struct {
	// Heartbeat is the interval between Pings; positive.
	Heartbeat time.Duration
	// WriteTimeout bounds each write (and flush); positive.
	WriteTimeout time.Duration
	// SlowCloseTimeout bounds the write of a slow consumer's close.
	// Default (0): WriteTimeout.
	SlowCloseTimeout time.Duration
	// Ping is the heartbeat, written as it is (SSE a comment line, HTTP
	// streaming a ping frame).
	Ping []byte
	// Telemetry counts the streams opened and closed; nil: none.
	Telemetry *Telemetry
	// CloseSent, when set, is told the code of every close written.
	CloseSent func(code uint16)
}

// MaxBurst is the size past which a stream writes what it has encoded of
// its outbox before it encodes more: a backlog does not grow one buffer
// per stream to its size.
const MaxBurst = 64 << 10

// maxIdleBuffer is the largest write buffer a stream keeps between
// writes; a larger one is dropped so idle streams stay small. A burst
// ends with the frame that reaches MaxBurst, so it runs over by up to a
// frame: twice MaxBurst keeps the buffer of a stream working through a
// backlog of frames up to 64 KiB.
const maxIdleBuffer = 2 * MaxBurst

// The defaults of the settings every streamed transport's Config has.
const (
	DefaultNodeID       = "tidings"
	DefaultHeartbeat    = 25 * time.Second
	DefaultWriteTimeout = 10 * time.Second
)

// Defaults sets the settings every streamed transport's Config has to
// their defaults where they are zero (a negative Heartbeat or
// WriteTimeout too): the node's ID, DefaultNodeID; the heartbeat's
// interval, DefaultHeartbeat; the write timeout, DefaultWriteTimeout; the
// logger, one that discards.
func Defaults(nodeID *string, heartbeat, writeTimeout *time.Duration, logger **slog.Logger) {
	defaults.Zero(nodeID, DefaultNodeID)
	defaults.Positive(heartbeat, DefaultHeartbeat)
	defaults.Positive(writeTimeout, DefaultWriteTimeout)
	if *logger == nil {
		*logger = slog.New(slog.DiscardHandler)
	}
}
