package hooks_test

import (
	"encoding/json"
	"errors"
	"slices"
	"testing"
	"unicode/utf8"

	"github.com/tidings-io/tidings/auth"
	"github.com/tidings-io/tidings/broker"
	"github.com/tidings-io/tidings/hooks"
	"github.com/tidings-io/tidings/protocol"
)

// FuzzAnswer: whatever a backend answers, decoding it does not panic,
// and what it lets through keeps the package's promises: a refusal has a
// client code and a bounded message; an allow's fields are those of its
// hook, each checked.
func FuzzAnswer(f *testing.F) {
	for _, s := range []string{
		`{"allow": true}`,
		`{"allow": false, "code": "forbidden", "message": "no"}`,
		`{"allow": false, "code": "internal", "message": "é"}`,
		`{"allow": true, "user": "u", "info": {"a": 1}, "channels": ["a", "a", "b.c"], "expires": "2031-01-02T03:04:05Z"}`,
		`{"allow": true, "data": {"x": [1, 2]}}`,
		`{"allow": true, "data": null, "info": null}`,
		`{"allow": true, "channels": ["a.*"]}`,
		`{"allow": "yes"}`,
		`[]`, `null`, ``,
	} {
		for k := hooks.Connect; k <= hooks.Refresh; k++ {
			f.Add(uint8(k), []byte(s))
		}
	}
	codes := []string{protocol.CodeBadRequest, protocol.CodeUnauthorized, protocol.CodeForbidden, protocol.CodeNotFound, protocol.CodeRateLimited, protocol.CodeTooLarge}
	f.Fuzz(func(t *testing.T, k uint8, raw []byte) {
		kind := hooks.Kind(k%4 + 1)
		a, deny, err := hooks.Decode(kind, raw)
		switch {
		case err != nil:
			if deny != nil {
				t.Fatalf("both a refusal and an error")
			}
		case deny != nil:
			if !slices.Contains(codes, deny.Code) || len(deny.Message) > hooks.MaxMessageBytes || deny.Message == "" ||
				!utf8.ValidString(deny.Message) || !errors.Is(deny, hooks.ErrDenied) {
				t.Fatalf("refusal %q %q", deny.Code, deny.Message)
			}
		default:
			if kind != hooks.Connect && (a.User != "" || a.Channels != nil) {
				t.Fatalf("%v answer with connect fields: %+v", kind, a)
			}
			if kind != hooks.Publish && a.Data != nil {
				t.Fatalf("%v answer with data", kind)
			}
			if a.Data != nil && !json.Valid(a.Data) {
				t.Fatalf("data %q is not valid JSON", a.Data)
			}
			if a.Info != nil && (a.Info[0] != '{' || len(a.Info) > auth.MaxInfoBytes || !json.Valid(a.Info)) {
				t.Fatalf("info %q", a.Info)
			}
			if len(a.Channels) > auth.MaxChannels || len(a.User) > hooks.MaxUserBytes {
				t.Fatalf("%d channels, user of %d bytes", len(a.Channels), len(a.User))
			}
			for i, c := range a.Channels {
				if broker.ValidateTopic(c) != nil || slices.Contains(a.Channels[:i], c) {
					t.Fatalf("channels %q", a.Channels)
				}
			}
		}
	})
}
