package httpstream

import (
	"log/slog"
	"time"

	"github.com/tidings-io/tidings/internal/defaults"
)

// Options are a server's, shared by its streams. Heartbeat and
// WriteTimeout have no default: a transport sets them from its Settings
// (see WithDefaults).
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

// Settings are those every streamed transport's Config has (it embeds
// them). The zero value of each field means its default (WithDefaults).
type Settings struct {
	// NodeID is reported in every welcome. Default "tidings".
	NodeID string
	// Heartbeat is the interval between a stream's pings (Options.Ping:
	// an SSE comment line, an HTTP streaming ping frame). Default 25s.
	Heartbeat time.Duration
	// WriteTimeout bounds each write to a client that reads nothing; a
	// write that times out ends the stream. Default 10s.
	WriteTimeout time.Duration
	// Logger receives the server's events. Default: discard.
	Logger *slog.Logger
}

// The defaults of Settings.
const (
	DefaultNodeID       = "tidings"
	DefaultHeartbeat    = 25 * time.Second
	DefaultWriteTimeout = 10 * time.Second
)

// settingsDefaults is the default of each Settings field that has one.
var settingsDefaults = Settings{
	NodeID:       DefaultNodeID,
	Heartbeat:    DefaultHeartbeat,
	WriteTimeout: DefaultWriteTimeout,
	Logger:       defaults.Discard(),
}

// WithDefaults returns s with its defaults where its fields are zero (a
// negative Heartbeat or WriteTimeout too).
func (s Settings) WithDefaults() Settings { return defaults.Fill(s, settingsDefaults) }
