package control_test

import (
	"testing"
	"time"

	"github.com/tidings-io/tidings/control"
)

// A revocation's key names one user or one token id, and reads back as
// the same revocation; a key Key does not make is refused.
func TestRevocationKeyRoundTrip(t *testing.T) {
	until := time.Unix(1_700_000_000, 0)
	for _, r := range []control.Revocation{{User: "alice", Until: until}, {TokenID: "j:1", Until: until}, {User: "user:x", Until: until}} {
		got, ok := control.RevocationOf(r.Key(), until)
		if !ok || got != r {
			t.Errorf("%+v: key %q reads back as %+v %v", r, r.Key(), got, ok)
		}
	}
	for _, r := range []control.Revocation{{}, {User: "a", TokenID: "b"}} {
		if k := r.Key(); k != "" {
			t.Errorf("%+v has key %q, want none", r, k)
		}
	}
	for _, k := range []string{"", "user:", "jti:", "alice", "session:s"} {
		if r, ok := control.RevocationOf(k, until); ok {
			t.Errorf("key %q read as %+v", k, r)
		}
	}
}
