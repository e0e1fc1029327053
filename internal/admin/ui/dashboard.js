// Palisade stats dashboard: polls the admin JSON API every 2 seconds with the
// bearer token taken from the URL fragment (#token=...) or asked for once and
// kept in sessionStorage. Everything is built with DOM nodes and textContent:
// names and check reasons are never parsed as HTML.
'use strict';

(() => {
  const POLL_MS = 2000;
  const TOKEN_KEY = 'palisade.admin.token';

  let token = null;
  let paused = false;
  let timer = null;
  let inflight = false;
  let lastOK = 0;
  let prev = null; // previous sample for rates: {t, fe: {name: total}, syn: {verdict: n}}

  const $ = (id) => document.getElementById(id);

  class AuthError extends Error {
    constructor(status, msg) { super(msg); this.status = status; }
  }

  // ---- token -------------------------------------------------------------

  function loadToken() {
    const m = /(?:^#|&)token=([^&]*)/.exec(location.hash);
    if (m) {
      try { token = decodeURIComponent(m[1]); } catch (_) { token = m[1]; }
      try { sessionStorage.setItem(TOKEN_KEY, token); } catch (_) { /* storage disabled */ }
      history.replaceState(null, '', location.pathname + location.search);
      return;
    }
    try { token = sessionStorage.getItem(TOKEN_KEY); } catch (_) { token = null; }
  }

  function showLogin(reason) {
    $('login-reason').textContent = reason;
    $('login').classList.remove('hidden');
    $('main').classList.add('hidden');
    $('updated').textContent = 'token needed';
    $('token-input').focus();
  }

  function hideLogin() {
    $('login').classList.add('hidden');
    $('main').classList.remove('hidden');
  }

  // ---- fetching ------------------------------------------------------------

  async function call(method, path, body) {
    const headers = { 'Accept': 'application/json' };
    if (token) headers['Authorization'] = 'Bearer ' + token;
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    const r = await fetch(path, {
      method, headers, cache: 'no-store', credentials: 'omit',
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    let data = null;
    try { data = await r.json(); } catch (_) { /* not JSON */ }
    if (r.status === 401 || r.status === 403) {
      throw new AuthError(r.status, (data && data.error) || r.statusText);
    }
    if (!r.ok) {
      throw new Error(`${r.status} ${r.statusText}: ${(data && data.error) || 'request failed'}`);
    }
    return data;
  }

  async function refresh() {
    if (inflight) return;
    inflight = true;
    try {
      const [status, frontends, backends] = await Promise.all([
        call('GET', 'api/v1/status'), call('GET', 'api/v1/frontends'), call('GET', 'api/v1/backends'),
      ]);
      hideLogin();
      setBanner(null);
      render(status, frontends || [], backends || []);
      lastOK = Date.now();
    } catch (e) {
      if (e instanceof AuthError) {
        stop();
        showLogin(e.status === 401
          ? 'The admin API needs the token from global.admin.token_file.'
          : 'The token was refused (' + e.message + '). Enter the current one.');
        inflight = false;
        return;
      }
      setBanner('Cannot read the admin API: ' + e.message + '. Showing the last data; retrying.');
    } finally {
      inflight = false;
      tick();
    }
    schedule();
  }

  function schedule() {
    clearTimeout(timer);
    if (!paused) timer = setTimeout(refresh, POLL_MS);
  }

  function stop() { clearTimeout(timer); timer = null; }

  // ---- formatting ----------------------------------------------------------

  const nf = new Intl.NumberFormat('en-US');
  const fmtInt = (n) => nf.format(n || 0);

  function fmtBytes(n) {
    n = n || 0;
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i === 0 ? n : n.toFixed(n < 10 ? 2 : n < 100 ? 1 : 0)) + ' ' + units[i];
  }

  function fmtDuration(sec) {
    sec = Math.max(0, Math.floor(sec));
    const d = Math.floor(sec / 86400), h = Math.floor(sec % 86400 / 3600);
    const m = Math.floor(sec % 3600 / 60), s = sec % 60;
    if (d) return `${d}d ${h}h ${m}m`;
    if (h) return `${h}h ${m}m ${s}s`;
    if (m) return `${m}m ${s}s`;
    return `${s}s`;
  }

  function validTime(t) {
    if (!t) return null;
    const d = new Date(t);
    return isNaN(d) || d.getFullYear() < 2000 ? null : d;
  }

  function fmtAgo(t) {
    const d = validTime(t);
    if (!d) return '—';
    return fmtDuration((Date.now() - d.getTime()) / 1000) + ' ago';
  }

  function fmtRate(r) {
    if (r === null || r === undefined) return '—';
    return r >= 100 ? fmtInt(Math.round(r)) : r.toFixed(1);
  }

  // ---- DOM helpers ---------------------------------------------------------

  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === 'class') e.className = v;
      else if (k === 'text') e.textContent = v;
      else e.setAttribute(k, v);
    }
    for (const c of kids) {
      if (c === null || c === undefined || c === false) continue;
      e.append(c instanceof Node ? c : String(c));
    }
    return e;
  }

  const badge = (cls, text, title) => el('span', { class: 'badge ' + cls, title }, text);
  const num = (v, title) => el('td', { class: 'num', title }, v);
  const emptyRow = (cols, text) => el('tr', null, el('td', { class: 'empty', colspan: cols }, text));

  function setBanner(content) {
    const b = $('banner');
    if (!content) { b.classList.add('hidden'); b.replaceChildren(); return; }
    b.replaceChildren(content instanceof Node ? content : document.createTextNode(content));
    b.classList.remove('hidden');
  }

  // ---- rendering -----------------------------------------------------------

  function render(st, fes, bes) {
    const now = Date.now();
    const rates = { fe: {}, syn: {} };
    const sample = { t: now, fe: {}, syn: {} };
    for (const f of fes) sample.fe[f.name] = f.connections_total || 0;
    const counters = (st.synflood && st.synflood.counters) || {};
    for (const [k, v] of Object.entries(counters)) sample.syn[k] = v;
    if (prev && now > prev.t) {
      const dt = (now - prev.t) / 1000;
      for (const [k, v] of Object.entries(sample.fe)) {
        if (k in prev.fe && v >= prev.fe[k]) rates.fe[k] = (v - prev.fe[k]) / dt;
      }
      for (const [k, v] of Object.entries(sample.syn)) {
        if (k in prev.syn && v >= prev.syn[k]) rates.syn[k] = (v - prev.syn[k]) / dt;
      }
    }
    prev = sample;

    renderHeader(st);
    renderFrontends(fes, rates.fe);
    if (!(document.activeElement && document.activeElement.closest && document.activeElement.closest('#backends'))) {
      renderBackends(bes);
    }
    renderVRRP(st.vrrp || []);
    renderSynflood(st.synflood || {}, rates.syn);
  }

  function fact(label, value, title, cls) {
    return el('div', { title }, el('dt', null, label), el('dd', { class: cls }, value));
  }

  function renderHeader(st) {
    $('host').textContent = location.host || '';
    const lr = st.last_reload || {};
    const reload = lr.ok
      ? badge('ok', 'ok', validTime(lr.at) ? 'at ' + new Date(lr.at).toLocaleString() : null)
      : badge('bad', 'failed', validTime(lr.at) ? 'at ' + new Date(lr.at).toLocaleString() : null);
    const reloadDD = el('span', null, reload, ' ', el('span', { class: 'sub' }, fmtAgo(lr.at)));
    const sha = st.config_sha256 || '';
    $('facts').replaceChildren(
      fact('version', st.version || '?', `commit ${st.commit || '?'}, ${st.go_version || ''}`),
      fact('uptime', fmtDuration(st.uptime_seconds || 0),
        validTime(st.started_at) ? 'started ' + new Date(st.started_at).toLocaleString() : null),
      fact('config', sha ? sha.slice(0, 12) : '—', (st.config_file || '') + (sha ? '\nsha256 ' + sha : ''), 'mono'),
      fact('last reload', reloadDD, (lr.errors || []).join('\n') || null),
    );
    $('foot').textContent = `Palisade ${st.version || ''} · ${st.config_file || ''} · refreshed every ${POLL_MS / 1000}s`;

    if (!lr.ok && lr.errors && lr.errors.length) {
      const list = el('ul');
      for (const e of lr.errors) list.append(el('li', null, e));
      setBanner(el('div', null, el('strong', null, 'The last reload failed; the previous config is still running.'), list));
      return false;
    }
    return true;
  }

  function renderFrontends(fes, rates) {
    const body = $('frontends').tBodies[0];
    if (!fes.length) { body.replaceChildren(emptyRow(11, 'No frontends configured.')); return; }
    body.replaceChildren(...fes.map((f) => {
      const rej = f.rejected || {};
      const parts = Object.keys(rej).sort().filter((k) => rej[k] > 0).map((k) => `${k} ${fmtInt(rej[k])}`);
      return el('tr', null,
        el('td', null, el('strong', null, f.name),
          f.default_backend ? el('div', { class: 'sub' }, '→ ' + f.default_backend) : null),
        el('td', null, f.mode),
        el('td', { class: 'mono' }, (f.listen || []).join(', ')),
        el('td', null, f.healthy ? badge('ok', 'open') : badge('bad', 'no server', 'listening, but no server of its backend is available')),
        num(fmtInt(f.current_connections)),
        num(f.max_conns ? fmtInt(f.max_conns) : '∞'),
        num(fmtRate(rates[f.name])),
        num(fmtInt(f.connections_total)),
        num(fmtBytes(f.bytes_in), fmtInt(f.bytes_in) + ' bytes'),
        num(fmtBytes(f.bytes_out), fmtInt(f.bytes_out) + ' bytes'),
        el('td', { class: parts.length ? '' : 'sub' }, parts.length ? parts.join(' · ') : 'none'));
    }));
  }

  function stateBadge(s) {
    const st = s.state || 'ready';
    const cls = st === 'ready' ? 'ok' : st === 'drain' ? 'info' : 'off';
    const why = s.operator_state && s.operator_state !== st ? `operator: ${s.operator_state}; set by the agent check` : null;
    return el('span', null, badge(cls, st, why), s.agent_down ? el('span', { class: 'tag', title: 'the agent check reports down' }, 'agent down') : null);
  }

  function healthCell(h) {
    const cls = h === 'up' ? 'ok' : h === 'down' ? 'bad' : 'warn';
    return el('td', null, el('span', { class: 'dot ' + cls }), h || 'unknown');
  }

  function rowClass(s) {
    if (s.state === 'maint') return 'srv maint';
    if (s.health === 'down') return 'srv down';
    if (s.state === 'drain') return 'srv drain';
    if (s.health === 'up') return 'srv up';
    return 'srv unknown';
  }

  function stateSelect(b, s) {
    const sel = el('select', { 'aria-label': `set the state of ${b}/${s.name}`, title: 'set the operator state' });
    for (const v of ['ready', 'drain', 'maint']) {
      const o = el('option', { value: v }, v);
      if (v === (s.operator_state || 'ready')) o.selected = true;
      sel.append(o);
    }
    sel.addEventListener('change', async () => {
      const want = sel.value;
      if (!confirm(`Set ${b}/${s.name} to ${want}?`)) { sel.value = s.operator_state || 'ready'; sel.blur(); return; }
      try {
        await call('PUT', `api/v1/backends/${encodeURIComponent(b)}/servers/${encodeURIComponent(s.name)}`, { state: want });
      } catch (e) {
        alert(`Changing ${b}/${s.name} failed: ${e.message}`);
      }
      sel.blur();
      refresh();
    });
    return sel;
  }

  function renderBackends(bes) {
    const box = $('backends');
    if (!bes.length) { box.replaceChildren(el('p', { class: 'sub pad' }, 'No backends configured.')); return; }
    box.replaceChildren(...bes.map((b) => {
      const servers = b.servers || [];
      const head = el('div', { class: 'bhead' },
        el('span', { class: 'name' }, b.name),
        b.up ? badge('ok', 'up') : badge('bad', 'down'),
        el('span', { class: 'sub' }, `balance ${b.balance || '?'}`),
        el('span', { class: 'sub avail' }, `${b.active_servers} of ${servers.length} server${servers.length === 1 ? '' : 's'} available`));
      const rows = servers.length ? servers.map((s) => el('tr', { class: rowClass(s) },
        el('td', null, el('strong', null, s.name), s.backup ? el('span', { class: 'tag' }, 'backup') : null),
        el('td', { class: 'mono', title: s.address !== s.resolved ? `${s.resolved} (configured ${s.address})` : s.address }, s.resolved || s.address),
        el('td', null, stateBadge(s)),
        healthCell(s.health),
        num(s.weight === s.config_weight ? fmtInt(s.weight) : `${fmtInt(s.weight)} / ${fmtInt(s.config_weight)}`,
          'effective weight' + (s.weight === s.config_weight ? '' : ' / configured weight')),
        num(fmtInt(s.current_connections)),
        num(s.max_conns ? fmtInt(s.max_conns) : '∞'),
        num(fmtInt(s.connections_total)),
        num(fmtInt(s.connect_failures_total)),
        num(fmtBytes(s.bytes_in), fmtInt(s.bytes_in) + ' bytes'),
        num(fmtBytes(s.bytes_out), fmtInt(s.bytes_out) + ' bytes'),
        el('td', { class: 'reason' }, s.last_check || '—'),
        el('td', null, stateSelect(b.name, s)),
      )) : [emptyRow(13, 'No servers.')];
      const cols = ['name', 'addr', 'state', 'health', 'weight', 'cur', 'max', 'total', 'fails', 'bytes', 'bytes', 'reason', 'set'];
      const table = el('table', { class: 'servers' },
        el('colgroup', null, ...cols.map((c) => el('col', { class: 'c-' + c }))),
        el('thead', null, el('tr', null,
          el('th', null, 'Server'), el('th', null, 'Address'), el('th', null, 'State'), el('th', null, 'Health'),
          el('th', { class: 'num' }, 'Weight'), el('th', { class: 'num', title: 'current connections' }, 'Conns'),
          el('th', { class: 'num', title: 'connection limit' }, 'Max'),
          el('th', { class: 'num', title: 'connections since start' }, 'Total'),
          el('th', { class: 'num', title: 'failed connection attempts' }, 'Fails'),
          el('th', { class: 'num', title: 'bytes from the server' }, 'In'),
          el('th', { class: 'num', title: 'bytes to the server' }, 'Out'),
          el('th', null, 'Last check'), el('th', null, 'Set'))),
        el('tbody', null, ...rows));
      return el('div', { class: 'backend' }, head, el('div', { class: 'scroll' }, table));
    }));
  }

  function vrrpBadge(state) {
    const s = (state || '').toUpperCase();
    const cls = s === 'MASTER' ? 'ok' : s === 'BACKUP' ? 'info' : s === 'FAULT' ? 'bad' : 'off';
    return badge(cls, s || '?');
  }

  function renderVRRP(list) {
    const body = $('vrrp').tBodies[0];
    if (!list.length) { body.replaceChildren(emptyRow(8, 'No VRRP instances configured.')); return; }
    body.replaceChildren(...list.map((v) => el('tr', null,
      el('td', null, el('strong', null, v.name)),
      el('td', { class: 'mono' }, v.interface),
      num(v.virtual_router_id),
      el('td', null, vrrpBadge(v.state)),
      num(v.effective_priority === v.priority ? v.priority : `${v.effective_priority} / ${v.priority}`,
        'effective / configured priority'),
      el('td', { class: 'mono' }, v.master || '—'),
      el('td', { title: validTime(v.since) ? new Date(v.since).toLocaleString() : null }, fmtAgo(v.since)),
      el('td', { class: 'mono' }, (v.vips || []).join(', ') || '—'),
    )));
  }

  function renderSynflood(sf, rates) {
    let state;
    if (!sf.enabled) state = badge('off', 'disabled');
    else if (sf.attached) state = badge('ok', 'attached');
    else state = badge('bad', 'not attached');
    const dl = el('dl', { class: 'kv' }, el('dt', null, 'State'), el('dd', null, state));
    if (sf.interface) dl.append(el('dt', null, 'Interface'), el('dd', { class: 'mono' }, sf.interface + (sf.mode ? ` (${sf.mode})` : '')));
    if (sf.error) dl.append(el('dt', null, 'Error'), el('dd', null, sf.error));
    const counters = sf.counters || {};
    const keys = Object.keys(counters).sort();
    const parts = [dl];
    if (keys.length) {
      parts.push(el('table', null,
        el('thead', null, el('tr', null, el('th', null, 'Verdict'), el('th', { class: 'num' }, 'Packets'), el('th', { class: 'num' }, 'Rate/s'))),
        el('tbody', null, ...keys.map((k) => el('tr', null,
          el('td', null, k.replace(/_/g, ' ')), num(fmtInt(counters[k])), num(fmtRate(rates[k])))))));
    }
    $('synflood').replaceChildren(...parts);
  }

  // "updated 3s ago", and stale when polls keep failing.
  function tick() {
    const u = $('updated');
    if (!$('login').classList.contains('hidden')) { u.textContent = 'token needed'; return; }
    if (!lastOK) { u.textContent = paused ? 'paused' : 'connecting…'; return; }
    const age = (Date.now() - lastOK) / 1000;
    u.textContent = (paused ? 'paused · ' : '') + (age < 1.5 ? 'updated just now' : `updated ${fmtDuration(age)} ago`);
    u.classList.toggle('stale', age > 3 * POLL_MS / 1000);
  }

  // ---- wiring --------------------------------------------------------------

  function init() {
    loadToken();
    $('pause').addEventListener('click', () => {
      paused = !paused;
      $('pause').textContent = paused ? 'Resume' : 'Pause';
      if (paused) stop(); else refresh();
      tick();
    });
    $('forget').addEventListener('click', () => {
      try { sessionStorage.removeItem(TOKEN_KEY); } catch (_) { /* storage disabled */ }
      token = null;
      stop();
      showLogin('Token forgotten. Enter a token to continue.');
    });
    $('login').addEventListener('submit', (ev) => {
      ev.preventDefault();
      const v = $('token-input').value.trim();
      if (!v) return;
      token = v;
      $('token-input').value = '';
      try { sessionStorage.setItem(TOKEN_KEY, token); } catch (_) { /* storage disabled */ }
      hideLogin();
      refresh();
    });
    window.addEventListener('hashchange', () => { loadToken(); refresh(); });
    document.addEventListener('visibilitychange', () => {
      if (document.hidden) stop(); else if (!paused) refresh();
    });
    setInterval(tick, 1000);
    refresh();
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init);
  else init();
})();
