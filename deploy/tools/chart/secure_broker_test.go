package chart

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// TestSecureConfigStartsBroker runs the broker with the environment and the
// files ci/secure-values.yaml gives it, Redis aside (it needs a Redis, so
// the Redis values are cleared): the Secrets' contents are made up, the
// mounted files written where the volumes would put them. The broker must
// serve HTTPS with the mounted pair, refuse a WebSocket upgrade without a
// token and accept one signed with the HMAC key of the Secret, with the
// audience and issuer of the values, accept a publish with a key of the
// comma-separated list and refuse one outside the scope of the JSON file's
// key; and stop with 0 on SIGTERM.
func TestSecureConfigStartsBroker(t *testing.T) {
	bin := brokerBinary(t)
	r := render(t, []string{"ci/secure-values.yaml"}, "--set", "replicaCount=1", "--set", "redis.url=",
		"--set", "redis.username=", "--set", "redis.password.existingSecret=", "--set", "redis.tls.enabled=false",
		"--set", "redis.tls.serverName=", "--set", "redis.tls.existingSecret=", "--set", "redis.tls.certKey=",
		"--set", "redis.tls.keyKey=", "--set", "otel.tracesExporter=none")
	spec := r.Deployments[0].Spec.Template.Spec
	ctr := container(t, spec, "broker")

	hmacKey := "an-hmac-key-of-more-than-32-bytes-for-tests"
	cert, key := selfSigned(t)
	secrets := map[string]string{
		"tidings-jwt/hmac-key":              hmacKey,
		"tidings-api-keys/api-keys":         "backend:publisher-secret-1",
		"tidings-api-keys/scoped-keys.json": `{"keys": [{"name": "billing", "secret": "billing-secret-1", "topics": ["billing.>"]}]}`,
		"tidings-serving-tls/tls.crt":       cert,
		"tidings-serving-tls/tls.key":       key,
	}

	// The environment: the ConfigMap, then env, secretKeyRefs read from
	// the made-up Secrets.
	env := plainEnv(t, r, ctr)
	for _, e := range ctr.Env {
		if e.ValueFrom == nil {
			continue
		}
		ref := e.ValueFrom.SecretKeyRef
		v, ok := secrets[ref.Name+"/"+ref.Key]
		if !ok {
			t.Fatalf("%s: no test content for Secret %s key %s", e.Name, ref.Name, ref.Key)
		}
		env[e.Name] = v
	}
	// The files: each Secret volume's items under a directory standing for
	// its mount path, and the variables that name them pointed there.
	root := t.TempDir()
	for _, m := range ctr.VolumeMounts {
		var vol *corev1.Volume
		for i := range spec.Volumes {
			if spec.Volumes[i].Name == m.Name {
				vol = &spec.Volumes[i]
			}
		}
		if vol == nil || vol.Secret == nil {
			continue // the values' extra ConfigMap, which the broker does not read
		}
		dir := filepath.Join(root, m.MountPath)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, it := range vol.Secret.Items {
			content, ok := secrets[vol.Secret.SecretName+"/"+it.Key]
			if !ok {
				t.Fatalf("volume %s: no test content for Secret %s key %s", m.Name, vol.Secret.SecretName, it.Key)
			}
			if err := os.WriteFile(filepath.Join(dir, it.Path), []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		for name, v := range env {
			if strings.HasPrefix(v, m.MountPath+"/") {
				env[name] = filepath.Join(root, v)
			}
		}
	}
	for _, name := range fileEnv {
		if v, ok := env[name]; ok && !strings.HasPrefix(v, root) {
			t.Fatalf("%s = %q is no mounted file", name, v)
		}
	}

	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, // the made-up certificate is self-signed
	}}
	b := startBroker(t, bin, env, client, "https")
	defer b.stop(t)
	base := "https://" + b.addr

	upgrade := func(token string) int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, base+"/v1/ws", nil)
		if token != "" {
			req.URL.RawQuery = "token=" + token
		}
		req.Header.Set("Connection", "Upgrade")
		req.Header.Set("Upgrade", "websocket")
		req.Header.Set("Sec-WebSocket-Version", "13")
		req.Header.Set("Sec-WebSocket-Key", base64.StdEncoding.EncodeToString([]byte("0123456789abcdef")))
		req.Header.Set("Sec-WebSocket-Protocol", "pubsub.v1")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("upgrade: %v\n%s", err, b.output.String())
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	claims := map[string]any{"sub": "u1", "exp": time.Now().Add(time.Hour).Unix(), "subscribe": []string{">"},
		"aud": env["TIDINGS_JWT_AUDIENCE"], "iss": env["TIDINGS_JWT_ISSUER"]}
	if got := upgrade(""); got != http.StatusUnauthorized {
		t.Errorf("upgrade without a token: %d, want 401", got)
	}
	if got := upgrade(hs256(t, hmacKey, claims)); got != http.StatusSwitchingProtocols {
		t.Errorf("upgrade with a token of the Secret's key: %d, want 101\n%s", got, b.output.String())
	}
	claims["aud"] = "someone-else"
	if got := upgrade(hs256(t, hmacKey, claims)); got != http.StatusUnauthorized {
		t.Errorf("upgrade with a token for another audience: %d, want 401", got)
	}

	publish := func(key, topic string) int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, base+"/v1/publish",
			strings.NewReader(`{"topic":"`+topic+`","data":{"n":1}}`))
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("publish: %v", err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, tc := range []struct {
		key, topic string
		want       int
	}{
		{"publisher-secret-1", "prices.eur", http.StatusOK}, // TIDINGS_API_KEYS, from the Secret
		{"billing-secret-1", "billing.invoices", http.StatusOK},
		{"billing-secret-1", "prices.eur", http.StatusForbidden}, // out of the file key's scope
		{"no-such-key-at-all", "prices.eur", http.StatusUnauthorized},
	} {
		if got := publish(tc.key, tc.topic); got != tc.want {
			t.Errorf("publish to %s with key %s: %d, want %d", tc.topic, tc.key, got, tc.want)
		}
	}
}

// hs256 signs claims as an HS256 JSON Web Token.
func hs256(t *testing.T, key string, claims map[string]any) string {
	t.Helper()
	enc := func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return base64.RawURLEncoding.EncodeToString(b)
	}
	signing := enc(map[string]string{"alg": "HS256", "typ": "JWT"}) + "." + enc(claims)
	mac := hmac.New(sha256.New, []byte(key))
	mac.Write([]byte(signing))
	return signing + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// selfSigned returns a PEM certificate for 127.0.0.1 and its PEM key.
func selfSigned(t *testing.T) (cert, key string) {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "tidings.example.com"},
		DNSNames:     []string{"tidings.example.com"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))
}
