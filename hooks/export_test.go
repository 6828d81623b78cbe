package hooks

import "github.com/tidings-io/tidings/broker"

// Decode is decode, for the fuzz target of package hooks_test.
func Decode(kind Kind, raw []byte) (Answer, *broker.Error, error) { return decode(kind, raw) }
