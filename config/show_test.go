package config

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

const secretsFile = `# a node with secrets
redis: redis://app:hunter2-redis@redis.internal:6379/0
redis-password: pw-of-redis
redis-sentinel-password: pw-of-sentinel
jwt-key: 0123456789abcdef0123456789abcdef-jwt
api-keys: [backend:key-secret-1, bare-secret-2]
history-size: 500
namespaces:
  - pattern: "chat.>"
    presence: true
`

// TestCheck: the summary is the file's settings over the defaults, each
// with its source, the namespaces filled in, and no secret.
func TestCheck(t *testing.T) {
	t.Parallel()
	path := write(t, secretsFile)
	out, err := Check(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"hunter2-redis", "pw-of-redis", "pw-of-sentinel", "0123456789abcdef", "key-secret-1", "bare-secret-2"} {
		if strings.Contains(out, secret) {
			t.Errorf("Check shows the secret %q:\n%s", secret, out)
		}
	}
	for _, want := range []string{
		"Effective configuration of " + path,
		"history-size: 500 # line 7",
		"history-ttl: 5m0s # default",
		"redis: redis://app:xxxxx@redis.internal:6379/0 # line 2",
		"jwt-key: '" + Masked + "' # line 5",
		"api-keys: ['backend:" + Masked + "', '" + Masked + "'] # line 6",
		"- pattern: chat.>",
		"history_size: 500",
		"presence: true",
		"client_publish: anyone",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("Check lacks %q:\n%s", want, out)
		}
	}
	// What Check prints is itself a valid file, with the same namespaces.
	f, err := Parse("check.yaml", []byte(out))
	if err != nil {
		t.Fatalf("Check's output does not parse: %v\n%s", err, out)
	}
	orig, _ := Load(path)
	a, b := f.Namespaces(f.Defaults()), orig.Namespaces(orig.Defaults())
	for i := range a {
		a[i].Line, b[i].Line = 0, 0
	}
	if !reflect.DeepEqual(a, b) {
		t.Errorf("namespaces after a round trip:\n got %+v\nwant %+v", a, b)
	}
	if _, err := Check(write(t, "history-size: lots\n")); !errors.Is(err, ErrInvalid) {
		t.Errorf("Check of a bad file: %v, want ErrInvalid", err)
	}
}

// TestSnapshotJSON: GET /v1/info's config member: typed values, secrets
// masked, sources, namespaces.
func TestSnapshotJSON(t *testing.T) {
	t.Parallel()
	values := map[string]string{"redis": "redis://:pw@h:1/0", "api-keys": "k1:s1", "history-size": "7", "demo": "false",
		"history-ttl": "90s", "allowed-origins": "https://a.example,https://b.example", "jwt-key": "", "op-rate": "2.5"}
	sources := map[string]string{"history-size": "flag", "demo": "env TIDINGS_DEMO"}
	s := NewSnapshot("/etc/t.yaml", values, sources, nil)
	raw, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		File       string            `json:"file"`
		Settings   map[string]any    `json:"settings"`
		Sources    map[string]string `json:"sources"`
		Namespaces []any             `json:"namespaces"`
	}
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(raw), "pw@") || strings.Contains(string(raw), "s1") {
		t.Errorf("the snapshot shows a secret: %s", raw)
	}
	for k, want := range map[string]any{
		"history-size": 7.0, "demo": false, "history-ttl": "1m30s", "op-rate": 2.5, "jwt-key": "",
		"redis": "redis://:xxxxx@h:1/0", "addr": ":8080", "shards": 64.0,
	} {
		if got.Settings[k] != want {
			t.Errorf("settings[%s] = %#v, want %#v", k, got.Settings[k], want)
		}
	}
	if !reflect.DeepEqual(got.Settings["allowed-origins"], []any{"https://a.example", "https://b.example"}) {
		t.Errorf("allowed-origins %#v", got.Settings["allowed-origins"])
	}
	if !reflect.DeepEqual(got.Settings["api-keys"], []any{"k1:" + Masked}) {
		t.Errorf("api-keys %#v", got.Settings["api-keys"])
	}
	if len(got.Settings) != len(Options()) || got.File != "/etc/t.yaml" || got.Namespaces == nil || !reflect.DeepEqual(got.Sources, sources) {
		t.Errorf("snapshot %s", raw)
	}
}
