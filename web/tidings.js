// Tidings browser client: one ES module, no dependencies, no build step.
// It speaks the pubsub.v1 wire protocol (docs/PROTOCOL.md): it reconnects
// with exponential backoff and full jitter, resumes exact topics from the
// last offset it delivered, and delivers each message once, in offset order.
// With getToken and a JWT that has `exp`, it renews the token on the open
// session (`refresh`) before the token expires. Where WebSocket is blocked
// it falls back to HTTP streaming (the same session over a streamed GET
// and POSTs), then to Server-Sent Events (receive-only).

/** Close code the client sends when reconnect() drops the connection. */
export const CLOSE_RECONNECT = 4000;
/** Close code of a connection with no frame for 2 × the server's heartbeat. */
export const CLOSE_HEARTBEAT = 4001;
/** Close code of a connection that got no welcome within connectTimeout. */
export const CLOSE_CONNECT_TIMEOUT = 4002;

const IDLE = 0, PENDING = 1, ACTIVE = 2;

/** An error answered by the broker, or a failure of the client. */
export class TidingsError extends Error {
  constructor(code, message, status) {
    super(message);
    this.name = 'TidingsError';
    this.code = code;
    if (status) this.status = status;
  }
}

/**
 * Exponential backoff with full jitter: attempt n waits a uniformly random
 * time in [0, min(cap, base·2ⁿ)). A connection that stayed up for `stable`
 * ms starts the schedule again. `random` and `now` are injectable for tests.
 */
export class Backoff {
  constructor({ base = 500, cap = 30000, stable = 60000, random = Math.random, now = Date.now } = {}) {
    Object.assign(this, { base, cap, stable, random, now, attempt: 0, upAt: 0 });
  }
  /** The delay before the next attempt, in ms. */
  next() {
    return this.random() * Math.min(this.cap, this.base * 2 ** this.attempt++);
  }
  /** A connection is up (its welcome arrived). */
  connected() {
    this.upAt = this.now();
  }
  /** The connection ended: after a stable one the schedule starts again. */
  disconnected() {
    if (this.upAt && this.now() - this.upAt >= this.stable) this.attempt = 0;
    this.upAt = 0;
  }
}

// body is a frame without its type and ref; pos is its position.
const body = ({ type, ref, ...rest }) => rest;
const pos = ({ offset, epoch }) => ({ offset, epoch });
const report = (e) => (globalThis.reportError || console.error)(e);
const call = (f, ...a) => {
  try {
    f && f(...a);
  } catch (e) {
    report(e);
  }
};

const dec = new TextDecoder();

// httpStream returns a WebSocket-like session over HTTP streaming: a GET
// whose body is WebSocket frames, and POSTs of the commands, one at a
// time, in order.
const httpStream = (url) => {
  const ws = {},
    q = [],
    a = new AbortController(),
    close = (ws.close = () => a.abort()),
    // post sends the queued commands (up to about 60 KB) in one POST.
    post = async () => {
      let n = 0,
        len = 0;
      if (busy || !key || !q.length) return;
      while (n < q.length && (len += q[n].length) < 2e4) n++;
      busy = 1;
      try {
        const r = await fetch(key, { method: 'POST', body: '[' + q.splice(0, n || 1) + ']', signal: a.signal });
        if (!r.ok) throw 0; // 404: the session is gone
        busy = 0;
        post();
      } catch {
        close();
      }
    };
  let key, busy;
  ws.send = (d) => post(q.push(d));
  (async () => {
    let code = 1006,
      reason = '',
      b = new Uint8Array(0);
    try {
      const r = await fetch(url, { signal: a.signal });
      if (!r.ok) throw 0;
      key = url.split('?')[0] + '/' + r.headers.get('Tidings-Stream-Key');
      post();
      for (const rd = r.body.getReader(); ; ) {
        const { done, value } = await rd.read();
        if (done) break;
        for (b = new Uint8Array([...b, ...value]); ; ) {
          // A frame's header: 2 bytes, then 2 or 8 of length.
          let h = 2,
            n = b[1] & 127,
            i = 2;
          if (n > 125) for (h = n > 126 ? 10 : 4, n = 0; i < h; ) n = n * 256 + b[i++];
          if (!(b.length >= h + n)) break;
          const op = b[0] & 15,
            p = b.subarray(h, h + n);
          b = b.subarray(h + n);
          if (op == 1) ws.onmessage({ data: dec.decode(p) });
          if (op == 8) (code = (p[0] << 8) | p[1]), (reason = dec.decode(p.subarray(2)));
        }
      }
    } catch {}
    close();
    ws.onclose({ code, reason });
  })();
  return ws;
};

// sse returns a WebSocket-like, receive-only session over Server-Sent
// Events for client c. The stream names the client's topics: a new one
// reopens it, resuming from the last event id; other requests than
// subscribe, unsubscribe and ping are refused.
const sse = (url, c) => {
  const ws = {},
    topics = new Set(c._subs.keys()),
    answer = (f) => setTimeout(() => ws.onmessage({ data: JSON.stringify(f) })),
    close = (ws.close = () => es && es.close()),
    open = () => {
      close();
      const u = new URL(url);
      for (const t of topics) u.searchParams.append('topic', t);
      if (c._eid) u.searchParams.set('last_event_id', c._eid);
      const e = (es = new EventSource(u));
      for (const k of 'welcome subscribed unsubscribed message reset join leave error close'.split(' '))
        e.addEventListener(k, (v) => {
          if (k == 'close' || v.data == null) return e.close(), ws.onclose(v.data ? JSON.parse(v.data) : { code: 1006, reason: '' });
          if (v.lastEventId) c._eid = v.lastEventId;
          // The welcome of a reopened stream is no new session to the client.
          if (k != 'welcome' || !welcomed++) ws.onmessage(v);
        });
    };
  let es,
    welcomed = 0;
  ws.send = (d) => {
    const { op, topic, ref } = JSON.parse(d);
    if (op == 'subscribe') {
      if (!topics.has(topic)) topics.add(topic), open();
    } else answer(op == 'ping' ? { type: 'pong' } : op == 'unsubscribe' ? topics.delete(topic) && { type: 'unsubscribed', ref, topic } : { type: 'error', ref, code: 'unsupported', message: op + ': SSE is receive-only' });
  };
  open();
  return ws;
};

/** One wire subscription per pattern, shared by its handlers. */
class Wire {
  constructor(pattern) {
    this.pattern = pattern;
    this.wild = /(^|\.)[*>](\.|$)/.test(pattern);
    this.handlers = new Set();
    this.state = IDLE;
    this.pos = null; // exact topics: {offset, epoch} of the last delivery
    this.seen = false; // answered `subscribed` at least once
  }
  each(f) {
    for (const h of [...this.handlers]) f(h);
  }
  reset(info) {
    this.each((h) => call(h.opts.onReset, info));
  }
}

/** A handle on one subscribe() call. */
export class Subscription {
  constructor(client, wire, handler) {
    this._c = client;
    this._w = wire;
    this._h = handler;
    this.topic = wire.pattern;
    this.ready = handler.ready;
  }
  /** The last delivered position of an exact topic. */
  get position() {
    const p = this._w.pos;
    return p ? { ...p } : undefined;
  }
  /** Stops deliveries to this handler; the last one unsubscribes. */
  unsubscribe() {
    this._c._unsub(this._w, this._h);
  }
}

/**
 * A Tidings connection. Events: `open` (session, node, heartbeat), `close`
 * (code, reason), `error` (error), `state` (state, delay when reconnecting;
 * code and reason when closed by the server for good). Subscriptions the
 * broker makes (the token's channels, the server API) come as events too:
 * `subscribed` (topic), `unsubscribed` (topic, error), and `message`,
 * `reset`, `join` and `leave` with the fields the callbacks of subscribe()
 * get.
 */
export class Tidings extends EventTarget {
  constructor(url, options = {}) {
    super();
    const loc = globalThis.location;
    const u = new URL(url || '/v1/ws', loc && loc.href);
    u.protocol = u.protocol.replace(/^http/, 'ws');
    this.url = u.href;
    this.options = options;
    this._token = options.token;
    this._random = options.random || Math.random;
    this._backoff = new Backoff({ ...options.backoff, random: this._random });
    this._subs = new Map(); // pattern → Wire
    this._refs = new Map(); // ref → {ok(frame), fail(error)}
    this._queue = []; // publishes waiting for a connection
    this._ref = this._refusals = 0;
    this._run = 0; // bumped by every connection attempt and by close()
    this._needToken = !this._token && !!options.getToken;
    this._tr = options.transports || 'websocket http-stream sse'.split(' ');
    // The transport tried is _tr[(_good + _n) % _tr.length]: _good is the
    // last that worked, _n how many failed since.
    this._good = this._n = 0;
    this._state = 'connecting';
    this.session = this.node = this.user = undefined;
    queueMicrotask(() => this._open());
  }

  /** 'connecting', 'open', 'reconnecting' or 'closed'. */
  get state() {
    return this._state;
  }

  /** The token for the next connection; on an open connection, also sent with `refresh`. */
  setToken(token) {
    const had = this._token;
    this._token = token;
    if (this._up && had && token) this._renew(token);
  }

  /** The last delivered position of an exact topic. */
  position(topic) {
    const w = this._subs.get(topic);
    return w && w.pos ? { ...w.pos } : undefined;
  }

  /**
   * Subscribes to an exact topic or a wildcard pattern. options: onReset(info)
   * when the stream jumps (history lost, gap, not recovered on resume, or a
   * wildcard resubscribed after a reconnect), onError(error) when the broker
   * refuses, since: {offset, epoch} to start after a known position,
   * onJoin(info) and onLeave(info) when a session joins or leaves the topic.
   */
  subscribe(pattern, callback, options = {}) {
    let w = this._subs.get(pattern);
    const fresh = !w;
    if (fresh) {
      w = new Wire(pattern);
      if (options.since && !w.wild) w.pos = pos(options.since);
      this._subs.set(pattern, w);
    }
    const h = { cb: callback, opts: options };
    h.ready = new Promise((ok, fail) => Object.assign(h, { ok, fail }));
    h.ready.catch(() => {});
    w.handlers.add(h);
    if (w.state == ACTIVE) h.ok();
    if (fresh) this._sub(w);
    return new Subscription(this, w, h);
  }

  /** Publishes data (any JSON value) to an exact topic; resolves with {id, offset, epoch}. */
  publish(topic, data) {
    return this._request({ op: 'publish', topic, data }, body); // {id, offset, epoch}
  }

  /**
   * Reads the history of an exact topic the session may subscribe to: the
   * messages the broker still keeps, the last ones or those after
   * options.since ({offset, epoch}), at most options.limit (default 100),
   * newest first with options.reverse. Resolves with {topic, position,
   * recovered, messages}; recovered is false, with no messages, when since
   * is of another epoch or older than history.
   */
  history(topic, options = {}) {
    const cmd = { op: 'history', topic };
    if (options.since) cmd.since = pos(options.since);
    if (options.limit) cmd.limit = options.limit;
    if (options.reverse) cmd.reverse = true;
    return this._request(cmd, ({ type, ref, offset, epoch, ...f }) => ({ ...f, position: { offset, epoch } })); // {topic, recovered, messages}
  }

  /** The sessions present on a topic: resolves with {topic, clients: [{session, user, info, node}]}. */
  presence(topic) {
    return this._request({ op: 'presence', topic }, body);
  }

  /** How many sessions and users are present on a topic: resolves with {topic, sessions, users}. */
  presenceStats(topic) {
    return this._request({ op: 'presence_stats', topic }, body);
  }

  // _request sends cmd once the connection is up and resolves with
  // answer(frame) of its answer, or rejects with its error, or on timeout.
  _request(cmd, answer) {
    return new Promise((resolve, reject) => {
      if (this._state == 'closed') return reject(new TidingsError('closed', 'client is closed'));
      const job = {
        cmd,
        ok: (f) => {
          clearTimeout(timer);
          resolve(answer(f));
        },
        fail: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      };
      const timer = setTimeout(() => {
        this._refs.delete(job.cmd.ref);
        this._queue = this._queue.filter((j) => j != job);
        reject(new TidingsError('timeout', cmd.op + ' timed out'));
      }, this.options.publishTimeout || 10000);
      this._up ? this._exec(job) : this._queue.push(job);
    });
  }

  /** Drops the connection (close code 4000) and reconnects with backoff; while waiting, connects at once. */
  reconnect() {
    if (this._state == 'closed') return;
    if (this._ws) this._abort(CLOSE_RECONNECT, 'reconnect');
    else {
      clearTimeout(this._timer);
      this._open();
    }
  }

  /** Closes the connection with 1000 for good. */
  close() {
    if (this._state == 'closed') return;
    const ws = this._ws;
    this._stop(new TidingsError('closed', 'client is closed'));
    if (ws) {
      ws.close(1000);
      this._emit('close', { code: 1000, reason: '' });
    }
    this._setState('closed');
  }

  _emit(type, props) {
    this.dispatchEvent(Object.assign(new Event(type), props));
  }

  _setState(state, props) {
    this._state = state;
    this._emit('state', { state, transport: this.transport, ...props });
  }

  _stop(err) {
    this._state = 'closed';
    this._run++;
    this._drop();
    for (const j of this._queue) j.fail(err);
    this._queue = [];
  }

  // _drop forgets the current socket and everything tied to it.
  _drop() {
    clearTimeout(this._timer);
    clearTimeout(this._renewT);
    clearInterval(this._beat);
    this._ws = null;
    this._up = false;
    for (const w of this._subs.values()) w.state = IDLE;
    const refs = this._refs;
    this._refs = new Map();
    const lost = new TidingsError('unavailable', 'connection lost');
    for (const j of refs.values()) j.fail(lost);
  }

  async _open() {
    const run = ++this._run;
    if (this._state == 'closed') return;
    if (this._needToken && this.options.getToken) {
      try {
        this._token = await this.options.getToken();
        this._needToken = false;
      } catch (e) {
        if (run != this._run) return;
        this._emit('error', { error: new TidingsError('token', 'getToken failed: ' + (e && e.message)) });
        return this._retry(this._backoff.next());
      }
      if (run != this._run) return;
    }
    const o = this.options,
      t = (this.transport = this._tr[(this._good + this._n) % this._tr.length]),
      u = this._http(t == 'sse' ? t : t != 'websocket' && 'stream');
    if (this._state != 'connecting') this._setState('connecting');
    let ws;
    try {
      ws = t == 'sse' ? sse(u, this) : t == 'http-stream' ? httpStream(u.href) : new WebSocket(u.href.replace('http', 'ws'), 'pubsub.v1');
    } catch (e) {
      this._emit('error', { error: new TidingsError('bad_request', e.message) });
      return this._lost(1006, '', false);
    }
    this._ws = ws;
    ws.onmessage = (e) => ws == this._ws && this._frame(e.data);
    ws.onclose = (e) => ws == this._ws && this._lost(e.code, e.reason, this._up);
    const abort = () => this._abort(CLOSE_CONNECT_TIMEOUT, 'connect timeout');
    this._timer = setTimeout(abort, o.connectTimeout || 10000);
    // A WebSocket open but silent (a proxy that holds its frames): with
    // another transport to try, that one after fallbackTimeout.
    ws.onopen = () => ws == this._ws && this._n + 1 < this._tr.length && (clearTimeout(this._timer), (this._timer = setTimeout(abort, o.fallbackTimeout || 5000)));
  }

  // _abort ends the current socket from this side and reconnects.
  _abort(code, reason) {
    const ws = this._ws;
    this._lost(code, reason, this._up);
    try {
      ws.close(code, reason);
    } catch {}
  }

  async _lost(code, reason, up) {
    const run = ++this._run;
    this._drop();
    this._emit('close', { code, reason });
    if (run != this._run) return; // closed by a listener
    const o = this.options;
    // 4500–4999: the server asks the client not to come back.
    if (code >= 4500 && code < 5000) return this._fatal(new TidingsError('disconnected', reason || 'disconnected'), { code, reason });
    if (up) this._backoff.disconnected();
    if (code == 1008 && /token/i.test(reason)) this._needToken = true;
    let status;
    if (!up && o.probe !== false) {
      this._setState('reconnecting');
      status = await this._probe();
      if (run != this._run) return;
      if (status == 401 || status == 403) {
        const err = new TidingsError(status == 401 ? 'unauthorized' : 'forbidden', 'connection refused with HTTP ' + status, status);
        if (++this._refusals >= (o.maxRefusals || 3)) return this._fatal(err);
        this._emit('error', { error: err });
        if (status == 401) this._needToken = true;
      }
    }
    // A transport that failed to open on a server that answers (the
    // upgrade blocked, or no frame in time): the next one, at once.
    if (!up && ++this._n < this._tr.length && !(status < 0 || status == 401 || status == 403)) return this._open();
    this._retry(code == 1001 ? this._random() * (o.goingAwayDelay || 2000) : this._backoff.next(), code);
  }

  // _fatal gives up for good.
  _fatal(error, props) {
    this._stop(error);
    this._emit('error', { error, fatal: true });
    this._setState('closed', props);
  }

  _retry(delay, code) {
    if (this._state == 'closed') return;
    // Each round of attempts starts with the transport that worked last.
    this._n = 0;
    this._setState('reconnecting', { delay, code });
    this._timer = setTimeout(() => this._open(), delay);
  }

  // _probe asks the endpoint over plain HTTP why the upgrade failed: the
  // status (0 when cross-origin), or -1 when the server cannot be reached.
  async _probe() {
    try {
      const r = await fetch(this._http(), { mode: 'no-cors', cache: 'no-store', credentials: 'omit' });
      return r.status;
    } catch {
      return -1;
    }
  }

  // _http returns the endpoint's http(s) URL with the token, at path in
  // place of the last path element "ws" when path is given.
  _http(path) {
    const u = new URL(this.url);
    u.protocol = u.protocol.replace('ws', 'http');
    if (path) u.pathname = u.pathname.replace(/ws$/, path);
    if (this._token) u.searchParams.set('token', this._token);
    return u;
  }

  _send(cmd) {
    this._ws.send(JSON.stringify(cmd));
  }

  _exec(job) {
    job.cmd.ref = String(++this._ref);
    this._refs.set(job.cmd.ref, job);
    this._send(job.cmd);
  }

  _frame(text) {
    this._rx = Date.now();
    let f;
    try {
      f = JSON.parse(text);
    } catch {
      return;
    }
    const w = this._subs.get(f.sub || f.topic);
    switch (f.type) {
      case 'welcome':
        return this._welcome(f);
      case 'message':
        return w && w.state == ACTIVE && this._deliver(w, f);
      case 'reset':
        if (w && w.state == ACTIVE) {
          if (!w.wild) w.pos = pos(f);
          w.reset(body(f));
        }
        return;
      case 'join':
      case 'leave':
        return w && w.each((h) => call(h.opts[f.type == 'join' ? 'onJoin' : 'onLeave'], body(f)));
      case 'subscribed':
        if (!f.ref) return this._server(w, f);
        break;
      case 'unsubscribed':
        // Without a ref: the broker ended the subscription (a refreshed
        // token no longer allows the topic, or the server API).
        if (!f.ref && w) {
          this._subs.delete(f.topic);
          this._failSub(w, new TidingsError('forbidden', 'the broker ended the subscription to ' + f.topic));
        }
    }
    const j = this._refs.get(f.ref);
    if (j) {
      this._refs.delete(f.ref);
      f.type == 'error' ? j.fail(new TidingsError(f.code, f.message)) : j.ok(f);
    } else if (f.type == 'error') this._emit('error', { error: new TidingsError(f.code, f.message) });
  }

  _welcome(f) {
    clearTimeout(this._timer);
    this._up = true;
    this._good += this._n; // _retry starts _n again
    this._refusals = 0;
    this._backoff.connected();
    this.session = f.session;
    this.node = f.node;
    this.user = f.user || '';
    const hb = f.heartbeat * 1000;
    if (hb > 0) {
      this._ping = 0;
      this._beat = setInterval(() => this._watch(hb), hb / 2);
    }
    this._setState('open');
    this._emit('open', { ...body(f), user: this.user });
    this._plan();
    for (const w of this._subs.values()) this._sub(w);
    const q = this._queue;
    this._queue = [];
    for (const j of q) this._exec(j);
  }

  // _plan schedules the renewal of a JWT with exp (when getToken is set) at
  // 80 % of its remaining lifetime, at least 5 s before exp, yet no sooner
  // than half of it nor than 1 s, less up to 10 % of jitter.
  _plan() {
    clearTimeout(this._renewT);
    let left;
    try {
      left = JSON.parse(atob(this._token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/'))).exp * 1000 - Date.now();
    } catch {}
    const d = Math.max(Math.min(left * 0.8, left - 5000), left / 2, 1000) * (1 - this._random() / 10);
    if (this.options.getToken && left > 0 && d < 2 ** 31) this._renewT = setTimeout(() => this._renew(), d);
  }

  // _renew sends token (else one from getToken) with `refresh`. When that
  // fails the session ends with 1008 at exp, and the client reconnects.
  async _renew(token) {
    const run = this._run;
    const fail = (error) => run == this._run && this._emit('error', { error });
    clearTimeout(this._renewT);
    if (!token) {
      try {
        token = await this.options.getToken();
      } catch (e) {
        return fail(new TidingsError('token', 'getToken failed: ' + (e && e.message)));
      }
    }
    if (run == this._run && this._up) {
      this._exec({
        cmd: { op: 'refresh', token },
        ok: () => {
          this._token = token;
          this._plan();
        },
        fail,
      });
    }
  }

  // _watch runs every heartbeat/2: it pings an idle connection and drops
  // one that answered nothing for 2 heartbeats with a ping outstanding
  // (timers of background tabs run late, so silence alone is not enough).
  _watch(hb) {
    const now = Date.now();
    if (this._ping > this._rx) {
      if (now - this._rx >= 2 * hb && now - this._ping >= hb / 2) this._abort(CLOSE_HEARTBEAT, 'heartbeat timeout');
    } else if (now - this._rx >= hb / 2) {
      this._ping = now;
      this._send({ op: 'ping' });
    }
  }

  _sub(w) {
    if (!this._up || w.state != IDLE) return;
    const cmd = { op: 'subscribe', topic: w.pattern };
    if (w.pos) cmd.since = w.pos;
    w.state = PENDING;
    this._exec({
      cmd,
      ok: (f) => this._subscribed(w, f),
      fail: (e) => {
        if (this._subs.get(w.pattern) != w || w.state == ACTIVE || e.code == 'unavailable' && !this._up) return;
        if (e.code == 'unavailable') {
          // The store is down: try again while the session lasts.
          w.state = IDLE;
          setTimeout(() => this._subs.get(w.pattern) == w && this._sub(w), this._random() * 5000);
          return;
        }
        this._subs.delete(w.pattern);
        this._failSub(w, e);
      },
    });
  }

  // _server takes a `subscribed` without ref: the broker subscribed the
  // session (the token's channels at connect, or the server API). A new
  // topic gets a handler that forwards to the client's events, and stays
  // until the broker ends it; it is resubscribed with `since` after a
  // reconnect like any other. A topic the client is subscribing to itself
  // goes on with the broker's subscription, and the broker's answer to the
  // client's own (`already subscribed`) is ignored.
  _server(w, f) {
    const t = f.topic;
    if (w) return w.state != ACTIVE && this._subscribed(w, f);
    const fwd = (type) => (e) => this._emit(type, e);
    this._subs.set(t, (w = new Wire(t)));
    w.handlers.add({
      cb: fwd('message'),
      opts: { onReset: fwd('reset'), onJoin: fwd('join'), onLeave: fwd('leave'), onError: (error) => this._emit('unsubscribed', { topic: t, error }) },
      ok() {},
      fail() {},
    });
    this._subscribed(w, f);
    this._emit('subscribed', { topic: t });
  }

  _subscribed(w, f) {
    if (this._subs.get(w.pattern) != w) return;
    w.state = ACTIVE;
    if (!w.wild && !f.recovered) {
      const had = w.pos;
      w.pos = pos(f);
      if (had && (had.offset != f.offset || had.epoch != f.epoch)) {
        w.reset({ topic: w.pattern, epoch: f.epoch, offset: f.offset, reason: 'not_recovered' });
      }
    } else if (w.wild && w.seen) w.reset({ topic: w.pattern, reason: 'resubscribed' });
    w.seen = true;
    w.each((h) => h.ok());
  }

  _failSub(w, e) {
    w.each((h) => {
      h.fail(e);
      h.opts.onError ? call(h.opts.onError, e) : this._emit('error', { error: e });
    });
  }

  _deliver(w, f) {
    if (!w.wild) {
      const p = w.pos;
      if (p && p.epoch == f.epoch && f.offset <= p.offset) return; // seen already
      w.pos = pos(f);
    }
    const m = body(f);
    w.each((h) => call(h.cb, m));
  }

  _unsub(w, h) {
    if (!w.handlers.delete(h) || w.handlers.size || this._subs.get(w.pattern) != w) return;
    this._subs.delete(w.pattern);
    if (w.state != IDLE && this._up) this._exec({ cmd: { op: 'unsubscribe', topic: w.pattern }, ok() {}, fail() {} });
  }
}

export default Tidings;
