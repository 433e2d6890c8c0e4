// Shellway web console. One page app, no build step: the proxy serves this
// file as is. Views: console, hosts (with their accounts and labels), my
// hosts, jobs (jobs.js), logs (+ replay), live monitor, join, users, groups and grants
// (admins), account, manual. Protocol: docs/protocol.md. It runs
// under a Content-Security-Policy without inline scripts or style
// attributes of its own: style with classes (app.css).
'use strict';

const app = { me: null, csrf: null, cleanup: null };
const $ = (sel, root = document) => root.querySelector(sel);

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') el.className = v;
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (v === true) el.setAttribute(k, '');
    else if (v !== false && v != null) el.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c == null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

class ApiError extends Error {
  constructor(status, body) {
    const e = (body && body.error) || {};
    super(e.message || ('request failed (' + status + ')'));
    this.status = status; this.code = e.code; this.field = e.field; this.fields = e.fields || [];
  }
}

async function api(method, path, body) {
  const headers = {};
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (method !== 'GET' && app.csrf) headers['x-csrf-token'] = app.csrf;
  const r = await fetch(path, {method, headers, credentials: 'same-origin',
    body: body === undefined ? undefined : JSON.stringify(body)});
  if (r.status === 401) { location.href = '/login?next=' + encodeURIComponent(location.pathname); throw new ApiError(401, null); }
  const text = await r.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch (_) { json = text; }
  if (!r.ok) throw new ApiError(r.status, json);
  return json;
}

function flash(msg, kind) {
  const f = $('#flash');
  if (!msg) { f.hidden = true; return; }
  f.textContent = msg; f.className = 'flash' + (kind ? ' ' + kind : ''); f.hidden = false;
}

function when(t) { return t ? new Date(t).toLocaleString() : ''; }
function duration(ms) { return ms == null ? '' : ms < 1000 ? ms + ' ms' : (ms / 1000).toFixed(1) + ' s'; }

// ---- a terminal attached to a session's WebSocket ------------------------

// Flow control (docs/protocol.md): the proxy sends at most a window of
// output beyond what this page has acknowledged, and the page acknowledges
// only what xterm.js has drawn (its write callback): output never piles up
// in the page faster than it can be drawn, and a page that falls far behind
// is skipped ahead to a snapshot of the screen. Of what arrived, xterm.js
// is handed at most FEED_MAX bytes ahead of drawing; the rest waits here,
// where a snapshot (after Ctrl-C, say) replaces it rather than queueing
// behind it. Acks go out when drawing has caught up, or every ACK_EVERY
// bytes while it has not.
const ACK_EVERY = 64 * 1024;
const FEED_MAX = 64 * 1024;
// xterm.js parses each write whole: frames are handed over in pieces of
// at most this, so one parse never holds the page's main thread for long.
const PIECE = 16 * 1024;

class Session {
  // path: /ws/sessions/<id>?… or /ws/join/<token>; on: event handlers.
  constructor(path, term, on) {
    this.path = path; this.term = term; this.on = on;
    this.lastSeq = 0; this.closedByUs = false; this.ended = false; this.retry = 0;
    this.pending = 0; // bytes handed to xterm.js and not drawn yet
    this.unacked = 0; // bytes drawn and not acknowledged yet
    this.waiting = []; // [data, seq or 0, bytes] arrived, not handed to xterm.js yet
    this.drawnSeq = 0; // highest seq drawn
  }

  connect() {
    const proto = location.protocol === 'https:' ? 'wss' : 'ws';
    const sep = this.path.includes('?') ? '&' : '?';
    const url = proto + '://' + location.host + this.path + sep + 'flow=true' + (this.lastSeq ? '&after=' + this.lastSeq : '');
    const ws = new WebSocket(url);
    ws.binaryType = 'arraybuffer';
    this.ws = ws;
    ws.onopen = () => { this.retry = 0; };
    ws.onmessage = (m) => this.message(m.data);
    ws.onclose = () => {
      if (this.closedByUs || this.ended) return;
      // Dropped: resume where we are, losing and repeating nothing.
      this.on.status && this.on.status('RECONNECTING', 'busy');
      const wait = Math.min(5000, 500 * (2 ** this.retry++));
      setTimeout(() => { if (!this.closedByUs && !this.ended) this.connect(); }, wait);
    };
  }

  message(data) {
    if (data instanceof ArrayBuffer) {
      const seq = Number(new DataView(data).getBigUint64(0));
      if (seq <= this.lastSeq) return;
      this.lastSeq = seq;
      this.draw(new Uint8Array(data, 8), seq);
      return;
    }
    let ev;
    try { ev = JSON.parse(data); } catch (_) { return; }
    if (ev.event === 'snapshot') {
      // The screen as it is now, in place of everything before it: what
      // waits is dropped (its ack is this one's), and ESC c resets the
      // terminal in order with what xterm.js is still drawing.
      this.lastSeq = Math.max(this.lastSeq, ev.seq);
      this.waiting = [];
      this.draw('\x1bc' + ev.data, ev.seq);
    } else if (ev.event === 'chunk') {
      this.lastSeq = Math.max(this.lastSeq, ev.seq);
      // Shown by the run panel; acknowledged in order with the terminal.
      this.draw('', ev.seq, ev.data.length);
    } else if (ev.event === 'closed' || (ev.event === 'status' && ['closed', 'failed', 'lost', 'rejected'].includes(ev.status))) {
      this.ended = true;
    }
    const handler = this.on[ev.event];
    if (handler) handler(ev);
    if (this.on.any) this.on.any(ev);
  }

  // Output up to `seq`: drawn in order, acknowledged once drawn.
  draw(data, seq, bytes = data.length) {
    if (data instanceof Uint8Array) {
      // Only the last piece acknowledges `seq` (0: none).
      let at = 0;
      do {
        const end = Math.min(at + PIECE, data.length);
        this.waiting.push([data.subarray(at, end), end === data.length ? seq : 0, end - at]);
        at = end;
      } while (at < data.length);
    } else {
      this.waiting.push([data, seq, bytes]);
    }
    this.feed();
  }

  // Hands waiting output to xterm.js, up to FEED_MAX ahead of drawing.
  feed() {
    while (this.waiting.length && this.pending < FEED_MAX) {
      const [data, seq, bytes] = this.waiting.shift();
      this.pending += bytes;
      this.term.write(data, () => {
        this.pending -= bytes;
        this.unacked += bytes;
        this.feed();
        if (seq) this.drawnSeq = seq;
        if (this.drawnSeq && (this.pending === 0 || this.unacked >= ACK_EVERY)) {
          this.unacked = 0;
          this.send({action: 'ack', seq: this.drawnSeq});
        }
      });
    }
  }

  send(obj) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(obj));
  }

  close() { this.closedByUs = true; if (this.ws) this.ws.close(); }
}

function makeTerminal(container, readOnly) {
  const term = new Terminal({
    cursorBlink: !readOnly, disableStdin: !!readOnly, scrollback: 5000, allowProposedApi: false,
    fontFamily: 'ui-monospace, "DejaVu Sans Mono", Menlo, monospace', fontSize: 14,
    theme: {background: '#000000', foreground: '#d8dee6', cursor: '#ffd866', selectionBackground: '#3a4a5c'},
  });
  const fit = new FitAddon.FitAddon();
  term.loadAddon(fit);
  term.open(container);
  fit.fit();
  // Copy and paste as in desktop terminals (Ctrl+C stays an interrupt):
  // Ctrl+Shift+C copies the selection; Ctrl+Shift+V is left to the
  // browser, whose paste xterm.js turns into input (bracketed when the
  // program asked for it). The browser's context menu works too.
  term.attachCustomKeyEventHandler((e) => {
    // Alt+Shift+← / → are the console's (switching session tabs).
    if (e.altKey && e.shiftKey && ['ArrowLeft', 'ArrowRight'].includes(e.key)) return false;
    if (e.type !== 'keydown' || !e.ctrlKey || !e.shiftKey) return true;
    if (e.code === 'KeyC' && term.hasSelection()) {
      e.preventDefault();
      if (navigator.clipboard) navigator.clipboard.writeText(term.getSelection()).catch(() => {});
      return false;
    }
    return e.code !== 'KeyV';
  });
  window.shellwayTerm = term; // for tests and the curious: the buffer is readable
  return {term, fit};
}

// Text of the terminal's active buffer, for tests (window.shellwayScreen()).
window.shellwayScreen = () => {
  const t = window.shellwayTerm;
  if (!t) return '';
  const b = t.buffer.active;
  const lines = [];
  for (let i = 0; i < b.length; i++) lines.push(b.getLine(i).translateToString(true));
  return lines.join('\n');
};

// ---- a session in a terminal ---------------------------------------------

const FINAL = ['closed', 'failed', 'lost', 'rejected'];

// Refits a terminal whenever its box changes size (window, layout
// breakpoint, side panel, a tab shown), both ways; `onFit` hears the size
// it then has.
function fitOnResize(box, fit, term, onFit) {
  const observer = new ResizeObserver(() => {
    if (!box.offsetParent) return; // a hidden tab has no size to fit
    fit.fit();
    onFit(term.cols, term.rows);
  });
  observer.observe(box);
  return () => observer.disconnect();
}
// A resize is sent once the size has settled this long (dragging a window
// edge refits many times), or at once before the next keystroke.
const RESIZE_SETTLE_MS = 120;

function closedText(ev) {
  const why = ev.reason === 'idle' ? 'closed after the idle timeout (no viewer and no input)' : ev.reason;
  return 'Session ended: ' + why + (ev.by && !why.includes(ev.by) ? ' (by ' + ev.by + ')' : '');
}

function runBadge(ev) {
  let text;
  if (ev.status === 'canceled') text = 'CANCELED';
  else if (ev.exit_signal) text = 'SIGNAL ' + ev.exit_signal;
  else if (ev.exit_code != null) text = 'EXIT ' + ev.exit_code;
  else text = ev.status.toUpperCase();
  if (ev.failed_step) text += ' · STEP ' + ev.failed_step + ' FAILED';
  return text;
}

// One session shown in an xterm.js terminal: its connection (`Session`),
// status badge, viewers and runs. The console holds one per tab; the
// watch and join pages hold one. `opts`: {path, control (may type, resize
// and cancel), history (list the runs from before), status, onChange(pane),
// onFlash(text, kind)}.
class Pane {
  constructor(id, opts) {
    this.id = id; this.opts = opts;
    this.box = h('div', {class: 'term', 'data-session': id});
    this.runsEl = h('div', {class: 'runs', id: 'run-output', 'aria-live': 'polite'});
    this.presenceEl = h('ul', {class: 'presence', id: 'presence'});
    this.runs = new Map();
    this.badge = ['DETACHED', ''];
    this.status = opts.status || 'pending';
    this.sess = null; this.term = null; this.fit = null;
    this.sentSize = null; this.pendingSize = null;
    this.runsLoaded = false;
  }

  get live() { return !FINAL.includes(this.status); }
  get attached() { return !!this.sess; }

  // The terminal is made the first time the pane is shown: xterm.js
  // measures its font in a visible box.
  ensureTerminal() {
    if (this.term) return;
    const {term, fit} = makeTerminal(this.box, !this.opts.control);
    this.term = term; this.fit = fit;
    this.stopFit = fitOnResize(this.box, fit, term, (cols, rows) => this.resized(cols, rows));
    if (this.opts.control) {
      term.onData((d) => {
        if (!this.sess) return;
        this.flushResize(); // typed after a resize: the PTY has the new size first
        this.sess.send({action: 'input', data: d});
      });
    }
  }

  resized(cols, rows) {
    this.pendingSize = {cols, rows};
    clearTimeout(this.resizeTimer);
    this.resizeTimer = setTimeout(() => this.flushResize(), RESIZE_SETTLE_MS);
  }

  flushResize() {
    clearTimeout(this.resizeTimer);
    const size = this.pendingSize;
    if (!size || !this.sess || !this.opts.control || !this.live) return;
    this.pendingSize = null;
    if (this.sentSize && this.sentSize.cols === size.cols && this.sentSize.rows === size.rows) return;
    this.sentSize = size;
    this.sess.send({action: 'resize', cols: size.cols, rows: size.rows});
  }

  setBadge(text, kind) { this.badge = [text, kind || '']; this.changed(); }
  changed() { if (this.opts.onChange) this.opts.onChange(this); }
  flash(text, kind) { if (this.opts.onFlash) this.opts.onFlash(text, kind); }

  // Connects (again): a terminal that already shows this session resumes
  // after what it has (`after`), a new one starts from a snapshot of the
  // screen (the path asks for it) or, for a session just opened, from the
  // start of its output.
  attach() {
    this.ensureTerminal();
    if (this.sess) return;
    const sess = new Session(this.opts.path, this.term, this.handlers());
    if (this.lastSeq) sess.lastSeq = this.lastSeq;
    this.sess = sess;
    this.setBadge('CONNECTING', 'busy');
    sess.connect();
    if (!this.runsLoaded && this.opts.history) this.loadRuns();
  }

  // Leaves the session running: only this page stops watching.
  detach() {
    if (!this.sess) return;
    this.lastSeq = this.sess.lastSeq;
    this.sess.close();
    this.sess = null;
    this.sentSize = null;
    if (this.live) this.setBadge('DETACHED');
  }

  end() {
    if (!this.sess) return;
    this.sess.send({action: 'close'});
    this.setBadge('ENDING', 'busy');
  }

  dispose() {
    this.detach();
    clearTimeout(this.resizeTimer);
    if (this.stopFit) this.stopFit();
    if (this.term) this.term.dispose();
  }

  // The session is over: the badge, the viewers and the runs say so now,
  // whatever else arrives later.
  finish(status, badge) {
    this.status = status;
    this.presenceEl.replaceChildren();
    for (const run of this.runs.values()) {
      if (['queued', 'running'].includes(run.status)) this.setRun(run, status === 'lost' ? 'lost' : 'canceled', status === 'lost' ? 'LOST' : 'CANCELED', 'bad');
    }
    this.setBadge(badge || status.toUpperCase(), status === 'closed' ? '' : 'bad');
  }

  onStatus(status) {
    if (FINAL.includes(status)) { if (this.live) this.finish(status); return; }
    this.status = status;
    if (status === 'open') this.setBadge('CONNECTED', 'ok');
    else this.setBadge('CONNECTING', 'busy');
  }

  handlers() {
    return {
      // A status event, or (from the reconnect logic) a badge text.
      status: (ev, kind) => (typeof ev === 'string' ? this.setBadge(ev, kind) : this.onStatus(ev.status)),
      connected: (ev) => {
        this.onStatus(ev.status);
        this.sentSize = null;
        if (this.term && this.live) { this.pendingSize = {cols: this.term.cols, rows: this.term.rows}; this.flushResize(); }
      },
      queued: (ev) => this.run(ev.run, ev.command),
      started: (ev) => {
        const run = this.run(ev.run, ev.command);
        run.steps = ev.steps;
        this.setRun(run, 'running', ev.steps > 1 ? 'STEP 1/' + ev.steps : 'RUNNING', 'busy');
        this.setBadge(ev.steps > 1 ? 'STEP 1/' + ev.steps : 'RUNNING', 'busy');
      },
      progress: (ev) => {
        const run = this.run(ev.run);
        this.setRun(run, 'running', 'STEP ' + ev.current + '/' + ev.total, 'busy');
        run.step.textContent = 'Step ' + ev.current + ' of ' + ev.total + ': ' + ev.step;
        this.setBadge('STEP ' + ev.current + '/' + ev.total, 'busy');
      },
      chunk: (ev) => {
        const run = this.run(ev.run);
        run.out.append(h('span', {class: ev.stream}, ev.data));
        run.out.scrollTop = run.out.scrollHeight;
      },
      canceling: (ev) => { this.setRun(this.run(ev.run), 'running', 'CANCELING', 'busy'); this.setBadge('CANCELING', 'busy'); },
      completed: (ev) => {
        const run = this.run(ev.run);
        const text = runBadge(ev);
        this.setRun(run, ev.status, text, ev.status === 'ok' ? 'ok' : 'bad');
        run.time.textContent = ev.duration_ms != null ? duration(ev.duration_ms) : '';
        this.setBadge(text, ev.status === 'ok' ? 'ok' : 'bad');
      },
      presence: (ev) => {
        if (!this.live) return;
        this.presenceEl.replaceChildren(...ev.viewers.map((v) => h('li', {}, v.user, h('span', {class: 'mode'}, v.mode))));
      },
      error: (ev) => {
        this.flash(errorText(ev));
        if (ev.run) return;
        if (ev.type === 'lost') this.finish('lost');
        else if (this.live) this.setBadge('ERROR', 'bad');
      },
      closed: (ev) => { this.flash(closedText(ev), 'info'); this.finish('closed', 'CLOSED'); },
      // The proxy lost (and found again) the message broker: the session
      // goes on at the runner; output from meanwhile follows.
      link: (ev) => {
        if (!this.live) return;
        if (ev.state === 'interrupted') { this.setBadge('INTERRUPTED', 'busy'); this.flash(ev.message, 'info'); } else { this.setBadge('CONNECTED', 'ok'); this.flash(ev.message, 'info'); }
      },
    };
  }

  // ---- runs: newest first, each with its own output and result ----------

  run(id, command) {
    let run = this.runs.get(id);
    if (run) return run;
    run = {id, status: 'queued'};
    run.state = h('span', {class: 'run-state badge busy'}, 'QUEUED');
    run.time = h('span', {class: 'muted run-time'});
    run.step = h('div', {class: 'muted run-step'});
    run.cancel = this.opts.control ? h('button', {class: 'danger run-cancel', title: 'Cancel this run',
      onclick: (e) => { e.preventDefault(); if (this.sess) this.sess.send({action: 'cancel', run: id}); }}, 'Cancel') : null;
    run.out = h('pre', {class: 'runout'});
    run.el = h('details', {class: 'run', open: true, 'data-run': id},
      h('summary', {}, run.state, h('code', {class: 'run-command', title: command || ''}, command || 'run'), run.time, run.cancel),
      run.step, run.out);
    this.runs.set(id, run);
    this.runsEl.prepend(run.el);
    return run;
  }

  setRun(run, status, text, kind) {
    run.status = status;
    run.state.textContent = text;
    run.state.className = 'run-state badge ' + kind;
    run.el.dataset.status = status;
    if (run.cancel) run.cancel.hidden = !['queued', 'running'].includes(status);
  }

  // Runs from before this page attached (a reload): their status and the
  // tail of their output, behind what events brought meanwhile.
  async loadRuns() {
    this.runsLoaded = true;
    let detail;
    try { detail = await api('GET', '/api/sessions/' + this.id); } catch (_) { return; }
    for (const r of detail.runs) {
      if (this.runs.has(r.id)) continue;
      const run = this.run(r.id, r.command);
      this.runsEl.append(run.el); // older than anything live
      const done = !['queued', 'running'].includes(r.status);
      this.setRun(run, r.status, done ? runBadge(r) : r.status.toUpperCase(), r.status === 'ok' ? 'ok' : done ? 'bad' : 'busy');
      run.time.textContent = duration(r.duration_ms);
      run.out.textContent = r.output_tail || '';
      if (done) run.el.open = false;
    }
  }

  runningRuns() { return [...this.runs.values()].filter((r) => ['queued', 'running'].includes(r.status)); }
}

// ---- console -------------------------------------------------------------

const ACTIVE_KEY = 'shellway.active';

function tabLabel(s) { return (s.host_name || 'session') + ' · ' + s.id.slice(-6); }

async function consoleView(view, params) {
  if (params.get('watch')) return watchView(view, params.get('watch'));
  const admin = app.me && app.me.is_admin;
  const [hosts, tasks, scripts, mine, access] = await Promise.all([api('GET', '/api/hosts'), api('GET', '/api/tasks'),
    api('GET', '/api/scripts'), api('GET', '/api/sessions?status=live&mine=true&limit=50'), api('GET', '/api/me/access')]);
  // The accounts the caller may connect as, by host.
  const accountsOf = new Map(access.hosts.map((x) => [x.host_id,
    x.accounts.filter((a) => a.actions.includes('shell')).map((a) => a.login)]));
  const badge = h('span', {class: 'badge', id: 'badge', role: 'status', 'aria-live': 'polite'}, 'IDLE');
  const hostSel = h('select', {id: 'host', 'aria-label': 'Host'},
    hosts.map((x) => h('option', {value: x.id}, x.name + ' (' + x.username + '@' + x.hostname + ')')));
  const accountSel = h('select', {id: 'account', 'aria-label': 'Account'});
  const pickAccounts = () => {
    const logins = accountsOf.get(hostSel.value) || [];
    accountSel.replaceChildren(...logins.map((l) => h('option', {value: l}, l)));
    accountSel.hidden = logins.length < 2;
  };
  hostSel.addEventListener('change', pickAccounts);
  pickAccounts();
  const connectBtn = h('button', {id: 'connect', class: 'primary', title: 'Open a new session on this host'}, 'Connect');
  const noHosts = h('span', {id: 'no-hosts', class: 'muted'}, 'No hosts yet: ',
    admin ? [h('a', {href: '/hosts', 'data-link': true}, 'add a host'), ' first.'] : 'ask an administrator for access to one.');
  const endBtn = h('button', {id: 'disconnect', class: 'danger', disabled: true, title: 'End this session for everyone'}, 'End session');
  const shareBtn = h('button', {id: 'share', disabled: true}, 'Share');
  const tabs = h('div', {class: 'tabs', id: 'tabs', role: 'tablist', 'aria-label': 'Your sessions'});
  const stack = h('div', {class: 'term-stack'});
  const placeholder = h('div', {class: 'term placeholder', id: 'no-session'},
    h('p', {class: 'muted'}, 'Pick a host and press Connect, or choose one of your sessions above.'));
  const cmd = h('input', {type: 'text', id: 'command', placeholder: 'uname -a', 'aria-label': 'Command'});
  const script = h('textarea', {id: 'script', rows: 5, placeholder: '# one command a step\ncd /srv\n./deploy.sh', 'aria-label': 'Batch script'});
  const runBtn = h('button', {id: 'run', disabled: true}, 'Run');
  const batchBtn = h('button', {id: 'run-batch', disabled: true, title: 'Ctrl+Enter in the script'}, 'Run batch');
  const cancelBtn = h('button', {id: 'cancel', class: 'danger', disabled: true, title: 'Cancel the run going now'}, 'Cancel');
  const taskSel = h('select', {id: 'task', 'aria-label': 'Saved task'}, h('option', {value: ''}, 'Saved task…'),
    tasks.map((t) => h('option', {value: t.name}, t.label || t.name)));
  const taskBtn = h('button', {id: 'run-task', disabled: true}, 'Run task');
  const scriptSel = h('select', {id: 'saved-script', 'aria-label': 'Saved script'}, h('option', {value: ''}, 'Load a saved script…'),
    scripts.map((x) => h('option', {value: x.id}, x.name)));
  // A saved script runs by id (and is logged by its name) while its text is unchanged.
  let loaded = null;
  scriptSel.addEventListener('change', () => {
    const found = scripts.find((x) => x.id === scriptSel.value);
    if (found) { script.value = found.body; loaded = found; }
  });
  const runsSlot = h('div', {class: 'runs-slot'});
  const presenceSlot = h('div');

  view.append(h('div', {class: 'console'},
    h('section', {class: 'term-pane', 'aria-label': 'Terminal'},
      h('div', {class: 'toolbar'}, hostSel, accountSel, connectBtn, hosts.length ? null : noHosts, h('span', {class: 'spacer'}), endBtn, shareBtn, badge),
      tabs, stack),
    h('aside', {class: 'side'},
      h('div', {class: 'card', id: 'run-card'}, h('h3', {}, 'Run in this session'),
        h('div', {class: 'toolbar'}, cmd, runBtn),
        h('div', {class: 'toolbar'}, taskSel, taskBtn),
        scriptSel, script, h('div', {class: 'toolbar'}, batchBtn, cancelBtn),
        h('h3', {class: 'runs-title'}, 'Runs'), runsSlot),
      h('div', {class: 'card'}, h('h3', {}, 'Who is here'), presenceSlot))));
  bindLinks(view);
  if (!hosts.length) { connectBtn.disabled = true; hostSel.disabled = true; }

  const panes = new Map();
  let active = null;

  function refresh() {
    const p = active;
    if (p) { window.shellwayTerm = p.term; window.shellwaySession = p.sess; } // for tests: the active tab
    const live = !!(p && p.attached && p.live);
    const [text, kind] = p ? p.badge : ['IDLE', ''];
    badge.textContent = text; badge.className = 'badge' + (kind ? ' ' + kind : '');
    endBtn.disabled = !live; shareBtn.disabled = !live;
    for (const b of [runBtn, batchBtn, taskBtn]) b.disabled = !live;
    cancelBtn.disabled = !live || !p.runningRuns().some((r) => r.status === 'running');
    for (const [id, pane] of panes) {
      const tab = tabs.querySelector('[data-session="' + id + '"]');
      if (!tab) continue;
      tab.classList.toggle('active', pane === p);
      tab.classList.toggle('detached', !pane.attached && pane.live);
      tab.classList.toggle('ended', !pane.live);
      tab.setAttribute('aria-selected', pane === p ? 'true' : 'false');
      tab.querySelector('.tab-state').textContent = !pane.live ? pane.status : pane.attached ? '' : 'detached';
      tab.querySelector('.tab-close').title = pane.live ? 'Detach (the session keeps running)' : 'Close this tab';
    }
  }

  function addPane(s, fresh) {
    const pane = new Pane(s.id, {
      path: s.ws_path + (fresh ? '' : '?snapshot=true'), control: true, history: !fresh, status: s.status,
      onChange: (p) => { if (p === active || panes.has(p.id)) refresh(); },
      onFlash: (text, kind) => { if (pane === active) flash(text, kind); },
    });
    panes.set(s.id, pane);
    const close = h('button', {class: 'tab-close', 'aria-label': 'Detach'}, '×');
    const tab = h('div', {class: 'tab', role: 'tab', 'data-session': s.id},
      h('button', {class: 'tab-label', title: 'Session ' + s.id}, tabLabel(s), h('span', {class: 'tab-state muted'})), close);
    tab.querySelector('.tab-label').addEventListener('click', () => activate(pane));
    close.addEventListener('click', () => closeTab(pane));
    tabs.append(tab);
    stack.append(pane.box);
    pane.box.hidden = true;
    return pane;
  }

  // Shows a pane (attaching it); the others stay as they are.
  function activate(pane) {
    if (active === pane) { if (pane && !pane.attached && pane.live) pane.attach(); refresh(); return; }
    if (active) active.box.hidden = true;
    active = pane;
    placeholder.hidden = !!pane;
    if (pane) {
      pane.box.hidden = false;
      if (pane.live) pane.attach(); else pane.ensureTerminal();
      runsSlot.replaceChildren(pane.runsEl);
      presenceSlot.replaceChildren(pane.presenceEl);
      sessionStorage.setItem(ACTIVE_KEY, pane.id);
      history.replaceState(null, '', '/?session=' + pane.id);
      pane.term.focus();
    } else {
      runsSlot.replaceChildren(); presenceSlot.replaceChildren();
      sessionStorage.removeItem(ACTIVE_KEY);
      history.replaceState(null, '', '/');
    }
    flash(null);
    refresh();
  }

  // A live session's tab detaches (the session keeps running and stays
  // listed); an ended one's goes away.
  function closeTab(pane) {
    if (pane.live) {
      pane.detach();
      refresh();
      return;
    }
    pane.dispose();
    panes.delete(pane.id);
    const tab = tabs.querySelector('[data-session="' + pane.id + '"]');
    if (tab) tab.remove();
    pane.box.remove();
    if (active === pane) { active = null; activate([...panes.values()].pop() || null); }
    refresh();
  }

  function step(by) {
    const list = [...panes.values()];
    if (!list.length) return;
    const at = list.indexOf(active);
    activate(list[(at + by + list.length) % list.length]);
  }

  stack.append(placeholder);
  for (const s of mine.slice().reverse()) addPane(s, false);
  const wanted = params.get('session') || sessionStorage.getItem(ACTIVE_KEY);
  if (wanted && panes.has(wanted)) activate(panes.get(wanted));
  else {
    if (params.get('session')) flash('That session is no longer live; its recording is in Logs.', 'info');
    activate(null);
  }

  connectBtn.addEventListener('click', async () => {
    flash(null);
    badge.textContent = 'CONNECTING'; badge.className = 'badge busy';
    try {
      const size = active && active.term ? {cols: active.term.cols, rows: active.term.rows} : {};
      const account = accountSel.value ? {account: accountSel.value} : {};
      const s = await api('POST', '/api/sessions', Object.assign({host_id: hostSel.value}, account, size));
      const host = hosts.find((x) => x.id === hostSel.value);
      activate(addPane({id: s.id, ws_path: s.ws_path, host_name: host && host.name, status: 'pending'}, true));
    } catch (e) { badge.textContent = 'ERROR'; badge.className = 'badge bad'; flash(e.message); }
  });
  endBtn.addEventListener('click', () => active && active.end());
  const run = (body) => { if (active && active.sess) active.sess.send(Object.assign({action: 'run'}, body)); };
  runBtn.addEventListener('click', () => cmd.value.trim() && run({command: cmd.value}));
  cmd.addEventListener('keydown', (e) => { if (e.key === 'Enter' && cmd.value.trim() && !runBtn.disabled) run({command: cmd.value}); });
  // A saved script unchanged since it was loaded runs by name (logged as such).
  const runScript = () => run(loaded && script.value === loaded.body ? {script_id: loaded.id} : {script: script.value});
  batchBtn.addEventListener('click', () => script.value.trim() && runScript());
  script.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && e.ctrlKey && script.value.trim() && !batchBtn.disabled) { e.preventDefault(); runScript(); }
  });
  taskBtn.addEventListener('click', () => taskSel.value && run({task: taskSel.value}));
  cancelBtn.addEventListener('click', () => active && active.sess && active.sess.send({action: 'cancel'}));
  shareBtn.addEventListener('click', () => active && shareDialog(active.id));
  // Alt+Shift+← / → switch tabs (the terminal leaves these keys to us).
  const onKey = (e) => {
    if (!e.altKey || !e.shiftKey || !['ArrowLeft', 'ArrowRight'].includes(e.key)) return;
    e.preventDefault();
    step(e.key === 'ArrowLeft' ? -1 : 1);
  };
  document.addEventListener('keydown', onKey);
  app.cleanup = () => {
    document.removeEventListener('keydown', onKey);
    for (const pane of panes.values()) pane.dispose();
    window.shellwaySession = null;
  };
}

function errorText(ev) {
  const what = {ssh: 'SSH', runtime: 'Runner', auth: 'Permission', protocol: 'Request', capacity: 'Capacity', lost: 'Connection lost'}[ev.type] || 'Error';
  return what + ': ' + ev.message;
}

// A read-only page around one pane: an admin watching (`/?watch=<id>`) or
// someone who came by a share link. Only what such a viewer may do is
// shown: no run panel, no cancel; a `control` link may type.
function viewerPage(view, pane, title, leave) {
  const badge = h('span', {class: 'badge', id: 'badge', role: 'status', 'aria-live': 'polite'});
  const refresh = () => { const [text, kind] = pane.badge; badge.textContent = text; badge.className = 'badge' + (kind ? ' ' + kind : ''); };
  pane.opts.onChange = refresh;
  pane.opts.onFlash = flash;
  view.append(h('div', {class: 'console'},
    h('section', {class: 'term-pane', 'aria-label': 'Terminal'},
      h('div', {class: 'toolbar'}, h('span', {id: 'viewing'}, title), h('span', {class: 'spacer'}), leave, badge),
      h('div', {class: 'term-stack'}, pane.box)),
    h('aside', {class: 'side'},
      h('div', {class: 'card'}, h('h3', {}, 'Who is here'), pane.presenceEl),
      h('div', {class: 'card', id: 'runs-card'}, h('h3', {}, 'Runs'), pane.runsEl))));
  pane.attach();
  window.shellwaySession = pane.sess;
  refresh();
  app.cleanup = () => pane.dispose();
}

async function watchView(view, id) {
  const s = await api('GET', '/api/sessions/' + id);
  const pane = new Pane(id, {path: s.ws_path + '?mode=view&snapshot=true', control: false, history: true, status: s.status});
  const leave = h('a', {href: '/monitor', 'data-link': true, id: 'stop-watching'}, 'Stop watching');
  viewerPage(view, pane, 'Watching ' + (s.host_name || 'a session') + ' of ' + s.owner + ' · read-only', leave);
  bindLinks(view);
}

async function shareDialog(sessionId) {
  const mode = h('select', {id: 'share-mode', 'aria-label': 'Mode'}, h('option', {value: 'view'}, 'View only'), h('option', {value: 'control'}, 'Control (can type)'));
  const expiry = h('select', {id: 'share-expiry', 'aria-label': 'Expires in'},
    [[900, '15 minutes'], [3600, '1 hour'], [28800, '8 hours'], [86400, '24 hours']].map(([s, l]) => h('option', {value: s, selected: s === 3600}, l)));
  const url = h('input', {type: 'text', id: 'share-url', readonly: true, 'aria-label': 'Share link'});
  const copy = h('button', {id: 'share-copy'}, 'Copy');
  const list = h('tbody');
  const err = h('p', {class: 'error', hidden: true});
  const dlg = h('dialog', {id: 'share-dialog', 'aria-label': 'Share this session'},
    h('h2', {}, 'Share this session'),
    h('div', {class: 'toolbar'}, mode, expiry, h('button', {class: 'primary', id: 'share-create', onclick: create}, 'Create link')),
    h('div', {class: 'share-url'}, url, copy), err,
    h('h3', {}, 'Links'), h('table', {}, h('thead', {}, h('tr', {}, h('th', {}, 'Mode'), h('th', {}, 'Expires'), h('th', {}, 'State'), h('th'))), list),
    h('div', {class: 'toolbar'}, h('span', {class: 'spacer'}), h('button', {onclick: () => { dlg.close(); dlg.remove(); }}, 'Close')));
  copy.addEventListener('click', async () => {
    try { await navigator.clipboard.writeText(url.value); } catch (_) { url.select(); document.execCommand('copy'); }
    copy.textContent = 'Copied';
  });
  async function refresh() {
    const links = await api('GET', '/api/sessions/' + sessionId + '/shares');
    list.replaceChildren(...links.map((l) => h('tr', {},
      h('td', {}, l.mode), h('td', {}, when(l.expires_at)), h('td', {}, l.active ? 'active' : (l.revoked_at ? 'revoked' : 'ended')),
      h('td', {}, l.active ? h('button', {class: 'danger', onclick: async () => { await api('DELETE', '/api/shares/' + l.id); refresh(); }}, 'Revoke') : ''))));
  }
  async function create() {
    err.hidden = true;
    try {
      const s = await api('POST', '/api/sessions/' + sessionId + '/shares', {mode: mode.value, expires_in: Number(expiry.value)});
      url.value = location.origin + s.url; copy.textContent = 'Copy';
      refresh();
    } catch (e) { err.textContent = e.message; err.hidden = false; }
  }
  document.body.append(dlg);
  dlg.showModal();
  refresh();
}

// ---- joining by a link ---------------------------------------------------

async function joinView(view, params, token) {
  let info;
  try { info = await api('GET', '/api/join/' + encodeURIComponent(token)); } catch (e) {
    view.append(h('div', {class: 'card'}, h('h2', {}, 'This link does not open a session'), h('p', {class: 'error', id: 'join-error'}, e.message)));
    return;
  }
  const control = info.mode !== 'view';
  const pane = new Pane('join', {path: info.ws_path, control, status: 'pending'});
  const leave = h('a', {href: '/', 'data-link': true, id: 'leave'}, 'Leave');
  viewerPage(view, pane, (info.host_name || 'session') + ' shared by ' + info.owner + ' · ' + (control ? 'you can type' : 'view only'), leave);
  bindLinks(view);
}

// Every field error of an API error next to its field (all at once when
// the API lists several); what has no field goes to the banner.
function showFieldErrors(e, errs) {
  const list = e.fields && e.fields.length ? e.fields : e.field ? [{field: e.field, message: e.message}] : [];
  let shown = false;
  for (const f of list) {
    if (!errs[f.field]) continue;
    errs[f.field].textContent = f.message;
    shown = true;
  }
  if (!shown) flash(e.message);
  return list;
}

function readOnlyNote(what) {
  return h('p', {class: 'muted read-only-note', id: 'read-only-note'},
    'Only administrators add or change ' + what + '. You can use them from the Console.');
}

// ---- hosts ---------------------------------------------------------------

function labelText(labels) {
  return Object.entries(labels || {}).map(([k, v]) => k + '=' + v).join(', ');
}

function parseLabels(text) {
  const labels = {};
  for (const part of text.split(',').map((s) => s.trim()).filter(Boolean)) {
    const i = part.indexOf('=');
    if (i < 0) labels[part] = ''; else labels[part.slice(0, i).trim()] = part.slice(i + 1).trim();
  }
  return labels;
}

async function hostsView(view) {
  const admin = app.me && app.me.is_admin;
  const tbody = h('tbody');
  const fields = {};
  const errs = {};
  const input = (name, label, el) => {
    el.id = 'host-' + name; el.name = name; fields[name] = el;
    errs[name] = h('span', {class: 'field-error', id: 'host-' + name + '-error', role: 'alert'});
    return [h('label', {for: el.id}, label), el, errs[name]];
  };
  const form = h('form', {class: 'form-grid card', id: 'host-form', novalidate: true},
    input('name', 'Name', h('input', {required: true, placeholder: 'web1'})),
    input('hostname', 'Hostname', h('input', {required: true, placeholder: '10.0.0.5'})),
    input('port', 'Port', h('input', {type: 'number', value: '22', min: 1, max: 65535})),
    input('username', 'User', h('input', {required: true, placeholder: 'deploy'})),
    input('auth_method', 'Authentication', h('select', {}, h('option', {value: 'key_path'}, 'Key file on the runner'), h('option', {value: 'agent'}, 'Runner\'s SSH agent'),
      h('option', {value: 'stored_key'}, 'Stored private key (vault)'), h('option', {value: 'password'}, 'Stored password (vault)'))),
    input('key_path', 'Key path', h('input', {placeholder: '/keys/id_ed25519'})),
    input('credential_id', 'Stored credential', h('select', {}, h('option', {value: ''}, '—'))),
    input('host_key_policy', 'Host key policy', h('select', {}, h('option', {value: 'strict'}, 'strict — pinned keys only'), h('option', {value: 'tofu'}, 'tofu — pin the first key seen'), h('option', {value: 'off'}, 'off — accept any key (unsafe)'))),
    input('host_keys', 'Pinned host keys', h('textarea', {rows: 3, placeholder: 'ssh-ed25519 AAAA… (one a line; ssh-keyscan -t ed25519 HOST)'})),
    input('labels', 'Labels', h('input', {placeholder: 'env=prod, team=web'})),
    h('span'), h('div', {class: 'row-actions'}, h('button', {type: 'button', id: 'host-scan', onclick: scan}, 'Fetch host key'),
      h('span', {id: 'host-scan-result', class: 'muted', role: 'status'})), h('span'),
    h('span'), h('div', {class: 'row-actions'}, h('button', {class: 'primary', type: 'submit', id: 'host-save'}, 'Save host'), h('button', {type: 'button', id: 'host-new', onclick: () => edit(null)}, 'New')), h('span'));
  let editing = null;
  async function scan() {
    const out = $('#host-scan-result');
    out.textContent = 'Connecting…'; errs.hostname.textContent = ''; errs.port.textContent = '';
    try {
      const r = await api('POST', '/api/hosts/scan', {hostname: fields.hostname.value.trim(), port: Number(fields.port.value) || 22});
      out.textContent = 'Fingerprint ' + r.fingerprint + ' — compare it with the server\'s own (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub) before saving.';
      const keys = fields.host_keys.value.split('\n').map((k) => k.trim()).filter(Boolean);
      if (!keys.includes(r.key)) fields.host_keys.value = keys.concat([r.key]).join('\n');
    } catch (e) {
      out.textContent = '';
      if (e.field && errs[e.field]) errs[e.field].textContent = e.message; else out.textContent = e.message;
    }
  }
  function edit(host) {
    editing = host ? host.id : null;
    for (const k of Object.keys(errs)) errs[k].textContent = '';
    $('#host-scan-result', form).textContent = '';
    flash(null);
    fields.name.value = host ? host.name : '';
    fields.hostname.value = host ? host.hostname : '';
    fields.port.value = host ? host.port : 22;
    fields.username.value = host ? host.username : '';
    fields.auth_method.value = host ? host.auth_method : 'key_path';
    fields.key_path.value = host && host.key_path ? host.key_path : '';
    fields.credential_id.value = host && host.credential_id ? host.credential_id : '';
    fields.host_key_policy.value = host ? host.host_key_policy : 'strict';
    fields.host_keys.value = host ? host.host_keys.join('\n') : '';
    fields.labels.value = host ? labelText(host.labels) : '';
    $('#host-save').textContent = host ? 'Update host' : 'Save host';
    showAccounts(host);
  }
  // The accounts of the host being edited (the first one is the form's User).
  const accountsCard = h('section', {class: 'card section-title', id: 'host-accounts', hidden: true});
  async function showAccounts(host) {
    accountsCard.hidden = !host;
    if (!host) return;
    const list = await api('GET', '/api/hosts/' + host.id + '/accounts');
    const login = h('input', {id: 'account-login', placeholder: 'deploy', 'aria-label': 'Login'});
    const method = h('select', {id: 'account-auth_method', 'aria-label': 'Authentication'},
      ['key_path', 'agent', 'stored_key', 'password'].map((m) => h('option', {value: m}, m)));
    const keyPath = h('input', {id: 'account-key_path', placeholder: '/keys/id_ed25519 or credential id', 'aria-label': 'Key path or credential id'});
    const add = h('button', {id: 'account-add', onclick: async () => {
      const m = method.value;
      const body = {login: login.value.trim(), auth_method: m};
      if (m === 'key_path') body.key_path = keyPath.value.trim();
      if (m === 'stored_key' || m === 'password') body.credential_id = keyPath.value.trim() || null;
      try { await api('POST', '/api/hosts/' + host.id + '/accounts', body); flash('Account added.', 'info'); showAccounts(host); load(); } catch (e) { flash(e.message); }
    }}, 'Add account');
    accountsCard.replaceChildren(h('h3', {}, 'Accounts of ' + host.name),
      h('table', {id: 'accounts-table'}, h('thead', {}, h('tr', {}, h('th', {}, 'Login'), h('th', {}, 'Authentication'), h('th'))),
        h('tbody', {}, list.map((a) => h('tr', {'data-account': a.login},
          h('td', {}, a.login), h('td', {}, a.auth_method + (a.key_path ? ' · ' + a.key_path : '') + (a.credential_id ? ' · ' + a.credential_id : '')),
          h('td', {class: 'row-actions'}, h('button', {class: 'danger', onclick: async () => {
            try { await api('DELETE', '/api/hosts/' + host.id + '/accounts/' + a.id); showAccounts(host); load(); } catch (e) { flash(e.message); }
          }}, 'Remove')))))),
      h('div', {class: 'toolbar'}, login, method, keyPath, add));
  }
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    for (const k of Object.keys(errs)) errs[k].textContent = '';
    flash(null);
    const body = {
      name: fields.name.value.trim(), hostname: fields.hostname.value.trim(), port: Number(fields.port.value),
      username: fields.username.value.trim(), auth_method: fields.auth_method.value,
      key_path: fields.auth_method.value === 'key_path' ? fields.key_path.value.trim() : null,
      credential_id: ['stored_key', 'password'].includes(fields.auth_method.value) ? fields.credential_id.value || null : null,
      host_key_policy: fields.host_key_policy.value,
      host_keys: fields.host_keys.value.split('\n').map((s) => s.trim()).filter(Boolean),
      labels: parseLabels(fields.labels.value),
    };
    try {
      if (editing) await api('PUT', '/api/hosts/' + editing, body); else await api('POST', '/api/hosts', body);
      edit(null); load();
      flash('Host saved.', 'info');
    } catch (e) {
      const bad = showFieldErrors(e, errs);
      // Strict with nothing pinned: offer the fix right there.
      if (bad.some((f) => f.field === 'host_keys') && !body.host_keys.length) {
        errs.host_keys.append(' ', h('button', {type: 'button', id: 'host-keys-fetch', onclick: scan}, 'Fetch host key'));
      }
    }
  });
  async function load() {
    const hosts = await api('GET', '/api/hosts');
    if (admin) {
      // The vault's credentials, by name (never their secrets).
      const creds = await api('GET', '/api/credentials').catch(() => []);
      const keep = fields.credential_id.value;
      fields.credential_id.replaceChildren(h('option', {value: ''}, '—'),
        ...creds.map((c) => h('option', {value: c.id}, c.name + ' · ' + (c.kind === 'password' ? 'password' : c.fingerprint))));
      fields.credential_id.value = keep;
    }
    tbody.replaceChildren(...hosts.map((x) => h('tr', {},
      h('td', {}, x.name), h('td', {}, x.username + '@' + x.hostname + ':' + x.port), h('td', {}, x.auth_method + (x.key_path ? ' · ' + x.key_path : '')),
      h('td', {}, x.host_key_policy + ' · ' + x.host_keys.length + ' pinned'),
      h('td', {class: 'labels'}, labelText(x.labels)),
      admin && h('td', {class: 'row-actions'}, [
        h('button', {onclick: () => edit(x)}, 'Edit'),
        h('button', {class: 'danger', onclick: async () => {
          if (!confirm('Delete host ' + x.name + '? Its recorded sessions stay.')) return;
          try { await api('DELETE', '/api/hosts/' + x.id); load(); } catch (e) { flash(e.message); }
        }}, 'Delete')]))));
  }
  view.append(h('h2', {}, 'Hosts'), h('table', {id: 'hosts-table'}, h('thead', {}, h('tr', {}, h('th', {}, 'Name'), h('th', {}, 'Target'), h('th', {}, 'Credentials'), h('th', {}, 'Host key'), h('th', {}, 'Labels'), admin ? h('th') : null)), tbody),
    ...(admin ? [h('h2', {class: 'section-title'}, 'Add or edit a host'), form, accountsCard] : [readOnlyNote('hosts')]));
  await load();
}

// ---- saved tasks and scripts --------------------------------------------

function libraryView(kind) {
  const isTask = kind === 'tasks';
  const cols = isTask ? ['name', 'label', 'command', 'description'] : ['name', 'description', 'body'];
  return async (view) => {
    const admin = app.me && app.me.is_admin;
    const tbody = h('tbody');
    const fields = {}; const errs = {};
    let editing = null;
    const row = (name, el) => {
      el.id = kind + '-' + name; fields[name] = el;
      errs[name] = h('span', {class: 'field-error', id: kind + '-' + name + '-error', role: 'alert'});
      return [h('label', {for: el.id}, name[0].toUpperCase() + name.slice(1)), el, errs[name]];
    };
    const form = h('form', {class: 'form-grid card', id: kind + '-form', novalidate: true},
      row('name', h('input', {placeholder: isTask ? 'restart_app' : 'deploy'})),
      isTask ? row('label', h('input', {placeholder: 'Restart the app'})) : [],
      isTask ? row('command', h('input', {placeholder: 'sudo systemctl restart {{unit}}'})) : [],
      isTask ? row('params', h('textarea', {rows: 2, placeholder: 'unit=[a-z0-9@._-]+   (one parameter a line: name=pattern; {{name}} in the command)'})) : [],
      row('description', h('input', {})),
      isTask ? [] : row('body', h('textarea', {rows: 6, placeholder: '# one command a step\ncd /srv/app\ngit pull\n./deploy.sh'})),
      h('span'), h('div', {class: 'row-actions'}, h('button', {class: 'primary', type: 'submit', id: kind + '-save'}, 'Save'),
        h('button', {type: 'button', onclick: () => edit(null)}, 'New')), h('span'));
    function edit(item) {
      editing = item ? item.id : null;
      for (const c of cols) { fields[c].value = item ? item[c] : ''; errs[c].textContent = ''; }
      if (isTask) { fields.params.value = item ? item.params.map((p) => p.name + '=' + p.pattern).join('\n') : ''; errs.params.textContent = ''; }
      flash(null);
    }
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      for (const c of cols) errs[c].textContent = '';
      const body = {};
      for (const c of cols) body[c] = fields[c].value;
      if (isTask) {
        body.params = fields.params.value.split('\n').map((l) => l.trim()).filter(Boolean).map((l) => {
          const i = l.indexOf('=');
          return i < 0 ? {name: l, pattern: ''} : {name: l.slice(0, i).trim(), pattern: l.slice(i + 1).trim()};
        });
        errs.params.textContent = '';
      }
      try {
        if (editing) await api('PUT', '/api/' + kind + '/' + editing, body); else await api('POST', '/api/' + kind, body);
        edit(null); load(); flash('Saved.', 'info');
      } catch (e) { showFieldErrors(e, errs); }
    });
    async function load() {
      const items = await api('GET', '/api/' + kind);
      tbody.replaceChildren(...items.map((x) => h('tr', {},
        h('td', {}, x.name), h('td', {}, isTask ? (x.label || '') : (x.steps + ' steps')),
        h('td', {}, h('pre', {class: 'runout'}, isTask ? x.command : x.body)), h('td', {}, x.description),
        admin && h('td', {class: 'row-actions'}, [h('button', {onclick: () => edit(x)}, 'Edit'),
          h('button', {class: 'danger', onclick: async () => {
            if (!confirm('Delete ' + x.name + '?')) return;
            try { await api('DELETE', '/api/' + kind + '/' + x.id); load(); } catch (e) { flash(e.message); }
          }}, 'Delete')]))));
    }
    view.append(h('h2', {}, isTask ? 'Saved tasks' : 'Batch scripts'),
      h('p', {class: 'muted'}, isTask ? 'A task is one command with a name; run it from the console, or on many hosts as a job (with its parameters).' : 'One command a step (if … fi, loops and functions may span lines); # comments; cd, export and functions carry over; the batch stops at the first failing step.'),
      h('table', {id: kind + '-table'}, h('thead', {}, h('tr', {}, h('th', {}, 'Name'), h('th', {}, isTask ? 'Label' : 'Steps'), h('th', {}, isTask ? 'Command' : 'Script'), h('th', {}, 'Description'), admin ? h('th') : null)), tbody),
      ...(admin ? [h('h2', {class: 'section-title'}, 'Add or edit'), form] : [readOnlyNote(isTask ? 'tasks' : 'scripts')]));
    await load();
  };
}

// ---- logs and replay -----------------------------------------------------

const LOGS_PAGE = 25;

// A date input's day, as the instant its local midnight starts (`days`
// later for an end of range).
function dayStart(value, days) {
  const d = new Date(value + 'T00:00');
  d.setDate(d.getDate() + (days || 0));
  return d.toISOString();
}

async function copyText(text, button) {
  try {
    await navigator.clipboard.writeText(text);
    button.textContent = 'Copied';
  } catch (_) {
    // No clipboard (an insecure origin): show the link, selected.
    const field = h('input', {type: 'text', readonly: true, value: text, class: 'copy-field', 'aria-label': 'Link'});
    button.replaceWith(field);
    field.select();
  }
}

// One session's actions in the list: its link, in a new tab too, and
// back to it while it is live.
function sessionActions(s) {
  const url = location.origin + '/logs/' + s.id;
  const live = ['pending', 'connecting', 'open'].includes(s.status);
  const mine = app.me && s.owner === app.me.username;
  const copy = h('button', {class: 'copy-link', 'data-url': url, title: 'Copy a link to this session'}, 'Copy link');
  copy.addEventListener('click', () => copyText(url, copy));
  return h('td', {}, h('div', {class: 'row-actions'}, copy,
    h('a', {href: '/logs/' + s.id, target: '_blank', rel: 'noopener', class: 'open-tab', title: 'Open in a new tab'}, 'New tab ↗'),
    live && mine ? h('a', {href: '/?session=' + s.id, 'data-link': true, class: 'attach'}, 'Attach') : null,
    live && !mine && app.me && app.me.is_admin ? h('a', {href: '/?watch=' + s.id, 'data-link': true, class: 'watch'}, 'Watch') : null));
}

async function logsView(view) {
  const admin = app.me && app.me.is_admin;
  const [hosts, users] = await Promise.all([api('GET', '/api/hosts'), admin ? api('GET', '/api/users') : []]);
  const status = h('select', {id: 'logs-filter', 'aria-label': 'Status'}, h('option', {value: 'all'}, 'All'),
    h('option', {value: 'live'}, 'Live'), h('option', {value: 'finished'}, 'Finished'),
    ['closed', 'failed', 'lost', 'rejected'].map((x) => h('option', {value: x}, x[0].toUpperCase() + x.slice(1))));
  const host = h('select', {id: 'logs-host', 'aria-label': 'Host'}, h('option', {value: ''}, 'All hosts'),
    hosts.map((x) => h('option', {value: x.id}, x.name)));
  const owner = admin ? h('select', {id: 'logs-owner', 'aria-label': 'User'}, h('option', {value: ''}, 'Everyone'),
    users.map((u) => h('option', {value: u.username}, u.username))) : null;
  const from = h('input', {type: 'date', id: 'logs-from', 'aria-label': 'From'});
  const to = h('input', {type: 'date', id: 'logs-to', 'aria-label': 'To'});
  const search = h('input', {type: 'search', id: 'logs-search', placeholder: 'Search run commands', 'aria-label': 'Search run commands', maxlength: 200});
  const newer = h('button', {id: 'logs-newer', disabled: true}, '← Newer');
  const older = h('button', {id: 'logs-older', disabled: true}, 'Older →');
  const pageInfo = h('span', {class: 'muted', id: 'logs-page'});
  const tbody = h('tbody');
  const jobRows = h('tbody');
  // The `before` cursor of each page on the way here: page 1 has none.
  let cursors = [null];
  async function load() {
    const q = new URLSearchParams({status: status.value, limit: String(LOGS_PAGE + 1)});
    if (host.value) q.set('host', host.value);
    if (owner && owner.value) q.set('owner', owner.value);
    if (from.value) q.set('from', dayStart(from.value));
    if (to.value) q.set('to', dayStart(to.value, 1));
    if (search.value.trim()) q.set('q', search.value.trim());
    const before = cursors[cursors.length - 1];
    if (before) q.set('before', before);
    let list;
    try { list = await api('GET', '/api/sessions?' + q); } catch (e) { flash(e.message); return; }
    const more = list.length > LOGS_PAGE;
    list = list.slice(0, LOGS_PAGE);
    older.disabled = !more; newer.disabled = cursors.length < 2;
    older.dataset.next = more ? list[list.length - 1].id : '';
    pageInfo.textContent = list.length ? 'Page ' + cursors.length : 'No session matches.';
    tbody.replaceChildren(...list.flatMap((s) => [
      h('tr', {'data-session': s.id}, h('td', {}, h('a', {href: '/logs/' + s.id, 'data-link': true}, when(s.created_at))), h('td', {}, s.host_name || ''), h('td', {}, s.owner),
        h('td', {class: statusClass(s.status)}, s.status + (s.error ? ' — ' + s.error : '')), h('td', {}, s.runner || ''), h('td', {}, String(s.runs.length)), sessionActions(s)),
      ...s.runs.map((r) => h('tr', {class: 'run-row'}, h('td'), h('td', {colspan: 2}, r.kind + ': ' + r.command),
        h('td', {class: statusClass(r.status)}, r.status + (r.exit_code != null ? ' · exit ' + r.exit_code : '') + (r.failed_step ? ' · step ' + r.failed_step : '')),
        h('td', {}, duration(r.duration_ms)), h('td', {colspan: 2}, h('pre', {class: 'runout'}, r.output_tail || '')))),
    ]));
    bindLinks(tbody);
  }
  const restart = () => { cursors = [null]; load(); };
  for (const el of [status, host, owner, from, to]) if (el) el.addEventListener('change', restart);
  let typing = null;
  search.addEventListener('input', () => { clearTimeout(typing); typing = setTimeout(restart, 300); });
  older.addEventListener('click', () => { if (older.dataset.next) { cursors.push(older.dataset.next); load(); } });
  newer.addEventListener('click', () => { if (cursors.length > 1) { cursors.pop(); load(); } });
  view.append(h('div', {class: 'toolbar'}, h('h2', {}, 'Logs'), status, host, owner, h('label', {for: 'logs-from'}, 'From'), from,
    h('label', {for: 'logs-to'}, 'to'), to, search),
    h('table', {id: 'logs-table'}, h('thead', {}, h('tr', {}, h('th', {}, 'Started'), h('th', {}, 'Host'), h('th', {}, 'Owner'), h('th', {}, 'Status'), h('th', {}, 'Runner'), h('th', {}, 'Runs'), h('th'))), tbody),
    h('div', {class: 'toolbar pager'}, newer, pageInfo, older),
    h('h2', {class: 'section-title'}, 'Jobs'), h('p', {class: 'muted'}, 'Each job host runs in a session of its own, recorded like any other; ',
      h('a', {href: '/jobs', 'data-link': true}, 'all jobs'), '.'),
    h('table', {id: 'logs-jobs'}, h('thead', {}, h('tr', {}, h('th', {}, 'Started'), h('th', {}, 'What'), h('th', {}, 'Owner'), h('th', {}, 'Status'), h('th', {}, 'Hosts'))), jobRows));
  app.cleanup = () => clearTimeout(typing);
  await Promise.all([load(), jobHistory(jobRows, 10)]);
}

function statusClass(s) {
  return ['ok', 'closed', 'open'].includes(s) ? 'status-ok' : ['running', 'queued', 'pending', 'connecting'].includes(s) ? 'status-busy' : 'status-bad';
}

// The recording comes in pages (GET …/recording/events) and each page is
// written to xterm.js before the next is asked for, waiting on write
// callbacks: a multi-GB recording never sits in the page, and the tab
// stays responsive while it plays.
async function replayView(view, params, id) {
  const s = await api('GET', '/api/sessions/' + id);
  const termBox = h('div', {class: 'term replay', id: 'terminal'});
  const play = h('button', {id: 'replay-play'}, 'Play in real time');
  const progress = h('span', {class: 'muted', id: 'replay-progress'});
  view.append(h('div', {class: 'toolbar'}, h('h2', {}, 'Session on ' + (s.host_name || '?') + ' · ' + when(s.created_at)),
    h('span', {class: 'badge'}, s.status.toUpperCase()), play, progress,
    h('a', {href: '/api/sessions/' + id + '/recording', download: 'shellway-' + id + '.cast', id: 'replay-download'}, 'Download asciicast')), termBox);
  const {term} = makeTerminal(termBox, true);
  let run = 0; // a new playback (or leaving the page) ends the one before
  let timer = null;
  const written = (data) => new Promise((resolve) => term.write(data, resolve));
  const pause = (ms) => new Promise((resolve) => { timer = setTimeout(resolve, ms); });
  const page = (after) => api('GET', '/api/sessions/' + id + '/recording/events?limit=500' + (after ? '&after=' + encodeURIComponent(after) : ''));
  async function playback(realTime) {
    const mine = ++run;
    clearTimeout(timer);
    term.reset(); term.resize(s.cols, s.rows); progress.textContent = '';
    let last = 0; let bytes = 0; let next = page('');
    for (;;) {
      const p = await next;
      if (mine !== run) return;
      // Ask for the next page while this one is written.
      next = p.done ? null : page(p.next);
      if (next) next.catch(() => {});
      let pending = null;
      for (const [t, code, data] of p.events) {
        if (realTime && t > last) {
          if (pending) await pending;
          await pause(Math.min(1000, (t - last) * 1000));
          if (mine !== run) return;
        }
        last = Math.max(last, t);
        if (code === 'o') { pending = written(data); bytes += data.length; }
        else if (code === 'r') {
          const [cols, rows] = data.split('x').map(Number);
          if (cols > 0 && rows > 0) term.resize(cols, rows);
        }
      }
      if (pending) await pending;
      if (mine !== run) return;
      progress.textContent = (bytes / 1e6).toFixed(1) + ' MB' + (p.done ? '' : '…');
      if (p.done) { progress.textContent += ' · end of recording'; return; }
    }
  }
  const start = (realTime) => playback(realTime).catch((e) => { if (e.status !== 401) flash(e.message); });
  play.addEventListener('click', () => start(true));
  start(false);
  app.cleanup = () => { run++; clearTimeout(timer); term.dispose(); };
}

// ---- live monitor (admins) ----------------------------------------------

async function monitorView(view) {
  const tbody = h('tbody');
  async function load() {
    const list = await api('GET', '/api/sessions?status=live&limit=200');
    tbody.replaceChildren(...list.map((s) => h('tr', {},
      h('td', {}, s.host_name || ''), h('td', {}, s.owner), h('td', {}, s.runner || ''), h('td', {}, when(s.created_at)),
      h('td', {}, (s.viewers || []).map((v) => v.user + ' (' + v.mode + ')').join(', ') || '—'),
      h('td', {class: 'row-actions'},
        h('a', {href: '/?watch=' + s.id, 'data-link': true}, 'Watch'),
        h('button', {class: 'danger', onclick: async () => {
          if (!confirm('End the session on ' + (s.host_name || '?') + ' of ' + s.owner + ' for everyone?')) return;
          try { await api('DELETE', '/api/sessions/' + s.id); flash('Session ended.', 'info'); setTimeout(load, 500); } catch (e) { flash(e.message); }
        }}, 'End session')))));
    bindLinks(tbody);
  }
  view.append(h('div', {class: 'toolbar'}, h('h2', {}, 'Live sessions'), h('button', {onclick: load}, 'Refresh')),
    h('table', {id: 'monitor-table'}, h('thead', {}, h('tr', {}, h('th', {}, 'Host'), h('th', {}, 'Owner'), h('th', {}, 'Runner'), h('th', {}, 'Started'), h('th', {}, 'Viewers'), h('th'))), tbody));
  await load();
  const timer = setInterval(load, 5000);
  app.cleanup = () => clearInterval(timer);
}

// ---- users and sign-in protection (admins) -------------------------------

async function usersView(view) {
  const tbody = h('tbody');
  const throttles = h('tbody');
  const fields = {
    username: h('input', {id: 'user-username', autocomplete: 'off', required: true}),
    password: h('input', {id: 'user-password', type: 'password', autocomplete: 'new-password', required: true}),
  };
  const role = h('select', {id: 'user-role'}, ['user', 'auditor', 'admin'].map((r) => h('option', {value: r}, r)));
  const errs = {};
  const row = (name, label) => {
    errs[name] = h('span', {class: 'field-error', id: 'user-' + name + '-error', role: 'alert'});
    return [h('label', {for: fields[name].id}, label), fields[name], errs[name]];
  };
  const form = h('form', {class: 'form-grid card', id: 'user-form', novalidate: true},
    row('username', 'Username'), row('password', 'Password (12+ characters)'),
    h('label', {for: 'user-role'}, 'Role'), h('div', {}, role), h('span'),
    h('span'), h('div', {class: 'row-actions'}, h('button', {class: 'primary', type: 'submit', id: 'user-create'}, 'Create user')), h('span'));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    for (const e of Object.values(errs)) e.textContent = '';
    try {
      await api('POST', '/api/users', {username: fields.username.value.trim(), password: fields.password.value, role: role.value});
      flash('User ' + fields.username.value.trim() + ' created.', 'info');
      fields.username.value = ''; fields.password.value = ''; role.value = 'user';
      load();
    } catch (e) { if (e.field && errs[e.field]) errs[e.field].textContent = e.message; else flash(e.message); }
  });
  const act = (what, fn) => async () => {
    try { await fn(); flash(what, 'info'); load(); } catch (e) { flash(e.message); }
  };
  function actions(u) {
    if (app.me && u.id === app.me.id) return h('span', {class: 'muted'}, 'you');
    return [
      h('button', {class: 'user-toggle', onclick: act(u.username + (u.disabled ? ' enabled.' : ' disabled; their sessions ended.'),
        () => api('PUT', '/api/users/' + u.id, {disabled: !u.disabled}))}, u.disabled ? 'Enable' : 'Disable'),
      h('select', {class: 'user-role', 'aria-label': 'Role of ' + u.username, onchange: (ev) =>
        act(u.username + ' is now ' + ev.target.value + '.', () => api('PUT', '/api/users/' + u.id, {role: ev.target.value}))()},
      ['user', 'auditor', 'admin'].map((r) => h('option', {value: r, selected: r === u.role}, r))),
      h('button', {onclick: async () => {
        const pw = prompt('New password for ' + u.username + ' (12 characters or more). Their sign-ins end.');
        if (pw) await act('Password of ' + u.username + ' changed.', () => api('PUT', '/api/users/' + u.id, {password: pw}))();
      }}, 'Set password'),
      h('button', {class: 'danger user-delete', onclick: async () => {
        if (!confirm('Delete ' + u.username + '? Their sessions end; recordings and the audit trail keep their name.')) return;
        await act(u.username + ' deleted.', () => api('DELETE', '/api/users/' + u.id))();
      }}, 'Delete'),
    ];
  }
  async function load() {
    const [users, blocked, groups] = await Promise.all([api('GET', '/api/users'), api('GET', '/api/login-throttles'), api('GET', '/api/groups')]);
    const groupName = new Map(groups.map((g) => [g.id, g.name]));
    tbody.replaceChildren(...users.map((u) => h('tr', {'data-user': u.username},
      h('td', {}, u.username), h('td', {}, u.role), h('td', {}, (u.groups || []).map((g) => groupName.get(g) || g).join(', ')),
      h('td', {class: u.disabled ? 'status-bad' : 'status-ok'}, u.disabled ? 'disabled' : 'active'),
      h('td', {}, when(u.created_at)), h('td', {class: 'row-actions'}, actions(u)))));
    throttles.replaceChildren(...(blocked.length ? blocked.map((t) => h('tr', {'data-throttle': t.kind + ':' + t.key},
      h('td', {}, t.kind), h('td', {}, t.key), h('td', {}, String(t.failures)),
      h('td', {}, t.blocked_until && new Date(t.blocked_until) > new Date() ? when(t.blocked_until) : 'next failure'),
      h('td', {class: 'row-actions'}, h('button', {onclick: act('Cleared ' + t.key + '.',
        () => api('DELETE', '/api/login-throttles/' + t.kind + '/' + encodeURIComponent(t.key)))}, 'Clear')))) :
      [h('tr', {}, h('td', {colspan: 5, class: 'muted'}, 'Nobody is throttled.'))]));
  }
  view.append(h('div', {class: 'toolbar'}, h('h2', {}, 'Users'), h('button', {onclick: load}, 'Refresh')),
    h('table', {id: 'users-table'}, h('thead', {}, h('tr', {}, h('th', {}, 'Username'), h('th', {}, 'Role'), h('th', {}, 'Groups'), h('th', {}, 'State'), h('th', {}, 'Created'), h('th'))), tbody),
    h('h2', {class: 'section-title'}, 'Add a user'), form,
    h('section', {class: 'card section-title', id: 'throttles'}, h('h3', {}, 'Sign-in protection'),
      h('p', {class: 'muted'}, 'After 5 failed sign-ins for a username or from an address, each further try waits 1 s, 2 s, 4 s … up to a minute. Clear one to let a locked-out colleague in at once.'),
      h('table', {id: 'throttles-table'}, h('thead', {}, h('tr', {}, h('th', {}, 'Kind'), h('th', {}, 'Username or address'), h('th', {}, 'Failures'), h('th', {}, 'Blocked until'), h('th'))), throttles)));
  await load();
}

// ---- groups and grants (admins) ------------------------------------------

async function groupsView(view) {
  const tbody = h('tbody');
  const name = h('input', {id: 'group-name', placeholder: 'web-ops', 'aria-label': 'Group name'});
  const members = h('select', {id: 'group-members', multiple: true, 'aria-label': 'Members'});
  let editing = null;
  const save = h('button', {class: 'primary', id: 'group-save', onclick: async () => {
    const body = {name: name.value.trim(), members: [...members.selectedOptions].map((o) => o.value)};
    try {
      if (editing) await api('PUT', '/api/groups/' + editing, body); else await api('POST', '/api/groups', body);
      flash('Group saved.', 'info'); editing = null; name.value = ''; save.textContent = 'Create group'; load();
    } catch (e) { flash(e.message); }
  }}, 'Create group');
  async function load() {
    const [groups, users] = await Promise.all([api('GET', '/api/groups'), api('GET', '/api/users')]);
    const userName = new Map(users.map((u) => [u.id, u.username]));
    members.replaceChildren(...users.map((u) => h('option', {value: u.id}, u.username)));
    tbody.replaceChildren(...groups.map((g) => h('tr', {'data-group': g.name},
      h('td', {}, g.name), h('td', {}, g.members.map((m) => userName.get(m) || m).join(', ') || '—'),
      h('td', {class: 'row-actions'},
        h('button', {onclick: () => {
          editing = g.id; name.value = g.name; save.textContent = 'Update group';
          for (const o of members.options) o.selected = g.members.includes(o.value);
        }}, 'Edit'),
        h('button', {class: 'danger', onclick: async () => {
          if (!confirm('Delete group ' + g.name + '? Its grants go with it; sessions they allowed end.')) return;
          try { await api('DELETE', '/api/groups/' + g.id); load(); } catch (e) { flash(e.message); }
        }}, 'Delete')))));
  }
  view.append(h('div', {class: 'toolbar'}, h('h2', {}, 'Groups'), h('button', {onclick: load}, 'Refresh')),
    h('table', {id: 'groups-table'}, h('thead', {}, h('tr', {}, h('th', {}, 'Name'), h('th', {}, 'Members'), h('th'))), tbody),
    h('h2', {class: 'section-title'}, 'Add or edit a group'),
    h('div', {class: 'card'}, h('div', {class: 'toolbar'}, name, save), members,
      h('p', {class: 'muted'}, 'Ctrl-click to pick several members. Members who leave lose the sessions the group\'s grants allowed.')));
  await load();
}

// ---- credential vault (admins) ---------------------------------------------

// Secrets go up once and never come back: the list shows kind, fingerprint
// and the accounts using each (docs/vault.md).
async function credentialsView(view) {
  const tbody = h('tbody');
  const name = h('input', {id: 'cred-name', placeholder: 'deploy-key', 'aria-label': 'Credential name'});
  const kind = h('select', {id: 'cred-kind', 'aria-label': 'Kind'},
    h('option', {value: 'private_key'}, 'private key'), h('option', {value: 'password'}, 'password'));
  const key = h('textarea', {id: 'cred-key', rows: 6, placeholder: '-----BEGIN OPENSSH PRIVATE KEY-----', 'aria-label': 'Private key', autocomplete: 'off', spellcheck: 'false'});
  const password = h('input', {id: 'cred-password', type: 'password', 'aria-label': 'Password', autocomplete: 'new-password', hidden: true});
  const passphrase = h('input', {id: 'cred-passphrase', type: 'password', placeholder: 'passphrase (if the key has one)', 'aria-label': 'Passphrase', autocomplete: 'off'});
  const showKind = () => {
    const isKey = kind.value === 'private_key';
    key.hidden = !isKey; passphrase.hidden = !isKey; password.hidden = isKey;
  };
  kind.addEventListener('change', showKind);
  const save = h('button', {class: 'primary', id: 'cred-save', onclick: async () => {
    const isKey = kind.value === 'private_key';
    const body = {name: name.value.trim(), kind: kind.value, secret: isKey ? key.value : password.value};
    if (isKey && passphrase.value) body.passphrase = passphrase.value;
    try {
      const c = await api('POST', '/api/credentials', body);
      flash('Stored ' + c.name + (c.fingerprint ? ' (' + c.fingerprint + ')' : '') + '.', 'info');
      name.value = ''; key.value = ''; password.value = ''; passphrase.value = '';
      load();
    } catch (e) { flash(e.message); }
  }}, 'Store credential');
  // Rotation: after the operator gives the runners the new identity and
  // the proxy the new recipient, a runner re-seals what is on the old key.
  const rotate = h('button', {id: 'cred-rotate', onclick: async () => {
    if (!confirm('Re-seal every credential on an old key to the runners\' current key?')) return;
    rotate.disabled = true;
    try {
      const r = await api('POST', '/api/credentials/rotate');
      flash('Re-sealed ' + r.resealed + ' credential' + (r.resealed === 1 ? '' : 's') + ' to the current key' +
        (r.already_current ? ' (' + r.already_current + ' already were)' : '') + '.', 'info');
    } catch (e) { flash(e.message); }
    rotate.disabled = false;
    load();
  }}, 'Rotate');
  async function load() {
    const list = await api('GET', '/api/credentials');
    const old = list.filter((c) => !c.current_key).length;
    rotate.textContent = old ? 'Rotate ' + old + ' to the current key' : 'Rotate';
    rotate.title = old ? old + ' sealed to an older key' : 'Every credential is sealed to the current key';
    tbody.replaceChildren(...list.map((c) => h('tr', {'data-credential': c.name},
      h('td', {}, c.name), h('td', {}, c.kind === 'private_key' ? 'private key' : 'password'),
      h('td', {class: 'mono'}, c.fingerprint || '—'), h('td', {}, (c.used_by || []).join(', ') || '—'),
      h('td', {class: 'cred-key'}, c.current_key ? 'current' : 'old key'),
      h('td', {}, when(c.created_at)),
      h('td', {class: 'row-actions'}, h('button', {class: 'danger', onclick: async () => {
        if (!confirm('Delete credential ' + c.name + '?')) return;
        try { await api('DELETE', '/api/credentials/' + c.id); load(); } catch (e) { flash(e.message); }
      }}, 'Delete')))));
  }
  view.append(h('div', {class: 'toolbar'}, h('h2', {}, 'Credentials'), h('button', {onclick: load}, 'Refresh'), rotate),
    h('table', {id: 'credentials-table'}, h('thead', {}, h('tr', {}, h('th', {}, 'Name'), h('th', {}, 'Kind'),
      h('th', {}, 'Fingerprint'), h('th', {}, 'Used by'), h('th', {}, 'Sealed to'), h('th', {}, 'Created'), h('th'))), tbody),
    h('h2', {class: 'section-title'}, 'Store a credential'),
    h('div', {class: 'card'}, h('div', {class: 'toolbar'}, name, kind, save), key, password, passphrase,
      h('p', {class: 'muted'}, 'Sealed to the runners\' key before it is stored: nobody, the proxy included, can read it back. Use it in a host account with "stored key" or "password". Rotating the runners\' key: give the runners the new identity, the proxy the new recipient, then Rotate (docs/vault.md).')));
  showKind();
  await load();
}

const ACTIONS = ['shell', 'run', 'job', 'service', 'share', 'view_recordings'];

async function grantsView(view) {
  const tbody = h('tbody');
  const subject = h('select', {id: 'grant-subject', 'aria-label': 'Who'});
  const target = h('select', {id: 'grant-target', 'aria-label': 'Host'});
  const labels = h('input', {id: 'grant-labels', placeholder: 'or labels: env=prod', 'aria-label': 'Label selector'});
  const account = h('input', {id: 'grant-account', value: '*', 'aria-label': 'Account', size: 10});
  const boxes = ACTIONS.map((a) => h('input', {type: 'checkbox', id: 'grant-action-' + a, value: a, checked: a === 'shell'}));
  const from = h('input', {type: 'datetime-local', id: 'grant-not_before', 'aria-label': 'Valid from'});
  const to = h('input', {type: 'datetime-local', id: 'grant-not_after', 'aria-label': 'Valid until'});
  const errs = h('span', {class: 'field-error', id: 'grant-error', role: 'alert'});
  const create = h('button', {class: 'primary', id: 'grant-create', onclick: async () => {
    errs.textContent = '';
    const [kind, id] = subject.value.split(':');
    const sel = parseLabels(labels.value);
    const body = {
      subject: {[kind]: id},
      target: Object.keys(sel).length ? {labels: sel} : {host: target.value},
      account: account.value.trim() || '*',
      actions: boxes.filter((b) => b.checked).map((b) => b.value),
      not_before: from.value ? new Date(from.value).toISOString() : null,
      not_after: to.value ? new Date(to.value).toISOString() : null,
    };
    try { await api('POST', '/api/grants', body); flash('Granted.', 'info'); labels.value = ''; load(); } catch (e) {
      errs.textContent = (e.field ? e.field + ': ' : '') + e.message;
    }
  }}, 'Grant');
  async function load() {
    const [grants, users, groups, hosts] = await Promise.all([api('GET', '/api/grants'), api('GET', '/api/users'),
      api('GET', '/api/groups'), api('GET', '/api/hosts')]);
    const userName = new Map(users.map((u) => [u.id, u.username]));
    const groupName = new Map(groups.map((g) => [g.id, g.name]));
    const hostName = new Map(hosts.map((x) => [x.id, x.name]));
    subject.replaceChildren(...users.map((u) => h('option', {value: 'user:' + u.id}, 'user ' + u.username)),
      ...groups.map((g) => h('option', {value: 'group:' + g.id}, 'group ' + g.name)));
    target.replaceChildren(...hosts.map((x) => h('option', {value: x.id}, x.name)));
    const who = (s) => s.user ? 'user ' + (userName.get(s.user) || s.user) : 'group ' + (groupName.get(s.group) || s.group);
    const where = (t) => t.host ? (hostName.get(t.host) || t.host) : 'hosts with ' + labelText(t.labels);
    tbody.replaceChildren(...grants.map((g) => h('tr', {'data-grant': g.id},
      h('td', {}, who(g.subject)), h('td', {}, where(g.target)), h('td', {}, g.account),
      ACTIONS.map((a) => h('td', {class: 'matrix'}, g.actions.includes(a) ? '✓' : '')),
      h('td', {class: g.active ? 'status-ok' : 'status-bad'},
        (g.not_before ? when(g.not_before) : '…') + ' → ' + (g.not_after ? when(g.not_after) : '…') + (g.active ? '' : ' (not now)')),
      h('td', {class: 'row-actions'}, h('button', {class: 'danger', onclick: async () => {
        if (!confirm('Revoke this grant? Live sessions that need it end at once.')) return;
        try { await api('DELETE', '/api/grants/' + g.id); load(); } catch (e) { flash(e.message); }
      }}, 'Revoke')))));
  }
  view.append(h('div', {class: 'toolbar'}, h('h2', {}, 'Grants'), h('button', {onclick: load}, 'Refresh')),
    h('p', {class: 'muted'}, 'Who may do what on which host and account. Users see only the hosts a grant reaches.'),
    h('table', {id: 'grants-table'}, h('thead', {}, h('tr', {}, h('th', {}, 'Who'), h('th', {}, 'Hosts'), h('th', {}, 'Account'),
      ACTIONS.map((a) => h('th', {}, a)), h('th', {}, 'Valid'), h('th'))), tbody),
    h('h2', {class: 'section-title'}, 'Grant access'),
    h('div', {class: 'card', id: 'grant-form'},
      h('div', {class: 'toolbar'}, subject, target, labels, h('label', {for: 'grant-account'}, 'as'), account),
      h('div', {class: 'toolbar'}, ACTIONS.map((a, i) => h('label', {for: 'grant-action-' + a}, boxes[i], ' ' + a))),
      h('div', {class: 'toolbar'}, h('label', {for: 'grant-not_before'}, 'from'), from, h('label', {for: 'grant-not_after'}, 'until'), to, create),
      errs));
  await load();
}

// ---- my hosts: what the caller may reach ---------------------------------

async function myHostsView(view) {
  const access = await api('GET', '/api/me/access');
  const tbody = h('tbody', {}, access.hosts.map((x) => h('tr', {'data-host': x.name},
    h('td', {}, x.name), h('td', {}, x.hostname + ':' + x.port), h('td', {class: 'labels'}, labelText(x.labels)),
    h('td', {}, x.accounts.map((a) => h('div', {}, h('strong', {}, a.login), ' — ' + a.actions.join(', ')))))));
  view.append(h('h2', {}, 'My hosts'),
    h('p', {class: 'muted'}, access.role === 'auditor' ? 'Auditors read every session and recording and connect nowhere.' :
      'The hosts and accounts you may use, and what you may do as each.'),
    access.hosts.length ? h('table', {id: 'my-hosts-table'}, h('thead', {}, h('tr', {}, h('th', {}, 'Host'), h('th', {}, 'Address'), h('th', {}, 'Labels'), h('th', {}, 'Accounts'))), tbody)
      : h('p', {id: 'no-access'}, 'You have no access to any host yet; ask an administrator.'));
}

// ---- one's own account: password and API tokens ------------------------

async function accountView(view) {
  const current = h('input', {id: 'pw-current', type: 'password', autocomplete: 'current-password'});
  const next = h('input', {id: 'pw-new', type: 'password', autocomplete: 'new-password'});
  const errs = {current_password: h('span', {class: 'field-error', id: 'pw-current-error', role: 'alert'}),
    new_password: h('span', {class: 'field-error', id: 'pw-new-error', role: 'alert'})};
  const pwForm = h('form', {class: 'form-grid card', id: 'password-form', novalidate: true},
    h('label', {for: 'pw-current'}, 'Current password'), current, errs.current_password,
    h('label', {for: 'pw-new'}, 'New password (12+ characters)'), next, errs.new_password,
    h('span'), h('div', {class: 'row-actions'}, h('button', {class: 'primary', type: 'submit', id: 'pw-save'}, 'Change password')), h('span'));
  pwForm.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    for (const e of Object.values(errs)) e.textContent = '';
    try {
      await api('POST', '/api/me/password', {current_password: current.value, new_password: next.value});
      current.value = ''; next.value = '';
      flash('Password changed; your other sign-ins have ended.', 'info');
    } catch (e) { if (e.field && errs[e.field]) errs[e.field].textContent = e.message; else flash(e.message); }
  });
  const tbody = h('tbody');
  const name = h('input', {type: 'text', id: 'token-name', placeholder: 'deploy script', 'aria-label': 'Token name'});
  const expiry = h('select', {id: 'token-expiry', 'aria-label': 'Expires in'},
    [[7, '7 days'], [30, '30 days'], [90, '90 days'], [365, '1 year']].map(([d, l]) => h('option', {value: d * 86400, selected: d === 90}, l)));
  const mint = h('input', {type: 'checkbox', id: 'token-mint'});
  const secret = h('input', {type: 'text', id: 'token-secret', readonly: true, hidden: true, 'aria-label': 'New token'});
  const create = h('button', {class: 'primary', id: 'token-create', onclick: async () => {
    try {
      const t = await api('POST', '/api/tokens', {name: name.value.trim(), expires_in: Number(expiry.value), scopes: mint.checked ? ['tokens'] : []});
      secret.value = t.token; secret.hidden = false; secret.select();
      flash('Token created. Copy it now: it is not shown again.', 'info');
      name.value = ''; load();
    } catch (e) { flash(e.message); }
  }}, 'Create token');
  async function load() {
    const tokens = await api('GET', '/api/tokens');
    tbody.replaceChildren(...tokens.map((t) => h('tr', {},
      h('td', {}, t.name || '—'), h('td', {}, when(t.created_at)), h('td', {}, when(t.last_used_at) || 'never'),
      h('td', {class: t.expired ? 'status-bad' : ''}, (t.expired ? 'expired ' : '') + when(t.expires_at)),
      h('td', {}, t.scopes.join(', ')),
      h('td', {class: 'row-actions'}, h('button', {class: 'danger', onclick: async () => {
        try { await api('DELETE', '/api/tokens/' + t.id); load(); } catch (e) { flash(e.message); }
      }}, 'Revoke')))));
  }
  view.append(h('h2', {}, 'Your account · ' + (app.me ? app.me.username : '')), pwForm,
    h('h2', {class: 'section-title'}, 'API tokens'),
    h('p', {class: 'muted'}, 'Scripts send a token as Authorization: Bearer <token>. A token can create tokens only if you allow it.'),
    h('div', {class: 'toolbar'}, name, expiry, h('label', {for: 'token-mint'}, mint, ' may create tokens'), create),
    secret,
    h('table', {id: 'tokens-table'}, h('thead', {}, h('tr', {}, h('th', {}, 'Name'), h('th', {}, 'Created'), h('th', {}, 'Last used'), h('th', {}, 'Expires'), h('th', {}, 'Scopes'), h('th'))), tbody));
  await load();
}

// ---- manual --------------------------------------------------------------

async function manualView(view) {
  const html = await (await fetch('/assets/manual.html')).text();
  const search = h('input', {type: 'search', id: 'manual-search', placeholder: 'Search the manual', 'aria-label': 'Search the manual'});
  const body = h('div', {class: 'manual', id: 'manual'});
  body.innerHTML = html; // our own embedded document
  search.addEventListener('input', () => {
    const q = search.value.trim().toLowerCase();
    for (const sec of body.querySelectorAll('section')) sec.hidden = q !== '' && !sec.textContent.toLowerCase().includes(q);
  });
  view.append(h('div', {class: 'toolbar'}, h('h2', {}, 'Manual'), search), body);
}

// ---- router --------------------------------------------------------------

const routes = [
  [/^\/$/, consoleView, 'console'],
  [/^\/hosts$/, hostsView, 'hosts'],
  [/^\/tasks$/, libraryView('tasks'), 'tasks'],
  [/^\/scripts$/, libraryView('scripts'), 'scripts'],
  [/^\/jobs$/, jobsView, 'jobs'],
  [/^\/jobs\/([0-9a-f-]+)$/, jobView, 'jobs'],
  [/^\/services$/, servicesView, 'services'],
  [/^\/logs$/, logsView, 'logs'],
  [/^\/logs\/([0-9a-f-]+)$/, replayView, 'logs'],
  [/^\/monitor$/, monitorView, 'monitor'],
  [/^\/users$/, usersView, 'users'],
  [/^\/groups$/, groupsView, 'groups'],
  [/^\/grants$/, grantsView, 'grants'],
  [/^\/credentials$/, credentialsView, 'credentials'],
  [/^\/my-hosts$/, myHostsView, 'my-hosts'],
  [/^\/account$/, accountView, null],
  [/^\/manual$/, manualView, 'manual'],
  [/^\/join\/([^/]+)$/, joinView, null],
];

async function render() {
  if (app.cleanup) { try { app.cleanup(); } catch (_) { /* view gone */ } app.cleanup = null; }
  flash(null);
  const view = $('#view');
  view.replaceChildren();
  const path = location.pathname;
  const params = new URLSearchParams(location.search);
  for (const a of document.querySelectorAll('[data-nav]')) a.classList.toggle('active', false);
  for (const [re, fn, nav] of routes) {
    const m = path.match(re);
    if (!m) continue;
    const link = nav && document.querySelector('[data-nav="' + nav + '"]');
    if (link) link.classList.add('active');
    try { await fn(view, params, ...m.slice(1)); } catch (e) { flash(e.message); }
    return;
  }
  view.append(h('p', {}, 'No such page.'));
}

function bindLinks(root) {
  for (const a of root.querySelectorAll('a[data-link]')) {
    a.addEventListener('click', (e) => {
      if (e.ctrlKey || e.metaKey || e.shiftKey) return;
      e.preventDefault();
      history.pushState(null, '', a.getAttribute('href'));
      render();
    });
  }
}

async function start() {
  try {
    const me = await api('GET', '/api/me');
    app.me = me.user || me; app.csrf = me.csrf_token || null;
    $('#me').textContent = app.me.username;
    $('#nav-monitor').hidden = !app.me.is_admin;
    $('#nav-users').hidden = !app.me.is_admin;
    $('#nav-groups').hidden = !app.me.is_admin;
    $('#nav-my-hosts').hidden = app.me.is_admin;
    $('#nav-grants').hidden = !app.me.is_admin;
    $('#nav-credentials').hidden = !app.me.is_admin;
  } catch (e) { return; }
  $('#logout').addEventListener('click', async () => {
    try { await api('POST', '/api/logout', {}); } catch (_) { /* signed out anyway */ }
    location.href = '/login';
  });
  bindLinks(document);
  window.addEventListener('popstate', render);
  render();
}

start();
