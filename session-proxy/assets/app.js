// Shellway web console. One page app, no build step: the proxy serves this
// file as is. Views: console, hosts, logs (+ replay), live monitor, join,
// users (admins), account, manual. Protocol: docs/protocol.md. It runs
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
    if (c == null) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

class ApiError extends Error {
  constructor(status, body) {
    const e = (body && body.error) || {};
    super(e.message || ('request failed (' + status + ')'));
    this.status = status; this.code = e.code; this.field = e.field;
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
// is skipped ahead to a snapshot of the screen. Acks go out when drawing
// has caught up, or every ACK_EVERY bytes while it has not.
const ACK_EVERY = 64 * 1024;

class Session {
  // path: /ws/sessions/<id>?… or /ws/join/<token>; on: event handlers.
  constructor(path, term, on) {
    this.path = path; this.term = term; this.on = on;
    this.lastSeq = 0; this.closedByUs = false; this.ended = false; this.retry = 0;
    this.pending = 0; // bytes handed to xterm.js and not drawn yet
    this.unacked = 0; // bytes drawn and not acknowledged yet
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
      // The screen as it is now, in place of everything before it: ESC c
      // resets the terminal in order with what is still being drawn.
      this.lastSeq = Math.max(this.lastSeq, ev.seq);
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

  // Hands output up to `seq` to xterm.js; acknowledges it once drawn.
  draw(data, seq, bytes = data.length) {
    this.pending += bytes;
    this.term.write(data, () => {
      this.pending -= bytes;
      this.unacked += bytes;
      if (this.pending === 0 || this.unacked >= ACK_EVERY) {
        this.unacked = 0;
        this.send({action: 'ack', seq});
      }
    });
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

// ---- console -------------------------------------------------------------

async function consoleView(view, params) {
  const hosts = await api('GET', '/api/hosts');
  const badge = h('span', {class: 'badge', id: 'badge', role: 'status', 'aria-live': 'polite'}, 'IDLE');
  const hostSel = h('select', {id: 'host', 'aria-label': 'Host'},
    hosts.map((x) => h('option', {value: x.id}, x.name + ' (' + x.username + '@' + x.hostname + ')')));
  const connectBtn = h('button', {id: 'connect', class: 'primary'}, 'Connect');
  const disconnectBtn = h('button', {id: 'disconnect', disabled: true}, 'Disconnect');
  const shareBtn = h('button', {id: 'share', disabled: true}, 'Share');
  const termBox = h('div', {class: 'term', id: 'terminal'});
  const cmd = h('input', {type: 'text', id: 'command', placeholder: 'uname -a', 'aria-label': 'Command'});
  const script = h('textarea', {id: 'script', rows: 5, placeholder: '# one command a step\ncd /srv\n./deploy.sh', 'aria-label': 'Batch script'});
  const runBtn = h('button', {id: 'run', disabled: true}, 'Run');
  const batchBtn = h('button', {id: 'run-batch', disabled: true}, 'Run batch');
  const cancelBtn = h('button', {id: 'cancel', class: 'danger', disabled: true}, 'Cancel');
  const [tasks, scripts] = await Promise.all([api('GET', '/api/tasks'), api('GET', '/api/scripts')]);
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
  const runInfo = h('div', {id: 'run-info', class: 'muted'}, 'No run yet.');
  const runOut = h('pre', {class: 'runout', id: 'run-output'});
  const presence = h('ul', {class: 'presence', id: 'presence'});
  const watchId = params.get('watch');

  view.append(h('div', {class: 'console'},
    h('section', {class: 'term-pane', 'aria-label': 'Terminal'},
      h('div', {class: 'toolbar'}, watchId ? h('span', {}, 'Watching session ' + watchId.slice(0, 8) + '… read-only') : [hostSel, connectBtn], disconnectBtn, shareBtn, badge),
      termBox),
    h('aside', {class: 'side'},
      h('div', {class: 'card'}, h('h3', {}, 'Run in this session'),
        h('div', {class: 'toolbar'}, cmd, runBtn),
        h('div', {class: 'toolbar'}, taskSel, taskBtn),
        scriptSel, script, h('div', {class: 'toolbar'}, batchBtn, cancelBtn),
        runInfo, runOut),
      h('div', {class: 'card'}, h('h3', {}, 'Who is here'), presence))));

  const {term, fit} = makeTerminal(termBox, !!watchId);
  let sess = null; let sessionId = null; let size = {cols: term.cols, rows: term.rows};
  const setBadge = (text, kind) => { badge.textContent = text; badge.className = 'badge' + (kind ? ' ' + kind : ''); };
  const setLive = (live) => {
    connectBtn.disabled = live; hostSel.disabled = live; disconnectBtn.disabled = !live;
    runBtn.disabled = !live || !!watchId; batchBtn.disabled = !live || !!watchId; shareBtn.disabled = !live || !!watchId;
    taskBtn.disabled = !live || !!watchId;
  };

  const onStatus = (status) => {
    if (status === 'open') setBadge('CONNECTED', 'ok');
    else if (status === 'connecting' || status === 'pending') setBadge('CONNECTING', 'busy');
    else { setBadge(status.toUpperCase(), status === 'closed' ? '' : 'bad'); setLive(false); }
  };
  const handlers = {
    // A status event, or (from the reconnect logic) a badge text.
    status: (ev, kind) => (typeof ev === 'string' ? setBadge(ev, kind) : onStatus(ev.status)),
    connected: (ev) => onStatus(ev.status),
    started: (ev) => { runOut.textContent = ''; runInfo.textContent = ev.command; cancelBtn.disabled = false; setBadge(ev.steps > 1 ? 'STEP 1/' + ev.steps : 'RUNNING', 'busy'); },
    progress: (ev) => { setBadge('STEP ' + ev.current + '/' + ev.total, 'busy'); runInfo.textContent = 'Step ' + ev.current + ' of ' + ev.total + ': ' + ev.step; },
    chunk: (ev) => { runOut.append(h('span', {class: ev.stream}, ev.data)); runOut.scrollTop = runOut.scrollHeight; },
    canceling: () => setBadge('CANCELING', 'busy'),
    completed: (ev) => {
      cancelBtn.disabled = true;
      let text;
      if (ev.status === 'canceled') text = 'CANCELED';
      else if (ev.exit_signal) text = 'SIGNAL ' + ev.exit_signal;
      else if (ev.exit_code != null) text = 'EXIT ' + ev.exit_code;
      else text = ev.status.toUpperCase();
      if (ev.failed_step) text += ' · STEP ' + ev.failed_step + ' FAILED';
      setBadge(text, ev.status === 'ok' ? 'ok' : 'bad');
      runInfo.textContent = runInfo.textContent + ' — ' + ev.status + (ev.duration_ms != null ? ' in ' + duration(ev.duration_ms) : '');
    },
    presence: (ev) => {
      presence.replaceChildren(...ev.viewers.map((v) => h('li', {}, v.user, h('span', {class: 'mode'}, v.mode))));
    },
    error: (ev) => { flash(errorText(ev)); if (!ev.run) setBadge('ERROR', 'bad'); },
    closed: (ev) => { flash('Session ended: ' + ev.reason + (ev.by ? ' (by ' + ev.by + ')' : ''), 'info'); setLive(false); },
  };

  function attach(path) {
    sess = new Session(path, term, handlers);
    window.shellwaySession = sess; // for tests: the live connection
    sess.connect();
    setLive(true);
    term.focus();
  }

  connectBtn.addEventListener('click', async () => {
    flash(null);
    setBadge('CONNECTING', 'busy');
    try {
      fit.fit();
      const s = await api('POST', '/api/sessions', {host_id: hostSel.value, cols: term.cols, rows: term.rows});
      sessionId = s.id;
      term.reset();
      attach(s.ws_path);
    } catch (e) { setBadge('ERROR', 'bad'); flash(e.message); }
  });
  disconnectBtn.addEventListener('click', () => {
    if (!sess) return;
    if (!watchId) sess.send({action: 'close'});
    sess.close(); setLive(false); setBadge('DISCONNECTED');
  });
  term.onData((d) => { if (sess && !watchId) sess.send({action: 'input', data: d}); });
  const onResize = () => {
    fit.fit();
    if (sess && !watchId && (term.cols !== size.cols || term.rows !== size.rows)) {
      size = {cols: term.cols, rows: term.rows};
      sess.send({action: 'resize', cols: term.cols, rows: term.rows});
    }
  };
  window.addEventListener('resize', onResize);
  const run = (body) => { if (sess) { runOut.textContent = ''; sess.send(Object.assign({action: 'run'}, body)); } };
  runBtn.addEventListener('click', () => cmd.value.trim() && run({command: cmd.value}));
  cmd.addEventListener('keydown', (e) => { if (e.key === 'Enter' && cmd.value.trim()) run({command: cmd.value}); });
  batchBtn.addEventListener('click', () => script.value.trim() &&
    run(loaded && script.value === loaded.body ? {script_id: loaded.id} : {script: script.value}));
  taskBtn.addEventListener('click', () => taskSel.value && run({task: taskSel.value}));
  cancelBtn.addEventListener('click', () => sess && sess.send({action: 'cancel'}));
  shareBtn.addEventListener('click', () => shareDialog(sessionId));

  if (watchId) {
    sessionId = watchId;
    attach('/ws/sessions/' + watchId + '?mode=view&snapshot=true');
  }
  app.cleanup = () => { window.removeEventListener('resize', onResize); if (sess) sess.close(); term.dispose(); };
}

function errorText(ev) {
  const what = {ssh: 'SSH', runtime: 'Runner', auth: 'Permission', protocol: 'Request', capacity: 'Capacity', lost: 'Connection lost'}[ev.type] || 'Error';
  return what + ': ' + ev.message;
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
  const badge = h('span', {class: 'badge busy', id: 'badge'}, 'CONNECTING');
  const termBox = h('div', {class: 'term', id: 'terminal'});
  const presence = h('ul', {class: 'presence', id: 'presence'});
  view.append(h('div', {class: 'console'},
    h('section', {class: 'term-pane'}, h('div', {class: 'toolbar'},
      h('span', {}, (info.host_name || 'session') + ' shared by ' + info.owner + ' · ' + (info.mode === 'view' ? 'view only' : 'you can type')), badge), termBox),
    h('aside', {class: 'side'}, h('div', {class: 'card'}, h('h3', {}, 'Who is here'), presence))));
  const readOnly = info.mode === 'view';
  const {term, fit} = makeTerminal(termBox, readOnly);
  const sess = new Session(info.ws_path, term, {
    connected: (ev) => { badge.textContent = ev.status === 'open' ? 'CONNECTED' : ev.status.toUpperCase(); badge.className = 'badge ok'; },
    presence: (ev) => presence.replaceChildren(...ev.viewers.map((v) => h('li', {}, v.user, h('span', {class: 'mode'}, v.mode)))),
    error: (ev) => flash(errorText(ev)),
    closed: (ev) => { badge.textContent = 'ENDED'; badge.className = 'badge bad'; flash('Disconnected: ' + ev.reason + (ev.by ? ' (by ' + ev.by + ')' : ''), 'info'); },
  });
  if (!readOnly) term.onData((d) => sess.send({action: 'input', data: d}));
  const onResize = () => fit.fit();
  window.addEventListener('resize', onResize);
  sess.connect();
  app.cleanup = () => { window.removeEventListener('resize', onResize); sess.close(); term.dispose(); };
}

// ---- hosts ---------------------------------------------------------------

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
  const form = h('form', {class: 'form-grid card', id: 'host-form', hidden: !admin, novalidate: true},
    input('name', 'Name', h('input', {required: true, placeholder: 'web1'})),
    input('hostname', 'Hostname', h('input', {required: true, placeholder: '10.0.0.5'})),
    input('port', 'Port', h('input', {type: 'number', value: '22', min: 1, max: 65535})),
    input('username', 'User', h('input', {required: true, placeholder: 'deploy'})),
    input('auth_method', 'Authentication', h('select', {}, h('option', {value: 'key_path'}, 'Key file on the runner'), h('option', {value: 'agent'}, 'Runner\'s SSH agent'))),
    input('key_path', 'Key path', h('input', {placeholder: '/keys/id_ed25519'})),
    input('host_key_policy', 'Host key policy', h('select', {}, h('option', {value: 'strict'}, 'strict — pinned keys only'), h('option', {value: 'tofu'}, 'tofu — pin the first key seen'), h('option', {value: 'off'}, 'off — accept any key (unsafe)'))),
    input('host_keys', 'Pinned host keys', h('textarea', {rows: 3, placeholder: 'ssh-ed25519 AAAA… (one a line; ssh-keyscan -t ed25519 HOST)'})),
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
    fields.name.value = host ? host.name : '';
    fields.hostname.value = host ? host.hostname : '';
    fields.port.value = host ? host.port : 22;
    fields.username.value = host ? host.username : '';
    fields.auth_method.value = host ? host.auth_method : 'key_path';
    fields.key_path.value = host && host.key_path ? host.key_path : '';
    fields.host_key_policy.value = host ? host.host_key_policy : 'strict';
    fields.host_keys.value = host ? host.host_keys.join('\n') : '';
    $('#host-save').textContent = host ? 'Update host' : 'Save host';
  }
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    for (const k of Object.keys(errs)) errs[k].textContent = '';
    flash(null);
    const body = {
      name: fields.name.value.trim(), hostname: fields.hostname.value.trim(), port: Number(fields.port.value),
      username: fields.username.value.trim(), auth_method: fields.auth_method.value,
      key_path: fields.auth_method.value === 'key_path' ? fields.key_path.value.trim() : null,
      host_key_policy: fields.host_key_policy.value,
      host_keys: fields.host_keys.value.split('\n').map((s) => s.trim()).filter(Boolean),
    };
    try {
      if (editing) await api('PUT', '/api/hosts/' + editing, body); else await api('POST', '/api/hosts', body);
      edit(null); load();
      flash('Host saved.', 'info');
    } catch (e) {
      if (e.field && errs[e.field]) errs[e.field].textContent = e.message; else flash(e.message);
    }
  });
  async function load() {
    const hosts = await api('GET', '/api/hosts');
    tbody.replaceChildren(...hosts.map((x) => h('tr', {},
      h('td', {}, x.name), h('td', {}, x.username + '@' + x.hostname + ':' + x.port), h('td', {}, x.auth_method + (x.key_path ? ' · ' + x.key_path : '')),
      h('td', {}, x.host_key_policy + ' · ' + x.host_keys.length + ' pinned'),
      h('td', {class: 'row-actions'}, admin ? [
        h('button', {onclick: () => edit(x)}, 'Edit'),
        h('button', {class: 'danger', onclick: async () => {
          if (!confirm('Delete host ' + x.name + '? Its recorded sessions stay.')) return;
          try { await api('DELETE', '/api/hosts/' + x.id); load(); } catch (e) { flash(e.message); }
        }}, 'Delete')] : ''))));
  }
  view.append(h('h2', {}, 'Hosts'), h('table', {id: 'hosts-table'}, h('thead', {}, h('tr', {}, h('th', {}, 'Name'), h('th', {}, 'Target'), h('th', {}, 'Credentials'), h('th', {}, 'Host key'), h('th'))), tbody),
    h('h2', {class: 'section-title'}, admin ? 'Add or edit a host' : ''), form,
    admin ? '' : h('p', {class: 'muted'}, 'Only administrators change hosts.'));
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
    const form = h('form', {class: 'form-grid card', id: kind + '-form', hidden: !admin, novalidate: true},
      row('name', h('input', {placeholder: isTask ? 'restart_app' : 'deploy'})),
      isTask ? row('label', h('input', {placeholder: 'Restart the app'})) : [],
      isTask ? row('command', h('input', {placeholder: 'sudo systemctl restart app'})) : [],
      row('description', h('input', {})),
      isTask ? [] : row('body', h('textarea', {rows: 6, placeholder: '# one command a step\ncd /srv/app\ngit pull\n./deploy.sh'})),
      h('span'), h('div', {class: 'row-actions'}, h('button', {class: 'primary', type: 'submit', id: kind + '-save'}, 'Save'),
        h('button', {type: 'button', onclick: () => edit(null)}, 'New')), h('span'));
    function edit(item) {
      editing = item ? item.id : null;
      for (const c of cols) { fields[c].value = item ? item[c] : ''; errs[c].textContent = ''; }
    }
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      for (const c of cols) errs[c].textContent = '';
      const body = {};
      for (const c of cols) body[c] = fields[c].value;
      try {
        if (editing) await api('PUT', '/api/' + kind + '/' + editing, body); else await api('POST', '/api/' + kind, body);
        edit(null); load(); flash('Saved.', 'info');
      } catch (e) { if (e.field && errs[e.field]) errs[e.field].textContent = e.message; else flash(e.message); }
    });
    async function load() {
      const items = await api('GET', '/api/' + kind);
      tbody.replaceChildren(...items.map((x) => h('tr', {},
        h('td', {}, x.name), h('td', {}, isTask ? (x.label || '') : (x.steps + ' steps')),
        h('td', {}, h('pre', {class: 'runout'}, isTask ? x.command : x.body)), h('td', {}, x.description),
        h('td', {class: 'row-actions'}, admin ? [h('button', {onclick: () => edit(x)}, 'Edit'),
          h('button', {class: 'danger', onclick: async () => {
            if (!confirm('Delete ' + x.name + '?')) return;
            try { await api('DELETE', '/api/' + kind + '/' + x.id); load(); } catch (e) { flash(e.message); }
          }}, 'Delete')] : ''))));
    }
    view.append(h('h2', {}, isTask ? 'Saved tasks' : 'Batch scripts'),
      h('p', {class: 'muted'}, isTask ? 'A task is one command with a name; run it from the console.' : 'One command a step (if … fi, loops and functions may span lines); # comments; cd, export and functions carry over; the batch stops at the first failing step.'),
      h('table', {id: kind + '-table'}, h('thead', {}, h('tr', {}, h('th', {}, 'Name'), h('th', {}, isTask ? 'Label' : 'Steps'), h('th', {}, isTask ? 'Command' : 'Script'), h('th', {}, 'Description'), h('th'))), tbody),
      h('h2', {class: 'section-title'}, admin ? 'Add or edit' : ''), form);
    await load();
  };
}

// ---- logs and replay -----------------------------------------------------

async function logsView(view) {
  const filter = h('select', {id: 'logs-filter', 'aria-label': 'Filter'}, h('option', {value: 'all'}, 'All'), h('option', {value: 'live'}, 'Live'), h('option', {value: 'finished'}, 'Finished'));
  const tbody = h('tbody');
  async function load() {
    const live = filter.value === 'live';
    let list = await api('GET', '/api/sessions' + (live ? '?status=live' : ''));
    if (filter.value === 'finished') list = list.filter((s) => !['pending', 'connecting', 'open'].includes(s.status));
    tbody.replaceChildren(...list.flatMap((s) => [
      h('tr', {}, h('td', {}, h('a', {href: '/logs/' + s.id, 'data-link': true}, when(s.created_at))), h('td', {}, s.host_name || ''), h('td', {}, s.owner),
        h('td', {class: statusClass(s.status)}, s.status + (s.error ? ' — ' + s.error : '')), h('td', {}, s.runner || ''), h('td', {}, String(s.runs.length))),
      ...s.runs.map((r) => h('tr', {class: 'run-row'}, h('td'), h('td', {colspan: 2}, r.kind + ': ' + r.command),
        h('td', {class: statusClass(r.status)}, r.status + (r.exit_code != null ? ' · exit ' + r.exit_code : '') + (r.failed_step ? ' · step ' + r.failed_step : '')),
        h('td', {}, duration(r.duration_ms)), h('td', {}, h('pre', {class: 'runout'}, r.output_tail || '')))),
    ]));
    bindLinks(tbody);
  }
  filter.addEventListener('change', load);
  view.append(h('div', {class: 'toolbar'}, h('h2', {}, 'Logs'), filter),
    h('table', {id: 'logs-table'}, h('thead', {}, h('tr', {}, h('th', {}, 'Started'), h('th', {}, 'Host'), h('th', {}, 'Owner'), h('th', {}, 'Status'), h('th', {}, 'Runner'), h('th', {}, 'Runs'))), tbody));
  await load();
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
    const list = await api('GET', '/api/sessions?status=live');
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
  const isAdmin = h('input', {id: 'user-is_admin', type: 'checkbox'});
  const errs = {};
  const row = (name, label) => {
    errs[name] = h('span', {class: 'field-error', id: 'user-' + name + '-error', role: 'alert'});
    return [h('label', {for: fields[name].id}, label), fields[name], errs[name]];
  };
  const form = h('form', {class: 'form-grid card', id: 'user-form', novalidate: true},
    row('username', 'Username'), row('password', 'Password (12+ characters)'),
    h('label', {for: 'user-is_admin'}, 'Administrator'), h('div', {}, isAdmin), h('span'),
    h('span'), h('div', {class: 'row-actions'}, h('button', {class: 'primary', type: 'submit', id: 'user-create'}, 'Create user')), h('span'));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    for (const e of Object.values(errs)) e.textContent = '';
    try {
      await api('POST', '/api/users', {username: fields.username.value.trim(), password: fields.password.value, is_admin: isAdmin.checked});
      flash('User ' + fields.username.value.trim() + ' created.', 'info');
      fields.username.value = ''; fields.password.value = ''; isAdmin.checked = false;
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
      h('button', {onclick: act(u.username + ' updated.', () => api('PUT', '/api/users/' + u.id, {is_admin: !u.is_admin}))},
        u.is_admin ? 'Make user' : 'Make admin'),
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
    const [users, blocked] = await Promise.all([api('GET', '/api/users'), api('GET', '/api/login-throttles')]);
    tbody.replaceChildren(...users.map((u) => h('tr', {'data-user': u.username},
      h('td', {}, u.username), h('td', {}, u.is_admin ? 'admin' : 'user'),
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
    h('table', {id: 'users-table'}, h('thead', {}, h('tr', {}, h('th', {}, 'Username'), h('th', {}, 'Role'), h('th', {}, 'State'), h('th', {}, 'Created'), h('th'))), tbody),
    h('h2', {class: 'section-title'}, 'Add a user'), form,
    h('section', {class: 'card section-title', id: 'throttles'}, h('h3', {}, 'Sign-in protection'),
      h('p', {class: 'muted'}, 'After 5 failed sign-ins for a username or from an address, each further try waits 1 s, 2 s, 4 s … up to a minute. Clear one to let a locked-out colleague in at once.'),
      h('table', {id: 'throttles-table'}, h('thead', {}, h('tr', {}, h('th', {}, 'Kind'), h('th', {}, 'Username or address'), h('th', {}, 'Failures'), h('th', {}, 'Blocked until'), h('th'))), throttles)));
  await load();
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
  [/^\/logs$/, logsView, 'logs'],
  [/^\/logs\/([0-9a-f-]+)$/, replayView, 'logs'],
  [/^\/monitor$/, monitorView, 'monitor'],
  [/^\/users$/, usersView, 'users'],
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
