package auth

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/tidings-io/tidings/broker"
)

// MinAPIKeyLen is the shortest API key secret accepted, in characters.
const MinAPIKeyLen = 8

// ErrAPIKeys reports a list or file of API keys that cannot be used.
var ErrAPIKeys = errors.New("auth: bad API keys")

// APIKey is one HTTP publisher's key.
type APIKey struct {
	// Name identifies the key in logs and metrics; never the secret.
	Name string `json:"name"`
	// Secret is what the publisher sends as `Authorization: Bearer`.
	Secret string `json:"secret"`
	// Topics are the patterns the key may publish to; nil allows every
	// topic.
	Topics []string `json:"topics,omitempty"`
	// Rate is the key's publish requests per second; 0 means the API's
	// default.
	Rate float64 `json:"rate,omitempty"`
	// Admin lets the key call the server API (GET /v1/history, …); only
	// a keys file can set it.
	Admin bool `json:"admin,omitempty"`
}

// AllowPublish reports whether the key may publish to topic.
func (k APIKey) AllowPublish(topic string) bool {
	return k.Topics == nil || MatchAny(k.Topics, topic)
}

// AllowSubscribe is false: API keys only publish. It makes APIKey a
// broker.Permissions.
func (k APIKey) AllowSubscribe(string) bool { return false }

var _ broker.Permissions = APIKey{}

// ParseAPIKeys reads the -api-keys list: each entry is `name:secret`, or
// a bare secret, which is named key-1, key-2… by its place in the list.
// Keys given this way may publish to every topic.
func ParseAPIKeys(entries []string) ([]APIKey, error) {
	keys := make([]APIKey, 0, len(entries))
	for i, e := range entries {
		k := APIKey{Name: fmt.Sprintf("key-%d", i+1), Secret: e}
		if name, secret, ok := strings.Cut(e, ":"); ok {
			k.Name, k.Secret = name, secret
		}
		keys = append(keys, k)
	}
	return keys, checkKeys(keys)
}

// ParseAPIKeysFile reads an API keys file, JSON of the form
//
//	{"keys": [{"name": "billing", "secret": "…", "topics": ["billing.>"], "rate": 50}]}
//
// where topics (patterns; omitted = every topic) and rate (publish
// requests per second; omitted = the default) are optional. Unknown fields
// are errors, so that a misspelt "topics" cannot widen a key's scope.
func ParseAPIKeysFile(data []byte) ([]APIKey, error) {
	var f struct {
		Keys []APIKey `json:"keys"`
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("%w: not a JSON keys file: %v", ErrAPIKeys, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: data after the JSON object", ErrAPIKeys)
	}
	for i := range f.Keys {
		if f.Keys[i].Topics != nil && len(f.Keys[i].Topics) == 0 {
			return nil, fmt.Errorf("%w: key %q: topics is empty; omit it to allow every topic", ErrAPIKeys, f.Keys[i].Name)
		}
	}
	return f.Keys, checkKeys(f.Keys)
}

// CheckAPIKeys validates keys gathered from several sources: names and
// secrets must be unique across all of them.
func CheckAPIKeys(keys []APIKey) error { return checkKeys(keys) }

func checkKeys(keys []APIKey) error {
	names := map[string]bool{}
	secrets := map[string]string{}
	for _, k := range keys {
		if !validKeyName(k.Name) {
			return fmt.Errorf("%w: key name %q: want 1 to 64 of A-Z a-z 0-9 _ . -", ErrAPIKeys, k.Name)
		}
		if names[k.Name] {
			return fmt.Errorf("%w: key name %q is used twice", ErrAPIKeys, k.Name)
		}
		names[k.Name] = true
		if len(k.Secret) < MinAPIKeyLen {
			return fmt.Errorf("%w: key %q: every key must be at least %d characters", ErrAPIKeys, k.Name, MinAPIKeyLen)
		}
		if other, dup := secrets[k.Secret]; dup {
			return fmt.Errorf("%w: keys %q and %q have the same secret", ErrAPIKeys, other, k.Name)
		}
		secrets[k.Secret] = k.Name
		for _, p := range k.Topics {
			if _, err := broker.ValidatePattern(p); err != nil {
				return fmt.Errorf("%w: key %q: topic pattern %q: %w", ErrAPIKeys, k.Name, p, err)
			}
		}
		if k.Rate < 0 {
			return fmt.Errorf("%w: key %q: rate must not be negative", ErrAPIKeys, k.Name)
		}
	}
	return nil
}

// keyNameChars are the bytes a key's name may hold.
const keyNameChars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-"

// validKeyName reports whether s is 1 to 64 of keyNameChars.
func validKeyName(s string) bool {
	return len(s) > 0 && len(s) <= 64 && strings.Trim(s, keyNameChars) == ""
}
