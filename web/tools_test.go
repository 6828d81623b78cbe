package web_test

// Checks that need Node.js tools from the npm registry: the TypeScript
// types (tsc --noEmit) and the minified size of the client (terser). The
// tools are installed once into the user cache directory. Without Node.js
// and npm these two checks are skipped, with a message; every other test
// runs.

import (
	"bytes"
	"compress/gzip"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// Pinned tool versions.
const (
	typescriptVersion = "5.9.3"
	terserVersion     = "5.51.4"
	// maxMinified is the budget of tidings.js minified, in bytes.
	maxMinified = 12 * 1024
)

var npmTools struct {
	once sync.Once
	dir  string
	err  error
	skip string
}

// tools returns the directory with node_modules/.bin/{tsc,terser},
// installing them when missing; it skips the test without Node.js or npm.
func tools(t *testing.T) string {
	t.Helper()
	npmTools.once.Do(func() {
		for _, bin := range []string{"node", "npm"} {
			if _, err := exec.LookPath(bin); err != nil {
				npmTools.skip = bin + " is not installed: skipping the checks that need Node.js tools (tsc, terser); install nodejs and npm to run them"
				return
			}
		}
		cache, err := os.UserCacheDir()
		if err != nil {
			cache = os.TempDir()
		}
		dir := filepath.Join(cache, "tidings-web-tools", "ts"+typescriptVersion+"-terser"+terserVersion)
		npmTools.dir = dir
		if fileExists(filepath.Join(dir, "node_modules", ".bin", "tsc")) && fileExists(filepath.Join(dir, "node_modules", ".bin", "terser")) {
			return
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			npmTools.err = err
			return
		}
		cmd := exec.Command("npm", "install", "--no-audit", "--no-fund", "--no-package-lock", "--prefix", dir,
			"typescript@"+typescriptVersion, "terser@"+terserVersion)
		if out, err := cmd.CombinedOutput(); err != nil {
			npmTools.err = &toolError{err, out}
		}
	})
	if npmTools.skip != "" {
		t.Skip(npmTools.skip)
	}
	if npmTools.err != nil {
		t.Fatalf("installing typescript and terser from the npm registry: %v", npmTools.err)
	}
	return npmTools.dir
}

type toolError struct {
	err error
	out []byte
}

func (e *toolError) Error() string { return e.err.Error() + "\n" + string(e.out) }

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// usageTS uses the client's API as an application would, through the
// package's exports; the @ts-expect-error lines check that the types are
// not loose.
const usageTS = `import Tidings, { Tidings as Named, TidingsError, Backoff, CLOSE_HEARTBEAT,
  type Message, type ResetInfo, type State, type Transport, type Published, type History } from "@tidings-io/client";

interface Price { bid: number }

const c = new Tidings("wss://broker.example/v1/ws", {
  token: "jwt",
  transports: ["websocket", "http-stream"],
  fallbackTimeout: 3000,
  getToken: async () => "fresh-jwt",
  backoff: { base: 250, cap: 10_000 },
  random: Math.random,
});
const same: Named = c;
const sub = c.subscribe<Price>("prices.>", (m: Message<Price>) => {
  const bid: number = m.data.bid;
  const where: string = m.sub ?? m.topic;
  const at: number = m.offset;
  console.log(bid, where, at, m.epoch, m.time, m.id);
}, {
  onReset: (r: ResetInfo) => console.log(r.reason, r.offset),
  onError: (e: TidingsError) => console.log(e.code),
  since: { offset: 3, epoch: "e1" },
});
await sub.ready;
const pos = sub.position;
if (pos) console.log(pos.offset + 1, pos.epoch);
sub.unsubscribe();

const res: Published = await c.publish("prices.eur.usd", { bid: 1.0842 });
console.log(res.id, res.offset, res.epoch);
const hist: History<{ bid: number }> = await c.history<{ bid: number }>("prices.eur.usd", { since: res, limit: 10, reverse: true });
if (hist.recovered) console.log(hist.position.offset, hist.messages[0].data.bid);
try {
  await c.publish("prices.*", 1);
} catch (e) {
  if (e instanceof TidingsError) console.log(e.code, e.message, e.status);
}

c.addEventListener("open", (e) => console.log(e.session, e.node, e.user, e.heartbeat));
c.addEventListener("close", (e) => console.log(e.code === CLOSE_HEARTBEAT, e.reason));
c.addEventListener("error", (e) => console.log(e.error.code, e.fatal));
c.addEventListener("state", (e) => {
  const s: State = e.state;
  const via: Transport | undefined = e.transport;
  console.log(s, e.delay, via, c.transport);
});
const st: State = c.state;
console.log(st, c.session, c.node, c.position("prices.eur.usd"), same.url);
c.setToken("next");
c.reconnect();
c.close();

const b = new Backoff({ base: 500, cap: 30_000, random: () => 0.5, now: Date.now });
const d: number = b.next();
b.connected();
b.disconnected();
console.log(d, b.attempt);

new Tidings(); // the page's own /v1/ws

// @ts-expect-error the topic is a string
c.publish(42, {});
// @ts-expect-error the callback takes a message
c.subscribe("a.b", (m: string) => m);
// @ts-expect-error no such state
const bad: State = "half-open";
// @ts-expect-error no such transport
new Tidings(undefined, { transports: ["long-polling"] });
// @ts-expect-error the event has no such field
c.addEventListener("close", (e) => e.wasDirty);
console.log(bad);
`

const tsconfig = `{
  "compilerOptions": {
    "strict": true,
    "noEmit": true,
    "target": "es2022",
    "module": "nodenext",
    "moduleResolution": "nodenext",
    "lib": ["es2022", "dom"],
    "types": [],
    "skipLibCheck": false
  },
  "files": ["usage.ts"]
}
`

// TestTypeScriptTypes compiles a usage file against tidings.d.ts, resolved
// through package.json's exports, with tsc --noEmit.
func TestTypeScriptTypes(t *testing.T) {
	t.Parallel()
	checkTypeScript(t, usageTS)
}

// checkTypeScript compiles usage against tidings.d.ts, resolved through
// package.json's exports, with tsc --noEmit, and fails t on an error.
func checkTypeScript(t *testing.T, usage string) {
	t.Helper()
	dir := tools(t)
	work := t.TempDir()
	pkg := filepath.Join(work, "node_modules", "@tidings-io", "client")
	if err := os.MkdirAll(pkg, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"package.json", "tidings.js", "tidings.d.ts"} {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(pkg, name), string(b))
	}
	writeFile(t, filepath.Join(work, "package.json"), `{"type": "module", "private": true}`)
	writeFile(t, filepath.Join(work, "tsconfig.json"), tsconfig)
	writeFile(t, filepath.Join(work, "usage.ts"), usage)
	cmd := exec.Command(filepath.Join(dir, "node_modules", ".bin", "tsc"), "-p", work)
	cmd.Dir = work
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("tsc --noEmit (typescript %s): %v\n%s", typescriptVersion, err, out)
	}
}

// TestMinifiedSize keeps tidings.js under 12 KB minified (terser, compress
// and mangle, as an ES module).
func TestMinifiedSize(t *testing.T) {
	t.Parallel()
	dir := tools(t)
	cmd := exec.Command(filepath.Join(dir, "node_modules", ".bin", "terser"), "tidings.js", "--module", "--compress", "--mangle")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	min, err := cmd.Output()
	if err != nil {
		t.Fatalf("terser: %v\n%s", err, stderr.String())
	}
	var gz bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&gz, gzip.BestCompression)
	_, _ = zw.Write(min)
	_ = zw.Close()
	raw, _ := os.ReadFile("tidings.js")
	t.Logf("tidings.js: %d bytes, %d minified (terser %s), %d minified and gzipped", len(raw), len(min), terserVersion, gz.Len())
	if len(min) >= maxMinified {
		t.Errorf("tidings.js is %d bytes minified, over the %d budget", len(min), maxMinified)
	}
}

func writeFile(t *testing.T, name, content string) {
	t.Helper()
	if err := os.WriteFile(name, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
