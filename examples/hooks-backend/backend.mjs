// A minimal application backend for Tidings' backend hooks (docs/HOOKS.md),
// with Node.js alone: it logs users in with a cookie, serves a page that
// opens a Tidings session, and answers the broker's connect and subscribe
// hooks.
//
//   node backend.mjs 3000 http://localhost:8080
//   go run ./cmd/broker -hook-connect http://localhost:3000/connect \
//     -hook-subscribe http://localhost:3000/subscribe -hook-forward-cookies sid \
//     -allowed-origins http://localhost:3000
//
// Then open http://localhost:3000/login?user=ann: ann may subscribe to
// news.* and to her own inbox, not to admin.*.
import http from 'node:http';
import crypto from 'node:crypto';

const port = Number(process.argv[2] || 3000);
const broker = process.argv[3] || 'http://localhost:8080';
const sessions = new Map(); // sid → user: your application's own sessions

const json = (res, status, body) => {
  res.writeHead(status, { 'Content-Type': 'application/json' });
  res.end(JSON.stringify(body));
};

const readJSON = (req) => new Promise((resolve) => {
  let body = '';
  req.on('data', (c) => { body += c; if (body.length > 65536) req.destroy(); });
  req.on('end', () => { try { resolve(JSON.parse(body)); } catch { resolve({}); } });
});

const page = (user) => `<!doctype html><meta charset="utf-8"><title>${user}</title>
<script type="module">
import { Tidings } from '/client.js';
const c = new Tidings('${broker.replace(/^http/, 'ws')}/v1/ws');
window.results = {};
const sub = (topic) => c.subscribe(topic, () => {}).ready.then(() => 'ok', (e) => e.code + ': ' + e.message);
c.addEventListener('open', async (e) => {
  window.user = e.user ?? c.user;
  for (const t of ['news.today', 'admin.audit', 'inbox.${user}']) window.results[t] = await sub(t);
  window.done = true;
});
</script><p>Logged in as ${user}.</p>`;

http.createServer(async (req, res) => {
  const url = new URL(req.url, 'http://localhost');
  if (url.pathname === '/login') {
    const user = url.searchParams.get('user') || '';
    if (!/^[a-z]{1,32}$/.test(user)) return json(res, 400, { error: 'user: a-z only' });
    const sid = crypto.randomBytes(16).toString('hex');
    sessions.set(sid, user);
    res.writeHead(200, { 'Set-Cookie': `sid=${sid}; Path=/; HttpOnly; SameSite=Lax`, 'Content-Type': 'text/html' });
    return res.end(page(user));
  }
  if (url.pathname === '/client.js') {
    // The broker's browser client, served from this origin.
    const r = await fetch(`${broker}/v1/client.js`);
    res.writeHead(r.status, { 'Content-Type': 'text/javascript' });
    return res.end(await r.text());
  }
  if (req.method !== 'POST') return json(res, 404, { error: 'not found' });
  const hook = await readJSON(req);
  if (url.pathname === '/connect') {
    const user = sessions.get(hook.cookies?.sid);
    if (!user) return json(res, 200, { allow: false, code: 'unauthorized', message: 'log in first' });
    return json(res, 200, { allow: true, user, info: { name: user } });
  }
  if (url.pathname === '/subscribe') {
    const t = hook.topic || '';
    const mine = t === `inbox.${hook.user}`;
    if (t.startsWith('news.') || mine) return json(res, 200, { allow: true });
    return json(res, 200, { allow: false, code: 'forbidden', message: `${hook.user} may not read ${t}` });
  }
  return json(res, 404, { error: 'not found' });
}).listen(port, '127.0.0.1', () => console.log(`listening on ${port}`));
