package auth_test

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/tidings-io/tidings/auth"
)

func TestParseAPIKeys(t *testing.T) {
	t.Parallel()
	keys, err := auth.ParseAPIKeys([]string{"billing:0123456789", "plain-secret-1", "ops:with:colon"})
	if err != nil {
		t.Fatal(err)
	}
	want := []auth.APIKey{
		{Name: "billing", Secret: "0123456789"},
		{Name: "key-2", Secret: "plain-secret-1"},
		{Name: "ops", Secret: "with:colon"},
	}
	if !reflect.DeepEqual(keys, want) {
		t.Fatalf("keys %+v, want %+v", keys, want)
	}
	for _, k := range keys {
		if !k.AllowPublish("any.topic") || k.AllowSubscribe("any.topic") {
			t.Errorf("key %s: an unscoped key may publish anywhere and subscribe nowhere", k.Name)
		}
	}
	for _, tc := range []struct {
		entries []string
		want    string
	}{
		{[]string{"short"}, "at least 8"},
		{[]string{"a:short"}, "at least 8"},
		{[]string{"bad name:0123456789"}, "key name"},
		{[]string{":0123456789"}, "key name"},
		{[]string{"a:0123456789", "a:9876543210"}, "twice"},
		{[]string{"a:0123456789", "b:0123456789"}, "same secret"},
	} {
		if _, err := auth.ParseAPIKeys(tc.entries); !errors.Is(err, auth.ErrAPIKeys) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseAPIKeys(%q): %v, want ErrAPIKeys mentioning %q", tc.entries, err, tc.want)
		}
	}
}

func TestParseAPIKeysFile(t *testing.T) {
	t.Parallel()
	keys, err := auth.ParseAPIKeysFile([]byte(`{"keys": [
		{"name": "billing", "secret": "billing-secret-1", "topics": ["billing.>", "audit.billing"], "rate": 50},
		{"name": "ops", "secret": "ops-secret-0001"}
	]}`))
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 || keys[0].Rate != 50 || keys[1].Topics != nil {
		t.Fatalf("keys %+v", keys)
	}
	b := keys[0]
	for topic, want := range map[string]bool{"billing.x": true, "billing.x.y": true, "audit.billing": true, "audit.other": false, "billing": false, "news.x": false} {
		if got := b.AllowPublish(topic); got != want {
			t.Errorf("billing key: AllowPublish(%q) = %v, want %v", topic, got, want)
		}
	}
	if !keys[1].AllowPublish("anything.at.all") {
		t.Error("a key without topics may not publish everywhere")
	}
	for _, tc := range []struct {
		file, want string
	}{
		{`{"keys":[{"name":"a","secret":"0123456789","topic":["a.>"]}]}`, "unknown field"},
		{`{"keys":[{"name":"a","secret":"0123456789","topics":[]}]}`, "topics is empty"},
		{`{"keys":[{"name":"a","secret":"0123456789","topics":["a..b"]}]}`, "topic pattern"},
		{`{"keys":[{"name":"a","secret":"0123456789","rate":-1}]}`, "negative"},
		{`{"keys":[{"name":"a","secret":"short"}]}`, "at least 8"},
		{`keys: []`, "not a JSON keys file"},
		{`{"keys":[]} {}`, "after the JSON"},
	} {
		if _, err := auth.ParseAPIKeysFile([]byte(tc.file)); !errors.Is(err, auth.ErrAPIKeys) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseAPIKeysFile(%s): %v, want ErrAPIKeys mentioning %q", tc.file, err, tc.want)
		}
	}
}
