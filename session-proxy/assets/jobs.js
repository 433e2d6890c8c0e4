// Shellway web console: jobs (one command, task or script on many hosts).
// `/jobs`: pick hosts (explicit and/or by labels, with a preview of who
// is targeted), what to run (a command, a saved task with its parameter
// form, a script) and the strategy; the job history below. `/jobs/<id>`:
// the live grid of hosts coloured by status (GET /ws/jobs/<id>), the
// grouped summary, each host's stdout and stderr apart, cancel and rerun.
// Uses app.js's helpers (h, api, flash, …), loaded after this file.
'use strict';

// Output a host pane keeps while live (the full output is a click away).
const JOB_PANE_BYTES = 64 * 1024;

function jobStatusClass(s) {
  return 'job-' + s;
}

async function jobsView(view) {
  const [hosts, tasks, scripts, groups] = await Promise.all([api('GET', '/api/hosts'), api('GET', '/api/tasks'),
    api('GET', '/api/scripts'), api('GET', '/api/host-groups')]);
  const errs = {};
  const err = (name) => (errs[name] = h('span', {class: 'field-error', id: 'job-' + name.replace(/\./g, '-') + '-error', role: 'alert'}));
  const hostList = h('div', {class: 'job-host-picks', id: 'job-hosts'}, hosts.map((x) =>
    h('label', {class: 'job-pick'}, h('input', {type: 'checkbox', value: x.id, 'data-host': x.name}), ' ' + x.name,
      Object.keys(x.labels || {}).length ? h('span', {class: 'muted'}, ' ' + labelText(x.labels)) : null)));
  const labels = h('input', {id: 'job-labels', placeholder: 'role=web, env=prod'});
  const account = h('input', {id: 'job-account', placeholder: 'the host\'s only account'});
  const group = h('select', {id: 'job-group'}, h('option', {value: ''}, '—'), groups.map((g) => h('option', {value: g.name}, g.name)));
  const preview = h('span', {id: 'job-preview', class: 'muted', role: 'status'});
  const what = h('select', {id: 'job-what'}, h('option', {value: 'command'}, 'Command'), h('option', {value: 'task'}, 'Saved task'), h('option', {value: 'script'}, 'Script'));
  const command = h('input', {id: 'job-command', placeholder: 'uptime'});
  const task = h('select', {id: 'job-task'}, tasks.map((t) => h('option', {value: t.name}, t.name + (t.label ? ' — ' + t.label : ''))));
  const script = h('select', {id: 'job-script'}, scripts.map((s) => h('option', {value: s.id}, s.name)));
  const paramBox = h('div', {id: 'job-params', class: 'job-params'});
  const strategy = h('select', {id: 'job-strategy'}, h('option', {value: 'parallel'}, 'parallel'), h('option', {value: 'rolling'}, 'rolling'));
  const concurrency = h('input', {id: 'job-concurrency', type: 'number', min: 1, max: 100, value: '10'});
  const batch = h('input', {id: 'job-batch', placeholder: '2 or 25%'});
  const maxFailures = h('input', {id: 'job-max-failures', placeholder: 'none, 1 or 10%'});
  const keepGoing = h('input', {id: 'job-keep-going', type: 'checkbox', checked: true});
  const paramInputs = {};
  function showParams() {
    const t = tasks.find((x) => x.name === task.value);
    paramBox.replaceChildren();
    for (const k of Object.keys(paramInputs)) delete paramInputs[k];
    for (const p of (t && t.params) || []) {
      const input = h('input', {id: 'job-param-' + p.name, 'data-param': p.name, placeholder: p.pattern});
      paramInputs[p.name] = input;
      paramBox.append(h('label', {for: input.id}, p.name), input, err('task.params.' + p.name),
        p.description ? h('span', {class: 'muted'}, p.description) : h('span'));
    }
  }
  function showWhat() {
    command.hidden = what.value !== 'command'; task.hidden = what.value !== 'task';
    script.hidden = what.value !== 'script'; paramBox.hidden = what.value !== 'task';
    batch.disabled = strategy.value !== 'rolling'; concurrency.disabled = strategy.value !== 'parallel';
  }
  function targets() {
    const ids = [...hostList.querySelectorAll('input:checked')].map((c) => c.value);
    const t = {};
    if (ids.length) t.host_ids = ids;
    const l = parseLabels(labels.value);
    if (Object.keys(l).length) t.labels = l;
    if (group.value) t.group = group.value;
    return t;
  }
  let previewing = 0;
  async function showPreview() {
    const mine = ++previewing;
    const t = targets();
    if (!t.host_ids && !t.labels && !t.group) { preview.textContent = 'No host chosen.'; return; }
    try {
      const body = {targets: t};
      if (account.value.trim()) body.account = account.value.trim();
      const p = await api('POST', '/api/jobs/preview', body);
      if (mine !== previewing) return;
      preview.textContent = p.count + ' host' + (p.count === 1 ? '' : 's') + (p.count ? ': ' + p.hosts.map((x) => x.name).join(', ') : '');
    } catch (e) { if (mine === previewing) preview.textContent = e.message; }
  }
  const form = h('form', {class: 'form-grid card', id: 'job-form', novalidate: true},
    h('label', {}, 'Hosts'), hostList, err('targets'),
    h('label', {for: 'job-labels'}, 'Labels'), labels, err('targets.labels'),
    h('label', {for: 'job-group'}, 'Host group'), group, err('targets.group'),
    h('label', {for: 'job-account'}, 'Account'), account, err('account'),
    h('span'), preview, h('span'),
    h('label', {for: 'job-what'}, 'Run'), h('div', {class: 'row-actions'}, what, command, task, script), err('command'),
    h('span'), paramBox, err('task.name'),
    h('label', {for: 'job-strategy'}, 'Strategy'), strategy, err('strategy'),
    h('label', {for: 'job-concurrency'}, 'Concurrency'), concurrency, err('concurrency'),
    h('label', {for: 'job-batch'}, 'Batch (rolling)'), batch, err('batch'),
    h('label', {for: 'job-max-failures'}, 'Stop after failures'), maxFailures, err('max_failures'),
    h('label', {for: 'job-keep-going'}, 'Keep going'), keepGoing, h('span'),
    h('span'), h('div', {class: 'row-actions'}, h('button', {class: 'primary', type: 'submit', id: 'job-run'}, 'Run job')), h('span'));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    for (const e of Object.values(errs)) e.textContent = '';
    const body = {targets: targets(), strategy: strategy.value, keep_going: keepGoing.checked};
    if (account.value.trim()) body.account = account.value.trim();
    if (what.value === 'command') body.command = command.value;
    if (what.value === 'task') {
      const params = {};
      for (const [k, input] of Object.entries(paramInputs)) params[k] = input.value;
      body.task = {name: task.value, params};
    }
    if (what.value === 'script') body.script_id = script.value;
    if (strategy.value === 'parallel') body.concurrency = Number(concurrency.value) || 10;
    if (strategy.value === 'rolling' && batch.value.trim()) body.batch = batch.value.trim();
    if (maxFailures.value.trim()) body.max_failures = maxFailures.value.trim();
    try {
      const r = await api('POST', '/api/jobs', body);
      history.pushState(null, '', '/jobs/' + r.id);
      render();
    } catch (e) { showFieldErrors(e, errs); }
  });
  hostList.addEventListener('change', showPreview);
  group.addEventListener('change', showPreview);
  let typing = null;
  for (const el of [labels, account]) el.addEventListener('input', () => { clearTimeout(typing); typing = setTimeout(showPreview, 300); });
  what.addEventListener('change', showWhat); strategy.addEventListener('change', showWhat); task.addEventListener('change', showParams);
  showParams(); showWhat(); showPreview();
  const history_ = h('tbody');
  view.append(h('h2', {}, 'Run a job'),
    h('p', {class: 'muted'}, 'One command, saved task or script on many hosts, each on its own SSH connection; every host\'s output is kept apart and recorded.'),
    form, h('h2', {class: 'section-title'}, 'Job history'),
    h('table', {id: 'jobs-table'}, h('thead', {}, h('tr', {}, h('th', {}, 'Started'), h('th', {}, 'What'), h('th', {}, 'Owner'), h('th', {}, 'Status'), h('th', {}, 'Hosts'))), history_));
  app.cleanup = () => clearTimeout(typing);
  await jobHistory(history_, 25);
}

// Fills `tbody` with the newest `limit` jobs.
async function jobHistory(tbody, limit) {
  const list = await api('GET', '/api/jobs?limit=' + limit);
  tbody.replaceChildren(...list.map((j) => h('tr', {'data-job': j.id},
    h('td', {}, h('a', {href: '/jobs/' + j.id, 'data-link': true}, when(j.created_at))),
    h('td', {}, j.label + (j.rerun_of ? ' (rerun)' : '')), h('td', {}, j.owner || ''),
    h('td', {class: statusClass(j.status === 'done' ? 'ok' : j.status)}, j.status),
    h('td', {}, Object.entries(j.counts).map(([k, n]) => n + ' ' + k).join(', ')))));
  bindLinks(tbody);
}

async function jobView(view, params, id) {
  let job = await api('GET', '/api/jobs/' + id);
  const tiles = new Map();
  const out = new Map(); // host id -> {stdout, stderr}
  let selected = null;
  const title = h('h2', {id: 'job-title'});
  const status = h('span', {id: 'job-status', class: 'badge'});
  const counts = h('span', {id: 'job-counts', class: 'muted'});
  const cancel = h('button', {id: 'job-cancel', class: 'danger'}, 'Cancel job');
  const rerun = h('button', {id: 'job-rerun'}, 'Rerun failed');
  const grid = h('div', {class: 'job-grid', id: 'job-grid'});
  const groups = h('div', {id: 'job-groups'});
  const paneTitle = h('h3', {id: 'job-pane-title'}, 'Select a host');
  const stdout = h('pre', {class: 'runout job-out', id: 'job-stdout'});
  const stderr = h('pre', {class: 'runout job-out', id: 'job-stderr'});
  const full = h('button', {id: 'job-full', hidden: true}, 'Load full output');
  const cancelHost = h('button', {id: 'job-cancel-host', hidden: true, class: 'danger'}, 'Cancel this host');
  function summary() {
    title.textContent = job.label;
    status.textContent = job.status;
    status.className = 'badge ' + (job.status === 'done' ? 'ok' : job.status === 'running' ? 'busy' : 'bad');
    const n = {};
    for (const t of tiles.values()) n[t.dataset.status] = (n[t.dataset.status] || 0) + 1;
    counts.textContent = Object.entries(tiles.size ? n : job.counts).map(([k, c]) => c + ' ' + k).join(' · ') + (job.rerun_of ? ' · rerun of ' + job.rerun_of.slice(-6) : '');
    cancel.disabled = job.status !== 'running';
  }
  function tile(hr) {
    let t = tiles.get(hr.host_id);
    if (!t) {
      t = h('button', {class: 'job-tile', 'data-host': hr.host_id, title: hr.host_name});
      t.addEventListener('click', () => select(hr.host_id));
      tiles.set(hr.host_id, t); grid.append(t);
    }
    t.dataset.status = hr.status;
    t.className = 'job-tile ' + jobStatusClass(hr.status) + (selected === hr.host_id ? ' selected' : '');
    t.replaceChildren(h('strong', {}, hr.host_name), h('span', {}, hr.status + (hr.exit_code != null && hr.exit_code !== 0 ? ' · exit ' + hr.exit_code : '') + (hr.exit_signal ? ' · ' + hr.exit_signal : '')));
    t.host = hr;
  }
  function buffers(host) {
    if (!out.has(host)) out.set(host, {stdout: '', stderr: ''});
    return out.get(host);
  }
  function select(host) {
    selected = host;
    for (const t of tiles.values()) t.classList.toggle('selected', t.dataset.host === host);
    const hr = tiles.get(host).host;
    const b = buffers(host);
    if (!b.stdout && hr.stdout_tail) b.stdout = hr.stdout_tail;
    if (!b.stderr && hr.stderr_tail) b.stderr = hr.stderr_tail;
    paneTitle.textContent = hr.host_name + ' — ' + hr.status + (hr.error ? ': ' + hr.error : '') + (hr.duration_ms != null ? ' · ' + duration(hr.duration_ms) : '');
    stdout.textContent = b.stdout; stderr.textContent = b.stderr;
    full.hidden = false;
    cancelHost.hidden = !['queued', 'running'].includes(hr.status);
  }
  function showGroups() {
    groups.replaceChildren(...job.groups.map((g, i) => h('div', {class: 'card job-group', 'data-group': i},
      h('strong', {class: statusClass(g.status === 'ok' ? 'ok' : 'failed')}, g.count + ' host' + (g.count === 1 ? '' : 's') + ': ' + g.status +
        (g.exit_code != null && g.status !== 'ok' ? ', exit ' + g.exit_code : '') + (g.count > 1 ? ', same output' : '')),
      g.error ? h('div', {class: 'error'}, g.error) : null,
      g.stdout_tail ? h('pre', {class: 'runout'}, g.stdout_tail) : null,
      g.stderr_tail ? h('pre', {class: 'runout error'}, g.stderr_tail) : null)));
  }
  full.addEventListener('click', async () => {
    if (!selected) return;
    const get = async (stream) => {
      const r = await fetch('/api/jobs/' + id + '/hosts/' + selected + '/output?stream=' + stream, {credentials: 'same-origin'});
      return r.ok ? r.text() : '';
    };
    const [o, e] = await Promise.all([get('stdout'), get('stderr')]);
    stdout.textContent = o; stderr.textContent = e;
  });
  cancel.addEventListener('click', async () => {
    if (!confirm('Cancel every host of this job?')) return;
    try { await api('POST', '/api/jobs/' + id + '/cancel', {}); } catch (e) { flash(e.message); }
  });
  cancelHost.addEventListener('click', async () => {
    try { await api('POST', '/api/jobs/' + id + '/hosts/' + selected + '/cancel', {}); } catch (e) { flash(e.message); }
  });
  rerun.addEventListener('click', async () => {
    try {
      const r = await api('POST', '/api/jobs/' + id + '/rerun', {hosts: 'failed'});
      history.pushState(null, '', '/jobs/' + r.id);
      render();
    } catch (e) { flash(e.message); }
  });
  summary();
  for (const hr of job.host_results) tile(hr);
  showGroups();
  view.append(h('div', {class: 'toolbar'}, title, status, counts, cancel, rerun, h('a', {href: '/jobs', 'data-link': true}, 'All jobs')),
    grid, h('h2', {class: 'section-title'}, 'Summary'), groups,
    h('div', {class: 'card job-pane'}, h('div', {class: 'toolbar'}, paneTitle, full, cancelHost),
      h('h3', {}, 'stdout'), stdout, h('h3', {}, 'stderr'), stderr));
  bindLinks(view);
  const ws = new WebSocket(location.origin.replace(/^http/, 'ws') + '/ws/jobs/' + id);
  ws.addEventListener('message', async (m) => {
    let f;
    try { f = JSON.parse(m.data); } catch (_) { return; }
    if (f.type === 'job' || f.type === 'end') {
      job = Object.assign(job, f.job); summary();
      if (f.type === 'end') {
        try { job = await api('GET', '/api/jobs/' + id); summary(); showGroups(); } catch (e) { flash(e.message); }
        grid.dataset.over = 'true';
      }
    } else if (f.type === 'host') {
      tile(f.host); summary();
      if (selected === f.host.host_id) select(selected);
    } else if (f.type === 'output') {
      const b = buffers(f.host_id);
      b[f.stream] = (b[f.stream] + f.data).slice(-JOB_PANE_BYTES);
      if (selected === f.host_id) (f.stream === 'stdout' ? stdout : stderr).textContent = b[f.stream];
    }
  });
  app.cleanup = () => ws.close();
}
