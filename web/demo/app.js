// The Tidings live demo: a price board and a chat feed fed by the broker's
// in-process demo publisher, through the client served at /v1/client.js.
import { Tidings } from '/v1/client.js';

const $ = (id) => document.getElementById(id);
const el = (tag, cls, text) => {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
};
const clock = (d) => d.toLocaleTimeString([], { hour12: false });
// RFC 3339 with nanoseconds → Date (Date.parse wants at most milliseconds).
const parseTime = (t) => new Date(String(t).replace(/(\.\d{3})\d+/, '$1'));

const client = new Tidings();
window.tidings = client; // for the console

// topic → {offset, epoch, gaps, row}
const topics = new Map();
let openedAt = 0; // when the current connection opened, after a drop
let dropped = false;
let replayed = null; // {count, entry}: messages published while away

// Connection log ---------------------------------------------------------

function log(text, kind) {
  const li = el('li', kind, '');
  li.append(el('time', '', clock(new Date())), document.createTextNode(text));
  const list = $('log');
  list.prepend(li);
  while (list.children.length > 40) list.lastChild.remove();
  return li;
}

client.addEventListener('state', (e) => {
  const pill = $('state');
  pill.dataset.state = e.state;
  pill.textContent = e.state;
  if (e.state === 'reconnecting' && e.delay !== undefined) {
    log(`reconnecting in ${(e.delay / 1000).toFixed(2)} s (backoff with jitter)`, 'warn');
  }
});

client.addEventListener('open', (e) => {
  $('node').textContent = `node ${e.node}`;
  log(`connected to node ${e.node}, session ${e.session.slice(0, 8)}, heartbeat ${e.heartbeat} s`, 'good');
  if (dropped) {
    openedAt = Date.now();
    const n = topics.size;
    log(`resuming ${n} topic${n === 1 ? '' : 's'} from their last offsets`);
    replayed = { count: 0, entry: log('replayed 0 messages published while away', 'good') };
  }
});

client.addEventListener('close', (e) => {
  dropped = true;
  replayed = null;
  log(`connection closed: ${e.code}${e.reason ? ' ' + e.reason : ''}`, 'bad');
});

client.addEventListener('error', (e) => log(`error: ${e.error.code}: ${e.error.message}`, 'bad'));

$('drop').addEventListener('click', () => {
  log('dropping the connection from the client side');
  client.reconnect();
});

// Subscriptions -----------------------------------------------------------
//
// The wildcard finds the topics; each topic found is then followed with an
// exact subscription from the offset the wildcard delivered, because only
// exact subscriptions resume from history after a reconnect.

client.subscribe('demo.>', (m) => {
  if (!topics.has(m.topic)) follow(m);
});

function follow(m) {
  const t = { offset: 0, epoch: m.epoch, gaps: 0, row: null };
  topics.set(m.topic, t);
  handle(m);
  client.subscribe(m.topic, handle, {
    since: { offset: m.offset, epoch: m.epoch },
    onReset: (r) => {
      log(`${m.topic}: stream reset (${r.reason}); the page would refetch its state here`, 'warn');
      if (r.offset !== undefined) Object.assign(t, { offset: r.offset, epoch: r.epoch });
      topicRow(m.topic, t);
    },
  });
}

function handle(m) {
  const t = topics.get(m.topic);
  if (t.offset && m.epoch === t.epoch && m.offset !== t.offset + 1) t.gaps++;
  t.offset = m.offset;
  t.epoch = m.epoch;
  if (replayed && parseTime(m.time) < openedAt) {
    replayed.count++;
    replayed.entry.lastChild.textContent = `replayed ${replayed.count} message${replayed.count === 1 ? '' : 's'} published while away`;
  }
  if (m.topic.startsWith('demo.prices.')) price(m);
  else if (m.topic === 'demo.chat') chat(m);
  topicRow(m.topic, t);
}

// Price board -------------------------------------------------------------

const prices = new Map(); // topic → {row, cells}

function price(m) {
  const d = m.data || {};
  let p = prices.get(m.topic);
  if (!p) {
    const row = el('tr');
    row.dataset.topic = m.topic;
    const cells = {
      pair: el('td', 'pair', d.pair || m.topic.slice('demo.prices.'.length)),
      price: el('td', 'num price'),
      change: el('td', 'num change'),
      offset: el('td', 'num offset'),
    };
    row.append(cells.pair, cells.price, cells.change, cells.offset);
    p = { row, cells, last: undefined };
    prices.set(m.topic, p);
    insertSorted($('prices').tBodies[0], row, cells.pair.textContent);
    $('prices-empty').hidden = true;
  }
  const dec = Number.isInteger(d.decimals) ? d.decimals : 2;
  const value = Number(d.price);
  p.cells.price.textContent = value.toFixed(dec);
  if (typeof d.open === 'number' && d.open) {
    const pct = ((value - d.open) / d.open) * 100;
    p.cells.change.textContent = `${pct >= 0 ? '+' : ''}${pct.toFixed(2)}%`;
    p.cells.change.dataset.dir = pct >= 0 ? 'up' : 'down';
  }
  p.cells.offset.textContent = m.offset;
  if (p.last !== undefined && value !== p.last) {
    const up = value > p.last;
    p.cells.price.dataset.dir = up ? 'up' : 'down';
    p.row.animate([{ backgroundColor: up ? 'rgba(22,163,74,.16)' : 'rgba(220,38,38,.14)' }, { backgroundColor: 'transparent' }], {
      duration: 900,
      easing: 'ease-out',
    });
  }
  p.last = value;
}

function insertSorted(tbody, row, key) {
  for (const r of tbody.rows) {
    if (r.cells[0].textContent.localeCompare(key) > 0) return tbody.insertBefore(row, r);
  }
  tbody.append(row);
}

// Chat feed ---------------------------------------------------------------

function hue(s) {
  let h = 0;
  for (const c of s) h = (h * 31 + c.codePointAt(0)) % 360;
  return h;
}

function chat(m) {
  const d = m.data || {};
  const user = String(d.user || 'someone');
  const li = el('li');
  const who = el('span', 'who', user);
  who.style.color = `hsl(${hue(user)} 55% 38%)`;
  li.append(
    el('time', '', clock(parseTime(m.time))),
    who,
    el('span', 'text', String(d.text ?? '')),
    el('span', 'off', `#${m.offset}`),
  );
  const feed = $('feed');
  feed.prepend(li);
  while (feed.children.length > 50) feed.lastChild.remove();
  $('feed-empty').hidden = true;
}

$('say').addEventListener('submit', async (e) => {
  e.preventDefault();
  const input = $('text');
  const text = input.value.trim();
  if (!text) return;
  const err = $('say-error');
  err.hidden = true;
  try {
    await client.publish('demo.chat', { user: 'you', text });
    input.value = '';
  } catch (x) {
    err.textContent = `Not sent: ${x.code}: ${x.message}`;
    err.hidden = false;
  }
});

// Topics table ------------------------------------------------------------

function topicRow(topic, t) {
  if (!t.row) {
    t.row = el('tr');
    t.row.dataset.topic = topic;
    t.row.append(el('td', 'topic', topic), el('td', 'num offset'), el('td', 'epoch'), el('td', 'num gaps'));
    insertSorted($('topics').tBodies[0], t.row, topic);
  }
  const [, off, epoch, gaps] = t.row.cells;
  off.textContent = t.offset;
  epoch.textContent = String(t.epoch || '').slice(0, 8);
  gaps.textContent = t.gaps;
  gaps.dataset.bad = t.gaps > 0;
}
