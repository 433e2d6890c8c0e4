// Shellway web console: the Services page (a grid of services × hosts
// with status dots, actions on the selected cells as jobs, a feedback box
// with each host's output, logs with follow). Loaded before app.js, whose
// helpers (h, api, flash, when, copyText, showFieldErrors, labelText,
// parseLabels) it uses when its view runs.
'use strict';

const UNIT_ACTIONS = ['status', 'start', 'stop', 'restart', 'reload', 'enable', 'disable', 'logs'];
// Actions that need a second thought before they run.
const CONFIRM_ACTIONS = ['stop', 'disable'];
const STATUS_REFRESH_MS = 15000;

function dotTitle(s) {
  const parts = [s.state];
  if (s.sub_state) parts.push(s.sub_state);
  if (s.unit_file_state) parts.push(s.unit_file_state);
  if (s.main_pid) parts.push('pid ' + s.main_pid);
  if (s.since) parts.push('since ' + s.since);
  if (s.error) parts.push(s.error);
  return parts.join(' · ');
}

// A service action's per-host results (GET /api/services/{id}/actions/{job}),
// until every host has ended (or the view goes).
async function watchServiceAction(serviceId, jobId, box, alive) {
  for (;;) {
    let r;
    try { r = await api('GET', '/api/services/' + serviceId + '/actions/' + jobId); } catch (e) { box.append(h('p', {class: 'error'}, e.message)); return; }
    renderActionFeedback(r, box);
    if (r.finished || !alive()) return;
    await new Promise((done) => setTimeout(done, 500));
  }
}

function renderActionFeedback(r, box) {
  box.replaceChildren(h('p', {class: 'muted'}, r.action + ' · job ' + r.job_id.slice(-8) + (r.finished ? '' : ' · running…')),
    ...r.hosts.map((x) => h('div', {class: 'feedback-host', 'data-host': x.host_name, 'data-status': x.status},
      h('strong', {}, x.host_name + ' '),
      h('span', {class: 'badge ' + statusBadge(x.status)}, x.status + (x.exit_code != null ? ' (exit ' + x.exit_code + ')' : '')),
      x.error ? h('p', {class: 'error feedback-error'}, x.error) : null,
      h('pre', {class: 'runout'}, x.stdout || '', x.stderr ? h('span', {class: 'stderr'}, x.stderr) : null))));
}

function statusBadge(s) {
  return s === 'ok' ? 'ok' : ['queued', 'running'].includes(s) ? 'busy' : 'bad';
}

// Streams the stdout of the follow job (`/ws/jobs/{id}`: `output` frames
// per host and stream, `end` when the job is over).
function followJob(jobId, onText, onEnd) {
  const proto = location.protocol === 'https:' ? 'wss' : 'ws';
  const ws = new WebSocket(proto + '://' + location.host + '/ws/jobs/' + jobId);
  ws.onmessage = (m) => {
    let ev;
    try { ev = JSON.parse(m.data); } catch (_) { return; }
    if (ev.type === 'output' && ev.stream === 'stdout') onText(ev.data);
    else if (ev.type === 'host' && ev.host && ev.host.error) onText('\n' + ev.host.error + '\n');
    else if (ev.type === 'end') onEnd();
  };
  ws.onclose = () => onEnd();
  return ws;
}

async function servicesView(view) {
  const admin = app.me && app.me.is_admin;
  let services = [];
  const statuses = {}; // service id -> [UnitStatus]
  const selected = new Set(); // "serviceId/hostId"
  let alive = true;
  let follow = null; // {job, ws}
  const grid = h('table', {id: 'services-grid', class: 'services-grid'});
  const actionSel = h('select', {id: 'service-action'}, UNIT_ACTIONS.filter((a) => a !== 'logs').map((a) => h('option', {value: a}, a)));
  const feedback = h('div', {id: 'service-feedback', class: 'card feedback', 'aria-live': 'polite'});
  const logLines = h('input', {id: 'service-log-lines', type: 'number', min: 1, max: 5000, value: 100});
  const logOut = h('pre', {id: 'service-log', class: 'runout log-out'});
  const followBtn = h('button', {id: 'service-follow', type: 'button', onclick: toggleFollow}, 'Follow');

  function cells() {
    return [...selected].map((k) => { const [s, hst] = k.split('/'); return {service: s, host: hst}; });
  }

  function hostsOfAll() {
    const seen = new Map();
    for (const s of services) for (const x of s.hosts) seen.set(x.id, x.name);
    return [...seen.entries()].sort((a, b) => a[1].localeCompare(b[1]));
  }

  function drawGrid() {
    const hosts = hostsOfAll();
    const head = h('tr', {}, h('th', {}, 'Service'), ...hosts.map(([, name]) => h('th', {}, name)));
    const rows = services.map((s) => h('tr', {'data-service': s.name},
      h('th', {}, s.name, h('div', {class: 'muted'}, s.unit)),
      ...hosts.map(([id, name]) => {
        if (!s.hosts.some((x) => x.id === id)) return h('td', {class: 'na'}, '');
        const st = (statuses[s.id] || []).find((x) => x.host_id === id);
        const key = s.id + '/' + id;
        const box = h('input', {type: 'checkbox', class: 'cell-select', 'aria-label': s.name + ' on ' + name, checked: selected.has(key),
          onchange: (e) => { if (e.target.checked) selected.add(key); else selected.delete(key); }});
        return h('td', {class: 'cell', 'data-host': name},
          h('label', {class: 'cell-label'}, box,
            h('span', {class: 'dot ' + (st ? st.dot : 'unknown'), title: st ? dotTitle(st) : 'not polled yet', 'data-state': st ? st.state : ''}),
            h('span', {class: 'cell-state'}, st ? st.state : '…')),
          st && st.error ? h('div', {class: 'cell-error muted'}, st.error) : null);
      })));
    grid.replaceChildren(h('thead', {}, head), h('tbody', {}, rows));
  }

  // maxAge (s): dots at most that old come from the last poll (by anyone,
  // or the proxy's schedule); 0 polls the hosts now.
  async function refresh(maxAge = 0) {
    // One at a time: the first poll of a host reads every unit there, so
    // the next services find their dots fresh (a few seconds old).
    let first = true;
    for (const s of services) {
      const age = first ? maxAge : Math.max(maxAge, 5);
      first = false;
      try { statuses[s.id] = (await api('GET', '/api/services/' + s.id + '/status?max_age=' + age)).hosts; } catch (e) { statuses[s.id] = []; }
      if (!alive) return;
    }
    drawGrid();
  }

  async function load() {
    services = await api('GET', '/api/services');
    drawGrid();
    drawAdmin();
    await refresh(5);
  }

  async function act() {
    const action = actionSel.value;
    const picked = cells();
    if (!picked.length) { flash('Select cells of the grid first.'); return; }
    const bySvc = new Map();
    for (const c of picked) { if (!bySvc.has(c.service)) bySvc.set(c.service, []); bySvc.get(c.service).push(c.host); }
    const what = [...bySvc.entries()].map(([sid, hs]) => (services.find((s) => s.id === sid) || {}).name + ' on ' + hs.length + ' host(s)').join(', ');
    if (CONFIRM_ACTIONS.includes(action) && !confirm(action + ' ' + what + '?')) return;
    flash(null);
    feedback.replaceChildren();
    for (const [sid, hs] of bySvc) {
      const box = h('div', {class: 'feedback-job'});
      feedback.append(box);
      try {
        const r = await api('POST', '/api/services/' + sid + '/actions', {action, hosts: hs});
        await watchServiceAction(sid, r.job_id, box, () => alive);
      } catch (e) { box.append(h('p', {class: 'error'}, e.message)); }
    }
    refresh();
  }

  function oneCell() {
    const picked = cells();
    if (picked.length !== 1) { flash('Select exactly one cell for its logs.'); return null; }
    return picked[0];
  }

  async function showLogs() {
    const c = oneCell();
    if (!c) return;
    stopFollow();
    try {
      const r = await api('GET', '/api/services/' + c.service + '/logs?host=' + c.host + '&lines=' + (Number(logLines.value) || 100));
      logOut.textContent = r.lines.join('\n') + (r.error ? '\n' + r.error : '');
    } catch (e) { logOut.textContent = e.message; }
  }

  async function toggleFollow() {
    if (follow) { stopFollow(); return; }
    const c = oneCell();
    if (!c) return;
    try {
      const r = await api('POST', '/api/services/' + c.service + '/actions',
        {action: 'logs', follow: true, hosts: [c.host], lines: Number(logLines.value) || 100});
      logOut.textContent = '';
      follow = {job: r.job_id, ws: null};
      followBtn.textContent = 'Stop following';
      follow.ws = followJob(r.job_id, (text) => {
        logOut.append(text);
        logOut.scrollTop = logOut.scrollHeight;
      }, () => { if (follow && follow.job === r.job_id) { follow = null; followBtn.textContent = 'Follow'; } });
    } catch (e) { flash(e.message); }
  }

  function stopFollow() {
    if (!follow) return;
    const f = follow;
    follow = null;
    followBtn.textContent = 'Follow';
    if (f.ws) f.ws.close();
    // keepalive: the cancel still goes out when the page is being left.
    fetch('/api/jobs/' + f.job + '/cancel', {method: 'POST', keepalive: true, credentials: 'same-origin',
      headers: {'content-type': 'application/json', 'x-csrf-token': app.csrf || ''}, body: '{}'}).catch(() => {});
  }

  // ---- registering services (administrators) ----
  const fields = {}; const errs = {};
  let editing = null;
  const row = (name, label, el) => {
    el.id = 'service-' + name; fields[name] = el;
    errs[name] = h('span', {class: 'field-error', id: 'service-' + name + '-error', role: 'alert'});
    return [h('label', {for: el.id}, label), el, errs[name]];
  };
  const actionBoxes = UNIT_ACTIONS.map((a) => h('label', {class: 'inline'}, h('input', {type: 'checkbox', value: a, class: 'service-allow', checked: a === 'status'}), ' ' + a));
  const form = h('form', {class: 'form-grid card', id: 'service-form', novalidate: true},
    row('name', 'Name', h('input', {placeholder: 'Web server'})),
    row('unit', 'Unit', h('input', {placeholder: 'nginx.service'})),
    row('host_ids', 'Hosts', h('select', {multiple: true, size: 5})),
    row('labels', 'Or hosts labelled', h('input', {placeholder: 'role=web, env=prod'})),
    row('account', 'Account', h('input', {placeholder: 'the host\'s only account'})),
    [h('span', {}, 'Allowed actions'), h('div', {class: 'row-actions', id: 'service-actions'}, actionBoxes), errs.actions = h('span', {class: 'field-error', id: 'service-actions-error', role: 'alert'})],
    row('use_sudo', 'Use sudo -n', h('input', {type: 'checkbox'})),
    h('span'), h('div', {class: 'row-actions'}, h('button', {class: 'primary', type: 'submit', id: 'service-save'}, 'Save service'),
      h('button', {type: 'button', onclick: () => edit(null)}, 'New')), h('span'));
  const adminList = h('div', {id: 'service-list'});
  function edit(s) {
    editing = s ? s.id : null;
    for (const k of Object.keys(errs)) errs[k].textContent = '';
    fields.name.value = s ? s.name : '';
    fields.unit.value = s ? s.unit : '';
    for (const o of fields.host_ids.options) o.selected = !!s && s.host_ids.includes(o.value);
    fields.labels.value = s ? labelText(s.labels) : '';
    fields.account.value = s && s.account ? s.account : '';
    for (const b of actionBoxes) b.firstChild.checked = s ? s.actions.includes(b.firstChild.value) : b.firstChild.value === 'status';
    fields.use_sudo.checked = !!(s && s.use_sudo);
  }
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    for (const k of Object.keys(errs)) errs[k].textContent = '';
    const body = {
      name: fields.name.value, unit: fields.unit.value,
      host_ids: [...fields.host_ids.selectedOptions].map((o) => o.value),
      labels: parseLabels(fields.labels.value),
      account: fields.account.value.trim() || null,
      actions: actionBoxes.map((b) => b.firstChild).filter((c) => c.checked).map((c) => c.value),
      use_sudo: fields.use_sudo.checked,
    };
    try {
      if (editing) await api('PUT', '/api/services/' + editing, body); else await api('POST', '/api/services', body);
      edit(null); flash('Saved.', 'info'); load();
    } catch (e) { showFieldErrors(e, errs); }
  });
  function drawAdmin() {
    adminList.replaceChildren(...services.map((s) => h('section', {class: 'card service-card', 'data-service': s.name},
      h('div', {class: 'toolbar'}, h('strong', {}, s.name), h('span', {class: 'muted'}, s.unit + ' · ' + s.actions.join(', ') + (s.use_sudo ? ' · sudo -n' : '')),
        admin ? h('button', {onclick: () => edit(s)}, 'Edit') : null,
        admin ? h('button', {class: 'danger', onclick: async () => {
          if (!confirm('Delete the service ' + s.name + '?')) return;
          try { await api('DELETE', '/api/services/' + s.id); load(); } catch (e) { flash(e.message); }
        }}, 'Delete') : null),
      s.sudoers.length ? [h('p', {class: 'muted'}, 'Install on its hosts (visudo -f /etc/sudoers.d/shellway):'),
        h('pre', {class: 'runout sudoers'}, s.sudoers.join('\n')),
        (() => { const b = h('button', {class: 'copy-sudoers'}, 'Copy sudoers lines'); b.addEventListener('click', () => copyText(s.sudoers.join('\n') + '\n', b)); return b; })()] : null)));
  }

  view.append(h('div', {class: 'toolbar'}, h('h2', {}, 'Services'), h('button', {id: 'services-refresh', onclick: () => refresh(0)}, 'Refresh status')),
    h('p', {class: 'muted'}, 'Green: active · grey: inactive · red: failed · amber: changing or unreachable. Select cells, then act on them all at once.'),
    grid,
    h('div', {class: 'toolbar'}, h('label', {for: 'service-action'}, 'Action'), actionSel, h('button', {class: 'primary', id: 'service-run', onclick: act}, 'Run on selected')),
    feedback,
    h('h2', {class: 'section-title'}, 'Logs'),
    h('div', {class: 'toolbar'}, h('label', {for: 'service-log-lines'}, 'Last lines'), logLines,
      h('button', {id: 'service-logs', type: 'button', onclick: showLogs}, 'Show logs'), followBtn),
    logOut,
    h('h2', {class: 'section-title'}, 'Registered services'), adminList,
    ...(admin ? [h('h2', {class: 'section-title'}, 'Register or edit'), form] : []));
  if (admin) {
    const hosts = await api('GET', '/api/hosts');
    fields.host_ids.replaceChildren(...hosts.map((x) => h('option', {value: x.id}, x.name)));
  }
  await load();
  // Between clicks, read what the proxy's own schedule polled (it polls
  // every SHELLWAY_SERVICE_STATUS_S, 30 s by default); poll only when that
  // is older than a minute (the schedule is off, or backing off).
  const timer = setInterval(() => refresh(60), STATUS_REFRESH_MS);
  const leave = () => stopFollow();
  window.addEventListener('pagehide', leave);
  app.cleanup = () => { alive = false; clearInterval(timer); stopFollow(); window.removeEventListener('pagehide', leave); };
}
