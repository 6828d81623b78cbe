package main

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/tidings-io/tidings/internal/testcert"
	"github.com/tidings-io/tidings/internal/testkit"
	"github.com/tidings-io/tidings/internal/wstest"
)

// TestHalfOpenConnectionsAreReapedByTheHandshakeTimeout opens 2 000 TCP
// connections that never send a byte. Each costs the server a goroutine
// until the handshake timeout; then the server closes them all, and the
// process is back to the goroutines it had before. (Not parallel: it
// counts the process's goroutines. The timeout is long enough for all
// 2 000 to be open at once on a busy machine.)
func TestHalfOpenConnectionsAreReapedByTheHandshakeTimeout(t *testing.T) {
	const conns = 2000
	const timeout = 5 * time.Second
	n := startNode(t, nil, "-handshake-timeout", timeout.String(), "-demo=false")
	base := runtime.NumGoroutine()

	open := make([]net.Conn, 0, conns)
	t.Cleanup(func() {
		for _, c := range open {
			_ = c.Close()
		}
	})
	start := time.Now()
	for i := 0; i < conns; i++ {
		c, err := net.DialTimeout("tcp", n.addr, 5*time.Second)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		open = append(open, c)
	}
	if dialed := time.Since(start); dialed > timeout/2 {
		t.Logf("dialing took %v; the peak may miss the first connections", dialed)
	}
	// The server holds a goroutine for each while it waits for a request.
	testkit.Eventually(t, timeout, func() error {
		if g := runtime.NumGoroutine(); g < base+conns {
			return fmt.Errorf("%d goroutines, want at least %d: the server has not accepted every connection", g, base+conns)
		}
		return nil
	})
	peak := runtime.NumGoroutine()

	// Every connection is closed by the server, none before the timeout.
	var buf [1]byte
	for i, c := range open {
		_ = c.SetReadDeadline(time.Now().Add(timeout + 10*time.Second))
		k, err := c.Read(buf[:])
		if k != 0 || (!errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET)) {
			t.Fatalf("connection %d: read %d bytes, %v; want the server to close it", i, k, err)
		}
		if i == 0 {
			if since := time.Since(start); since < timeout {
				t.Fatalf("the first connection was closed after %v, before the %v timeout", since, timeout)
			}
		}
	}
	reaped := time.Since(start)
	testkit.Eventually(t, 10*time.Second, func() error {
		if g := runtime.NumGoroutine(); g > base+5 {
			return fmt.Errorf("%d goroutines, want at most %d: not back to the baseline", g, base+5)
		}
		return nil
	})
	t.Logf("%d half-open connections: %d goroutines before, %d at the peak, %d after; all closed %v after the first dial",
		conns, base, peak, runtime.NumGoroutine(), reaped.Round(time.Millisecond))

	// The node still serves.
	if status, err := getStatus(newHTTPClient(t), n.addr, "/healthz"); err != nil || status != 200 {
		t.Fatalf("/healthz after the reaping: %d %v", status, err)
	}
}

// TestSlowlorisIsCut: a client that sends its request head a little at a
// time is cut at the handshake timeout, whatever it keeps sending; one
// that sends its body slowly is cut at the read timeout.
func TestSlowlorisIsCut(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil, "-handshake-timeout", "1s", "-read-timeout", "2s", "-demo=false")
	for _, tc := range []struct {
		name    string
		head    string
		drip    string
		timeout time.Duration
	}{
		{"headers", "GET /v1/ws HTTP/1.1\r\nHost: x\r\n", "X-Slow: a\r\n", time.Second},
		{"body", "POST /v1/publish HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n", " ", 2 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := net.Dial("tcp", n.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			start := time.Now()
			if _, err := io.WriteString(c, tc.head); err != nil {
				t.Fatal(err)
			}
			br := bufio.NewReader(c)
			for {
				// Drip a little every 100ms; each read waits that long
				// for the server to end the connection.
				_ = c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
				_, err := br.ReadByte()
				if err == nil || !errors.Is(err, os.ErrDeadlineExceeded) {
					break // the server answered (an error status) or closed
				}
				if time.Since(start) > tc.timeout+5*time.Second {
					t.Fatalf("still open %v after the first byte", time.Since(start))
				}
				if _, err := io.WriteString(c, tc.drip); err != nil {
					break
				}
			}
			elapsed := time.Since(start)
			if elapsed < tc.timeout-100*time.Millisecond || elapsed > tc.timeout+3*time.Second {
				t.Fatalf("cut after %v, want about %v", elapsed, tc.timeout)
			}
		})
	}
}

func TestRequestHeaderLimit(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil, "-max-header-bytes", "4096", "-demo=false")
	req, err := http.NewRequest(http.MethodGet, "http://"+n.addr+"/healthz", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Big", strings.Repeat("x", 16<<10))
	resp, err := newHTTPClient(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("16 KiB of headers: %d, want 431", resp.StatusCode)
	}
	if status, err := getStatus(newHTTPClient(t), n.addr, "/healthz"); err != nil || status != 200 {
		t.Fatalf("a normal request: %d %v", status, err)
	}
}

// wsStatus dials /v1/ws?query and returns 101 or the refusal's status
// and JSON error code.
func wsStatus(t *testing.T, scheme, addr, query string, tlsCfg *tls.Config) (int, string) {
	t.Helper()
	u := scheme + "://" + addr + "/v1/ws"
	if query != "" {
		u += "?" + query
	}
	d := wstest.Dialer{TLSConfig: tlsCfg, NoSubprotocol: true, Timeout: 10 * time.Second}
	c, err := d.Open(context.Background(), u)
	var refused *wstest.RefusedError
	switch {
	case err == nil:
		defer c.Close()
		if _, err := c.Expect("welcome", time.Now().Add(10*time.Second)); err != nil {
			t.Fatalf("first frame: %v, want the welcome", err)
		}
		return http.StatusSwitchingProtocols, ""
	case errors.As(err, &refused):
		var e struct {
			Error struct{ Code string } `json:"error"`
		}
		_ = json.Unmarshal(refused.Body, &e)
		return refused.Status, e.Error.Code
	}
	t.Fatalf("dial %s: %v", u, err)
	return 0, ""
}

func TestJWTFlags(t *testing.T) {
	t.Parallel()
	hmacKey := "a-32-byte-or-longer-hmac-secret!"
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&ecKey.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pemFile := filepath.Join(t.TempDir(), "jwt.pem")
	if err := os.WriteFile(pemFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	raw, _ := ecKey.PublicKey.Bytes()
	b64 := base64.RawURLEncoding.EncodeToString
	jwks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]any{"keys": []map[string]any{{
			"kty": "EC", "crv": "P-256", "kid": "k1", "x": b64(raw[1:33]), "y": b64(raw[33:]),
		}}})
	}))
	t.Cleanup(jwks.Close)
	signed := func(method jwt.SigningMethod, key any, kid, aud string, exp time.Time) string {
		return testkit.SignToken(t, method, key, kid, jwt.MapClaims{"sub": "u1", "exp": exp.Unix(), "aud": aud, "subscribe": []string{">"}})
	}
	hour := time.Now().Add(time.Hour)
	for _, tc := range []struct {
		name  string
		args  []string
		good  string
		wrong []string
	}{
		{"hmac", []string{"-jwt-key", hmacKey, "-jwt-audience", "tidings"},
			signed(jwt.SigningMethodHS256, []byte(hmacKey), "", "tidings", hour),
			[]string{
				signed(jwt.SigningMethodHS256, []byte(hmacKey), "", "other", hour),
				signed(jwt.SigningMethodHS256, []byte(hmacKey), "", "tidings", time.Now().Add(-time.Minute)),
			}},
		{"public key file", []string{"-jwt-public-key-file", pemFile},
			signed(jwt.SigningMethodES256, ecKey, "", "", hour),
			[]string{signed(jwt.SigningMethodHS256, []byte(hmacKey), "", "", hour)}},
		{"jwks", []string{"-jwt-jwks-url", jwks.URL},
			signed(jwt.SigningMethodES256, ecKey, "k1", "", hour),
			[]string{signed(jwt.SigningMethodES256, ecKey, "k2", "", hour)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			n := startNode(t, nil, append(tc.args, "-demo=false")...)
			if status, code := wsStatus(t, "ws", n.addr, "", nil); status != 401 || code != "unauthorized" {
				t.Errorf("no token: %d %s, want 401 unauthorized", status, code)
			}
			if status, _ := wsStatus(t, "ws", n.addr, "token="+tc.good, nil); status != 101 {
				t.Errorf("good token: %d, want 101", status)
			}
			for i, bad := range tc.wrong {
				if status, code := wsStatus(t, "ws", n.addr, "token="+bad, nil); status != 401 || code != "unauthorized" {
					t.Errorf("bad token %d: %d %s, want 401 unauthorized", i, status, code)
				}
			}
		})
	}
}

func TestAPIKeysFileAndRate(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "keys.json")
	keys := `{"keys":[
		{"name":"billing","secret":"billing-secret-0001","topics":["billing.>"]},
		{"name":"slow","secret":"slow-secret-0000001","rate":0.01}
	]}`
	if err := os.WriteFile(file, []byte(keys), 0o600); err != nil {
		t.Fatal(err)
	}
	n := startNode(t, nil, "-api-keys-file", file, "-api-keys", "ops:ops-secret-00000001", "-demo=false")
	hc := newHTTPClient(t)
	post := func(key, topic string) *http.Response {
		req, _ := http.NewRequest(http.MethodPost, "http://"+n.addr+"/v1/publish", strings.NewReader(`{"topic":"`+topic+`","data":1}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	for _, tc := range []struct {
		key, topic string
		status     int
	}{
		{"billing-secret-0001", "billing.x", 200},
		{"billing-secret-0001", "news.x", 403},
		{"ops-secret-00000001", "news.x", 200},
		{"slow-secret-0000001", "a.b", 200},
		{"slow-secret-0000001", "a.b", 429},
		{"nobody-secret-00001", "a.b", 401},
	} {
		resp := post(tc.key, tc.topic)
		if resp.StatusCode != tc.status {
			t.Errorf("%s… to %s: %d, want %d", tc.key[:4], tc.topic, resp.StatusCode, tc.status)
		}
		if tc.status == 429 && resp.Header.Get("Retry-After") == "" {
			t.Error("429 without Retry-After")
		}
	}
}

// servedSerial returns the serial of the certificate the server at addr
// presents.
func servedSerial(t *testing.T, addr string) int64 {
	t.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
}

// wantSerial says how the certificate served at addr differs from the one
// with serial number want, or returns nil if it is that one.
func wantSerial(t *testing.T, addr string, want int64) error {
	t.Helper()
	if got := servedSerial(t, addr); got != want {
		return fmt.Errorf("serving the certificate with serial %d, want %d", got, want)
	}
	return nil
}

// TestTLSServesHTTPSAndWSSAndReloads: with -tls-cert and -tls-key the
// broker serves HTTPS and WSS; a certificate replaced on disk is served
// once the broker sees the change, and SIGHUP reloads at once.
func TestTLSServesHTTPSAndWSSAndReloads(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	certFile, keyFile, pool := testcert.Write(t, dir, 1)
	n := startNode(t, nil, "-tls-cert", certFile, "-tls-key", keyFile, "-demo=false")
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: 10 * time.Second}
	t.Cleanup(hc.CloseIdleConnections)
	resp, err := hc.Get("https://" + n.addr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.TLS == nil {
		t.Fatalf("https /healthz: %d, TLS %v", resp.StatusCode, resp.TLS != nil)
	}
	if status, _ := wsStatus(t, "wss", n.addr, "", &tls.Config{RootCAs: pool}); status != 101 {
		t.Fatalf("wss: %d, want 101", status)
	}
	// Plain HTTP on the TLS port is refused (net/http answers 400).
	plain := newHTTPClient(t)
	if resp, err := plain.Get("http://" + n.addr + "/healthz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("plain HTTP on the TLS port: %d, want 400", resp.StatusCode)
		}
	}

	testcert.Write(t, dir, 2)
	testkit.Eventually(t, 15*time.Second, func() error { return wantSerial(t, n.addr, 2) })

	testcert.Write(t, dir, 3)
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if _, err := n.log.waitRecord("SIGHUP received, reloading the TLS certificate", 10*time.Second, n.done); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 10*time.Second, func() error { return wantSerial(t, n.addr, 3) })
	if got := fmt.Sprint(servedSerial(t, n.addr)); got != "3" {
		t.Fatalf("serial %s", got)
	}
}
