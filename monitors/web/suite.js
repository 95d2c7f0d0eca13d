/* The suite's live page. Mode "run": a start form while no run is on, a run's dashboard during
   and after it. Mode "monitor": a watched gateway's charts, alerts and latest figures. One payload
   a second arrives over suite/stream (Server-Sent Events).

   Vanilla JS, no build step. Every URL is relative (the page may sit under a base path), and
   payload strings reach the DOM through textContent only, never innerHTML. Any payload field may
   be null or missing: every reader checks, because a thrown error (or a console error) fails the
   browser tests. */
(function () {
  'use strict';

  const $ = (id) => document.getElementById(id);
  const isNum = (v) => typeof v === 'number' && Number.isFinite(v);
  const obj = (v) => (v && typeof v === 'object' ? v : null);
  const list = (v) => (Array.isArray(v) ? v.filter(obj) : []);
  const str = (v) => (v === null || v === undefined ? '' : String(v));
  const DASH = '–';
  const CHART_HEIGHT = 200;
  const MAX_POINTS = 36000; // 10 h at 1 Hz: a monitor may watch for days, the tab's memory should not grow as long
  const OPS = { '<=': '≤', '>=': '≥', '<': '<', '>': '>', '==': '=', '!=': '≠' };
  const PILL = { pass: 'pass', approved: 'pass', degrade: 'degrade', degraded: 'degrade', fail: 'fail', failed: 'fail' };

  // ---- formatting ----

  function num(v) {
    if (!isNum(v)) return DASH;
    const a = Math.abs(v);
    return v.toLocaleString('en-US', { maximumFractionDigits: a >= 100 ? 0 : a >= 10 ? 1 : a >= 1 ? 2 : 3 });
  }

  function withUnit(v, unit) {
    if (!isNum(v) || !unit) return num(v);
    return unit.startsWith('/') ? num(v) + unit : `${num(v)} ${unit}`;
  }

  function ms(v) {
    if (!isNum(v)) return DASH;
    if (v >= 1000) return `${(v / 1000).toFixed(2)} s`;
    return v < 10 ? `${v.toFixed(1)} ms` : `${Math.round(v)} ms`;
  }

  // "0.03 s", "5.7 s", "30 s", "1 min 10 s", "2 min", "1 h 5 min".
  function dur(s) {
    if (!isNum(s)) return DASH;
    s = Math.max(0, s);
    if (s < 10) return `${s.toLocaleString('en-US', { maximumFractionDigits: s < 1 ? 3 : 1 })} s`;
    const total = Math.round(s);
    if (total < 60) return `${total} s`;
    const [h, m, sec] = [Math.floor(total / 3600), Math.floor((total % 3600) / 60), total % 60];
    if (h) return m ? `${h} h ${m} min` : `${h} h`;
    return sec ? `${m} min ${sec} s` : `${m} min`;
  }

  // ---- small DOM helpers (textContent only) ----

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === 'class') node.className = v;
      else if (k === 'text') node.textContent = v;
      else node.setAttribute(k, v);
    }
    for (const c of children) if (c !== null && c !== undefined) node.append(c);
    return node;
  }

  // Figures joined by " · ": each group is a list of strings (plain) and one-element arrays
  // (bold), kept on one line so that a narrow card wraps between figures, not inside one.
  function figureLine(node, groups) {
    const out = [];
    groups.forEach((group, i) => {
      if (i) out.push(' · ');
      out.push(el('span', { class: 'fig' }, ...group.map((p) => (Array.isArray(p) ? el('b', { text: p[0] }) : p))));
    });
    node.replaceChildren(...out);
  }

  const show = (node, visible) => { node.hidden = !visible; };
  const cell = (text, cls) => el('td', cls ? { class: cls, text } : { text });
  const mutedRow = (text, span) => el('tr', {}, el('td', { class: 'muted', colspan: String(span), text }));

  function pill(node, state, text) {
    node.className = `pill pill-${PILL[state] || 'na'}`;
    node.textContent = text;
    return node;
  }

  // A payload the page cannot show is reported on the page and as a warning: never as an error.
  function guard(name, fn) {
    try {
      fn();
    } catch (e) {
      const msg = `${name}: ${e && e.message ? e.message : e}`;
      $('page-error').textContent = `display problem (${msg}); the figures keep coming`;
      show($('page-error'), true);
      console.warn('suite live view', msg);
    }
  }

  // ---- page state ----

  const view = {
    payload: null,
    runId: undefined, // undefined: no payload yet; null: a payload without a run
    points: [],
    stages: [],
    wantForm: false, // "New run" clicked: the form, though the last run's dashboard is still there
    pendingStart: null, // {runId} while a start was accepted and its run has not shown up yet
  };
  const form = { state: 'none', failedAt: 0, options: {} };

  // ---- the start form ----

  function loadOptions() {
    if (form.state === 'loading' || form.state === 'ok') return;
    if (form.state === 'failed' && Date.now() - form.failedAt < 5000) return;
    form.state = 'loading';
    fetch('suite/options', { headers: { Accept: 'application/json' } })
      .then((r) => (r.ok ? r.json() : Promise.reject(new Error(`HTTP ${r.status}`))))
      .then((options) => {
        form.state = 'ok';
        form.options = obj(options) || {};
        formError('');
        guard('form', fillForm);
      })
      .catch((e) => {
        form.state = 'failed';
        form.failedAt = Date.now();
        formError(`could not load the scenarios (${e.message}); trying again`);
      });
  }

  const scenarios = () => list(form.options.scenarios);
  const targets = () => list(form.options.targets);
  const chosenScenario = () => scenarios().find((s) => s.name === $('scenario').value) || null;

  // Why a scenario cannot run: its file does not load, or the chosen profile lacks a request
  // its users send (the server says which, per profile); '' when it can.
  function whyNot(s, profile) {
    if (!s) return '';
    if (s.problem) return str(s.problem);
    const lacks = obj(s.lacks_by_profile) || {};
    if (lacks[profile]) return str(lacks[profile]);
    return s.applies === false ? str(s.why_not) || 'not here' : '';
  }

  // The scenarios the chosen profile cannot run: disabled, and why written out below the
  // select (a disabled option's title would only be a tooltip).
  function markScenarios() {
    const profile = $('target_profile').value;
    for (const option of $('scenario').options) {
      const reason = whyNot(scenarios().find((s) => s.name === option.value), profile);
      option.disabled = Boolean(reason);
      option.textContent = option.value + (reason ? ' (not available)' : '');
      option.title = reason;
    }
    const off = scenarios().filter((s) => whyNot(s, profile));
    $('scenario-why-not').replaceChildren(...off.map((s) =>
      el('span', { class: 'why-not', text: `${str(s.name)} is not available: ${whyNot(s, profile)}` })));
    show($('scenario-why-not'), off.length > 0);
  }

  function fillForm() {
    const defaults = obj(form.options.defaults) || {};
    $('scenario').replaceChildren(...scenarios().map((s) => el('option', { value: str(s.name), text: str(s.name) })));
    const usable = scenarios().filter((s) => !whyNot(s, defaults.target_profile));
    const wanted = usable.find((s) => s.name === defaults.scenario) || usable[0];
    if (wanted) $('scenario').value = str(wanted.name);
    $('target_profile').replaceChildren(...targets().map((t) => el('option', { value: str(t.name), text: str(t.name) })));
    if (targets().some((t) => t.name === defaults.target_profile)) $('target_profile').value = str(defaults.target_profile);
    if (isNum(defaults.time_scale) || typeof defaults.time_scale === 'string') $('time_scale').value = str(defaults.time_scale);
    $('host').value = str(defaults.host);
    updateForm();
  }

  function timeScale() {
    const v = parseFloat($('time_scale').value);
    return isNum(v) && v > 0 ? v : null;
  }

  function stepLoad(step) {
    const unit = str(step.unit);
    const { from, to } = step;
    if (isNum(from) && isNum(to) && from !== to) return `ramp from ${num(from)} to ${num(to)} ${unit}`;
    if (!isNum(from) && isNum(to)) return `ramp to ${num(to)} ${unit}`;
    const at = isNum(to) ? to : from;
    return isNum(at) ? `at ${num(at)} ${unit}` : DASH;
  }

  // Whatever the form shows about the chosen scenario, target and host; run at every change.
  function updateForm() {
    markScenarios();
    const scale = timeScale();
    const scaled = (s) => (isNum(s) && scale ? s * scale : null);
    const scenario = chosenScenario();
    const about = [];
    if (scenario) {
      about.push(str(scenario.description));
      const open = scenario.open_model ? ' (open: arrivals do not wait for responses)' : '';
      if (scenario.model) about.push(`model: ${str(scenario.model)}${open}`);
      if (Array.isArray(scenario.users) && scenario.users.length) about.push(`users: ${scenario.users.map(str).join(', ')}`);
    }
    $('scenario-description').replaceChildren(...about.filter(Boolean).map((t) => el('span', { class: 'line', text: t })));

    const steps = scenario ? list(scenario.steps) : [];
    const rows = steps.map((step, i) => el('tr', {},
      cell(str(step.name) || `step ${i + 1}`), cell(dur(scaled(step.duration_s)), 'num'), cell(stepLoad(step))));
    if (scenario && !steps.length) {
      const burst = obj(scenario.burst);
      const what = burst && isNum(burst.users) && isNum(burst.iterations_per_user)
        ? `one burst: ${num(burst.users)} users × ${num(burst.iterations_per_user)} each, all at once`
        : 'one burst';
      rows.push(mutedRow(isNum(scenario.duration_s) ? `${what}, ${dur(scaled(scenario.duration_s))}` : what, 3));
    }
    $('steps').tBodies[0].replaceChildren(...rows);
    let total = scenario && isNum(scenario.duration_s) ? scenario.duration_s : null;
    if (total === null && steps.length) total = steps.reduce((sum, s) => sum + (isNum(s.duration_s) ? s.duration_s : 0), 0);
    $('planned').textContent = total === null ? ''
      : `planned: ${dur(scaled(total))}` + (scale && scale !== 1 ? ` (${dur(total)} × ${scale})` : '');

    const target = targets().find((t) => t.name === $('target_profile').value);
    $('target-description').textContent = target ? str(target.description) : '';
    const hint = $('time-scale-hint');
    hint.textContent = scale ? 'every duration × this' : 'every duration × this: a number above 0, e.g. 0.1';
    hint.classList.toggle('hint-warn', !scale);
    const embedded = form.options.embedded_host;
    $('host-hint').textContent = embedded && $('host').value.trim() === embedded ? 'the embedded reference gateway' : '';
    if (!view.pendingStart) $('start').disabled = !scenario || Boolean(whyNot(scenario, $('target_profile').value));
  }

  function formError(message) {
    $('form-error').textContent = message;
    show($('form-error'), Boolean(message));
  }

  function startDone(message) {
    view.pendingStart = null;
    $('start').textContent = 'Start';
    updateForm(); // enables the button again, unless the scenario cannot run
    if (message) formError(message);
  }

  async function start(event) {
    event.preventDefault();
    if (view.pendingStart || $('start').disabled) return; // one click, one POST
    formError('');
    if (!timeScale()) return formError('the time scale must be a number above 0');
    const body = new URLSearchParams({
      scenario: $('scenario').value,
      target_profile: $('target_profile').value,
      time_scale: $('time_scale').value.trim(),
      host: $('host').value.trim(),
    });
    const pending = { runId: view.runId === undefined ? null : view.runId };
    view.pendingStart = pending;
    $('start').disabled = true;
    $('start').textContent = 'Starting…';
    let answer = null;
    let status = '';
    try {
      const r = await fetch('swarm', { method: 'POST', body, headers: { Accept: 'application/json' } });
      status = `${r.status} ${r.statusText}`.trim();
      answer = obj(await r.json().catch(() => null));
    } catch (e) {
      status = `no answer: ${e.message}`;
    }
    if (view.pendingStart !== pending) return; // the new run showed up while the answer was on its way
    if (answer && answer.success) {
      // The dashboard shows once a payload carries the new run: give up waiting after a while.
      setTimeout(() => view.pendingStart === pending && startDone('the run was accepted but has not shown up yet'), 20000);
      return;
    }
    startDone(answer && answer.message ? str(answer.message) : `the start failed (${status})`);
  }

  // ---- the view: form or dashboard ----

  function chooseView(p) {
    if (p.mode === 'monitor') return 'dashboard';
    if (view.pendingStart) {
      if (!p.run || p.run_id === view.pendingStart.runId) return 'form';
      view.wantForm = false;
      startDone('');
    }
    const idle = p.state === 'ready' || p.state === 'stopped';
    return view.wantForm || (idle && !p.run) ? 'form' : 'dashboard';
  }

  function setView(which, p) {
    const wasHidden = $('dashboard').hidden;
    show($('form-view'), which === 'form');
    show($('dashboard'), which === 'dashboard');
    show($('back-to-run'), which === 'form' && Boolean(p.run));
    if (which === 'form') loadOptions();
    if (which === 'dashboard' && wasHidden) requestAnimationFrame(resizeCharts);
  }

  // ---- the dashboard's cards ----

  function renderHeader(p) {
    const state = str(p.state) || 'unknown';
    $('state').textContent = state;
    $('state').className = `badge state-${state.replace(/[^a-z]/gi, '')}`;
    $('mode-label').textContent = p.mode === 'monitor' ? 'gateway monitor' : 'run';
    show($('locust-link'), p.mode !== 'monitor');
    const run = obj(p.run) || {};
    const info = [p.mode === 'monitor' && p.target ? `watching ${str(p.target)}` : str(run.scenario)];
    if (run.profile || run.target) info.push(`${str(run.profile)} → ${str(run.target)}`.trim());
    if (isNum(run.time_scale) && run.time_scale !== 1) info.push(`time × ${num(run.time_scale)}`);
    if (isNum(run.workers) && run.workers > 1) info.push(`${run.workers} workers`);
    $('run-info').textContent = info.filter(Boolean).join(' · ');
  }

  function stageText(stage, run, state) {
    if (!stage) return state === 'ready' || state === 'stopped' ? 'no stage: the run is over' : DASH;
    const unit = str(stage.unit);
    // Arrival-rate scenarios call their stages phases.
    const word = /arrival/i.test(unit) || run.open_model ? 'phase' : 'stage';
    const bits = [isNum(stage.index) ? `${word} ${stage.index + 1}/${isNum(stage.count) ? stage.count : '?'}` : word];
    if (stage.name) bits.push(str(stage.name));
    let load = '';
    if (isNum(stage.target) && isNum(stage.end_target) && stage.end_target !== stage.target) {
      load = `ramp to ${num(stage.end_target)} ${unit}`.trim();
    } else if (isNum(stage.target)) {
      load = withUnit(stage.target, unit);
    }
    if (load && load !== stage.name) bits.push(load);
    return bits.join(' · ');
  }

  function renderStage(p) {
    const monitor = p.mode === 'monitor';
    show($('stage-card'), !monitor);
    show($('stop'), !monitor && (p.state === 'spawning' || p.state === 'running'));
    if (monitor) return;
    const stage = obj(p.stage);
    const run = obj(p.run) || {};
    $('stage').textContent = stageText(stage, run, p.state);
    // Without a stage (the run is over) the bar still tells how much of the plan ran.
    let progress = stage && isNum(stage.progress) ? stage.progress : null;
    if (progress === null && isNum(run.elapsed_s) && run.planned_s > 0) progress = run.elapsed_s / run.planned_s;
    if (progress !== null) progress = Math.min(1, Math.max(0, progress));
    const pct = progress === null ? null : `${Math.round(progress * 100)} %`;
    $('progress').value = progress || 0;
    $('progress').setAttribute('aria-valuetext', pct || 'unknown');
    const times = [`elapsed ${dur(run.elapsed_s)}` + (isNum(run.planned_s) ? ` of ${dur(run.planned_s)}` : '')];
    if (stage && isNum(stage.left_s)) times.push(`${dur(stage.left_s)} left`);
    if (pct) times.push(pct);
    if (stage && isNum(stage.into_s)) {
      times.push(`this stage: ${dur(stage.into_s)}` + (isNum(stage.duration_s) ? ` of ${dur(stage.duration_s)}` : ''));
    }
    $('stage-times').textContent = times.join(' · ');
  }

  // Monitor mode may carry no load, throughput or latency: their cards go, in mode run they show "–".
  function renderLoad(p) {
    const load = obj(p.load);
    show($('load-card'), Boolean(load) || p.mode !== 'monitor');
    if (!load) return $('load').replaceChildren(DASH);
    const open = typeof load.open_model === 'boolean' ? load.open_model : Boolean(obj(p.run) && p.run.open_model);
    if (open) {
      figureLine($('load'), [['offered ', [withUnit(load.offered_per_s, '/s')]], ['achieved ', [withUnit(load.achieved_per_s, '/s')]],
        ['dropped ', [num(load.dropped)]], ['in flight ', [num(load.in_flight)]]]);
    } else {
      const users = ['users ', [num(load.users)]];
      if (isNum(load.target_users)) users.push(` (target ${num(load.target_users)})`);
      figureLine($('load'), [users]);
    }
  }

  function renderThroughput(p) {
    const t = obj(p.throughput);
    show($('throughput-card'), Boolean(t) || p.mode !== 'monitor');
    $('throughput-totals').textContent = t && isNum(t.requests)
      ? `${num(t.requests)} requests, ${num(t.failures)} failures in the whole run` : '';
    if (!t) return $('throughput').replaceChildren(DASH);
    figureLine($('throughput'), [[[num(t.requests_per_s)], ' requests/s'], [[num(t.errors_per_s)], ' errors/s'],
      ['error rate ', [withUnit(t.error_rate_pct, '%')]]]);
  }

  function renderLatency(p) {
    const lat = obj(p.latency);
    show($('latency-card'), Boolean(lat) || p.mode !== 'monitor');
    const l = lat || {};
    const last = `last ${isNum(l.window_s) ? num(l.window_s) : '?'} s`;
    const row = (label, q) => {
      q = obj(q) || {};
      return el('tr', {}, el('th', { scope: 'row', class: 'sub-row', text: label }),
        ...['p50_ms', 'p95_ms', 'p99_ms', 'max_ms'].map((k) => cell(ms(q[k]), 'num')), cell(num(q.count), 'num'));
    };
    const group = (label, title) => el('tr', { class: 'group' }, el('th', { scope: 'rowgroup', colspan: '6', text: label, title }));
    $('latency').tBodies[0].replaceChildren(
      group('from the due time', 'from when the request was due: includes any wait behind a late user'),
      row(last, l.last), row('whole run', l.overall),
      group('service time', 'from when the request was sent'),
      row(last, l.service_last), row('whole run', l.service_overall));
  }

  function renderVerdict(p) {
    show($('verdict-card'), p.mode !== 'monitor');
    if (p.mode === 'monitor') return;
    const v = obj(p.verdict) || {};
    const status = v.status ? str(v.status) : null;
    pill($('verdict-status'), status, status || 'not enough data yet');
    $('verdict-asof').textContent = isNum(v.as_of_s) ? `as of t = ${num(v.as_of_s)} s` : '';
    $('verdict-note').textContent = str(v.note);
    const aborted = obj(v.aborted); // the criterion that stopped the run, when one did
    $('verdict-aborted').textContent = aborted ? `aborted at t = ${num(aborted.at_s)} s: ${str(aborted.criterion)} `
      + `was ${num(aborted.value)} (limit ${num(aborted.limit)})` : '';
    show($('verdict-aborted'), Boolean(aborted));
    const rows = list(v.criteria).map((c) => {
      const state = c.state ? str(c.state) : 'not measured';
      const unit = str(c.unit);
      const name = el('td', {}, el('span', { text: str(c.name) || str(c.metric) }));
      if (c.note) name.append(el('span', { class: 'crit-note', text: str(c.note) }));
      const abort = c.aborts ? `aborts the run${isNum(c.abort_after_s) ? ` after ${dur(c.abort_after_s)}` : ''}` : '';
      return el('tr', {}, name, cell(str(c.scope)), cell(withUnit(c.value, unit), 'num'),
        cell(isNum(c.limit) ? `${OPS[c.op] || str(c.op)} ${withUnit(c.limit, unit)}`.trim() : DASH, 'num'),
        el('td', {}, pill(el('span'), state, state)), el('td', {}, abort ? el('span', { class: 'aborts', text: abort }) : null));
    });
    $('verdict').tBodies[0].replaceChildren(...(rows.length ? rows : [mutedRow('no criterion yet', 6)]));
  }

  // The report's link comes from the payload: only an http(s) target (relative, normally) is kept.
  function safeHref(href) {
    try {
      const url = new URL(str(href) || 'report', document.baseURI);
      return url.protocol === 'http:' || url.protocol === 'https:' ? str(href) || 'report' : 'report';
    } catch (e) {
      return 'report';
    }
  }

  function renderEnded(p) {
    const ended = obj(p.ended);
    // A run stopped without an `ended` (yet) still gets the banner: its "New run" is the way back to the form.
    const over = p.mode !== 'monitor' && Boolean(p.run) && (p.state === 'ready' || p.state === 'stopped');
    show($('ended'), p.mode !== 'monitor' && (Boolean(ended) || over));
    if (!ended && !over) return;
    const status = ended && ended.status ? str(ended.status) : 'stopped';
    $('ended-status').textContent = ended ? status : 'run stopped';
    $('ended-status').className = `banner-status status-${PILL[status] || 'na'}`;
    const reasons = ended && Array.isArray(ended.reasons) ? ended.reasons.map(str).join('; ') : str(ended && ended.reasons);
    $('ended-reasons').textContent = ended ? reasons : 'the verdict is not in yet';
    show($('ended-partial'), Boolean(ended && ended.partial));
    show($('report-link'), Boolean(ended));
    if (ended) $('report-link').setAttribute('href', safeHref(ended.report));
  }

  function renderAlerts(p) {
    const at = (a) => (isNum(a.t) ? a.t : -Infinity);
    const items = list(p.alerts).sort((a, b) => at(b) - at(a)).map((a) => el('li', { class: 'alert' },
      el('span', { class: 'alert-kind', text: str(a.kind) || 'alert' }), el('span', { class: 'alert-msg', text: str(a.message) }),
      el('span', { class: 'alert-t', text: isNum(a.t) ? `t = ${num(a.t)} s` : '' })));
    $('alerts').replaceChildren(...(items.length ? items : [el('li', { class: 'muted', text: 'no alert' })]));
    const notes = (Array.isArray(p.notes) ? p.notes : []).map(str).filter(Boolean);
    $('notes').replaceChildren(...(notes.length ? notes : ['no note']).map((n) => el('li', { text: n })));
  }

  // The names and units of the monitor's "latest" figures: a few by name, the others (any figure
  // a source samples may come) from their name's unit suffix, as monitors/figures.py names them.
  const FIGURES = {
    t: ['t', 's'], rss_mb: ['memory (RSS)', 'MB'], pss_mb: ['memory (PSS)', 'MB'], heap_mb: ['heap', 'MB'],
    heap_used_mb: ['heap used', 'MB'], cpu_pct: ['CPU', '%'], sessions_active: ['live sessions', ''],
    eventloop_delay_p99_ms: ['event-loop delay p99', 'ms'],
  };
  const SUFFIXES = [['_bytes_per_s', 'B/s'], ['_ops_per_s', '/s'], ['_per_s', '/s'], ['_mb', 'MB'], ['_pct', '%'], ['_ms', 'ms']];
  function figureOf(key) {
    if (FIGURES[key]) return FIGURES[key];
    const suffix = SUFFIXES.find(([end]) => key.endsWith(end));
    return [(suffix ? key.slice(0, -suffix[0].length) : key).replace(/_/g, ' '), suffix ? suffix[1] : ''];
  }

  function renderLatest(p) {
    show($('latest-card'), p.mode === 'monitor');
    if (p.mode !== 'monitor') return;
    // The monitor sends every figure of its latest sample (`latest`); the chart points have a few.
    const point = obj(p.latest) || view.points[view.points.length - 1] || {};
    const rows = Object.entries(point).filter(([, v]) => isNum(v)).map(([k, v]) => {
      const [label, unit] = figureOf(k);
      return el('tr', {}, el('th', { scope: 'row', text: label }), cell(unit === 'ms' ? ms(v) : withUnit(v, unit), 'num'));
    });
    $('latest').tBodies[0].replaceChildren(...(rows.length ? rows : [mutedRow('no sample yet', 2)]));
  }

  // ---- history: points by t, deduplicated (a reconnect resends the whole history) ----

  function mergePoints(p) {
    const valid = (pt) => obj(pt) && isNum(pt.t);
    if (Array.isArray(p.history)) {
      const byT = new Map();
      for (const pt of p.history) if (valid(pt)) byT.set(pt.t, pt);
      view.points = [...byT.values()].sort((a, b) => a.t - b.t);
    }
    const pt = p.point;
    if (valid(pt)) {
      const pts = view.points;
      let i = pts.length;
      while (i > 0 && pts[i - 1].t > pt.t) i--;
      if (i > 0 && pts[i - 1].t === pt.t) pts[i - 1] = pt;
      else pts.splice(i, 0, pt);
    }
    if (view.points.length > MAX_POINTS) view.points.splice(0, view.points.length - MAX_POINTS);
  }

  // ---- charts (uPlot) ----

  const C = { blue: '#2563eb', red: '#dc2626', grey: '#64748b', green: '#16a34a', amber: '#d97706', violet: '#7c3aed', teal: '#0d9488' };
  // `run`: mode run only (the monitor's points carry the gateway's figures only). `optional`: a
  // series drawn only once some value is there; a chart left with no series shows its `note`.
  const CHARTS = [
    { id: 'chart-throughput', title: 'Requests and errors', unit: 'per second', run: true, series: [
      { key: 'requests_per_s', label: 'requests/s', color: C.blue },
      { key: 'errors_per_s', label: 'errors/s', color: C.red },
      { key: 'offered_per_s', label: 'offered/s', color: C.grey, dash: [4, 4], optional: true }] },
    { id: 'chart-latency', title: 'Latency from the due time', unit: 'ms', run: true, fmt: ms, series: [
      { key: 'p50_ms', label: 'p50', color: C.green },
      { key: 'p95_ms', label: 'p95', color: C.amber },
      { key: 'p99_ms', label: 'p99', color: C.red },
      { key: 'service_p95_ms', label: 'service p95', color: C.violet, dash: [6, 4] }] },
    { id: 'chart-memory', title: 'Gateway memory', unit: 'MB', series: [
      { key: 'rss_mb', label: 'RSS', color: C.blue },
      { key: 'heap_mb', label: 'heap', color: C.teal, optional: true }] },
    { id: 'chart-cpu', title: 'Gateway CPU', unit: '%', series: [{ key: 'cpu_pct', label: 'CPU %', color: C.amber }] },
    { id: 'chart-queue', title: 'Queue depth and live sessions', unit: 'count', series: [
      { key: 'queue_depth', label: 'queue depth', color: C.red, scale: 'q' },
      { key: 'sessions_active', label: 'live sessions', color: C.blue, scale: 's' }] },
    { id: 'chart-eventloop', title: 'Event-loop delay p99', unit: 'ms', fmt: ms, note: 'event-loop delay: only with --node-inspect',
      series: [{ key: 'eventloop_delay_p99_ms', label: 'delay p99', color: C.violet, optional: true }] },
  ];
  const charts = {}; // id -> {card, body, note, plot, key}

  // The stages on every chart: every other one shaded, a dashed line at each start, and the
  // names in a band above the plot (uPlot's top padding) where no data line can cover them.
  function stageMarks(u) {
    const ctx = u.ctx;
    const { left, top, width, height } = u.bbox;
    const dpr = uPlot.pxRatio || 1;
    const stages = view.stages.filter((s) => obj(s) && isNum(s.started_s));
    const xAt = (t) => Math.round(u.valToPos(t, 'x', true));
    ctx.save();
    ctx.beginPath();
    ctx.rect(left, top, width, height);
    ctx.clip();
    ctx.lineWidth = dpr;
    ctx.setLineDash([4 * dpr, 3 * dpr]);
    stages.forEach((s, i) => {
      const x = xAt(s.started_s);
      if (i % 2 === 1) {
        const next = stages[i + 1];
        const end = isNum(s.ended_s) ? xAt(s.ended_s) : next ? xAt(next.started_s) : left + width;
        ctx.fillStyle = 'rgba(100, 116, 139, 0.07)';
        ctx.fillRect(x, top, Math.max(0, end - x), height);
      }
      ctx.strokeStyle = 'rgba(71, 85, 105, 0.6)';
      ctx.beginPath();
      ctx.moveTo(x + 0.5, top);
      ctx.lineTo(x + 0.5, top + height);
      ctx.stroke();
    });
    ctx.restore();
    ctx.save();
    ctx.font = `${11 * dpr}px system-ui, sans-serif`;
    ctx.textAlign = 'left';
    ctx.textBaseline = 'alphabetic';
    ctx.fillStyle = '#334155';
    let freeFrom = left; // a name that would overlap the previous one is left out
    for (const s of stages) {
      const label = str(s.name) || `stage ${isNum(s.index) ? s.index + 1 : ''}`;
      const w = ctx.measureText(label).width;
      const x = Math.min(xAt(s.started_s) + 3 * dpr, left + width - w);
      if (x < freeFrom) continue;
      ctx.fillText(label, x, top - 6 * dpr);
      freeFrom = x + w + 8 * dpr;
    }
    ctx.restore();
  }

  function latest(values) {
    for (let i = (values ? values.length : 0) - 1; i >= 0; i--) if (isNum(values[i])) return values[i];
    return null;
  }

  function fromZero(u, min, max) {
    const lo = isNum(min) ? Math.min(0, min) : 0;
    const hi = isNum(max) && max > lo ? max : lo + 1;
    return [lo, hi + (hi - lo) * 0.08];
  }

  function plotOptions(def, active, width) {
    const fmt = def.fmt || num;
    const grid = { stroke: '#eef0f3' };
    const ticks = { stroke: '#e2e8f0' };
    const scales = { x: { time: false } };
    const axes = [{ stroke: '#475569', grid, ticks, values: (u, vs) => vs.map((v) => `${num(v)} s`) }];
    for (const s of active) { // one y axis per scale: the first on the left, a second on the right in its series' colour
      const scale = s.scale || 'y';
      if (scales[scale]) continue;
      scales[scale] = { range: fromZero };
      const first = axes.length === 1;
      axes.push({ scale, side: first ? 3 : 1, size: 60, stroke: first ? '#475569' : s.color, grid: { ...grid, show: first }, ticks,
        values: (u, vs) => vs.map(fmt) });
    }
    // Not hovering, the legend shows the latest values (uPlot passes idx null then).
    const legend = (f) => (u, v, si, idx) => {
      if (idx === null || idx === undefined) v = latest(u.data[si]);
      return isNum(v) ? f(v) : DASH;
    };
    return {
      width, height: CHART_HEIGHT, scales, axes, padding: [22, null, null, null],
      cursor: { drag: { x: false, y: false }, sync: { key: 'suite' } }, // no zoom: each second's setData would undo it
      hooks: { draw: [stageMarks] },
      series: [{ label: 't', value: legend((v) => `${num(v)} s`) }, ...active.map((s) => ({
        label: s.label, stroke: s.color, width: 2, dash: s.dash, scale: s.scale || 'y', spanGaps: false, value: legend(fmt) }))],
    };
  }

  function chartCard(def) {
    const body = el('div', { class: 'chart-body' });
    const note = el('p', { class: 'chart-note muted', hidden: '', text: def.note || '' });
    const card = el('section', { class: 'card chart-card', id: def.id, 'aria-label': `${def.title} (${def.unit})` },
      el('h3', {}, def.title, el('span', { class: 'unit', text: def.unit })), body, note);
    $('charts').append(card);
    return { card, body, note, plot: null, key: null };
  }

  function dropPlot(c) {
    if (c.plot) c.plot.destroy();
    c.plot = null;
    c.key = null;
  }

  function renderCharts(p) {
    if (typeof uPlot !== 'function' || $('dashboard').hidden) return; // widths are 0 while hidden
    const pts = view.points;
    const xs = pts.map((pt) => pt.t);
    for (const def of CHARTS) {
      const c = charts[def.id] || (charts[def.id] = chartCard(def));
      const wanted = !def.run || p.mode !== 'monitor';
      show(c.card, wanted);
      if (!wanted) continue;
      const columns = def.series.map((s) => pts.map((pt) => (isNum(pt[s.key]) ? pt[s.key] : null)));
      const active = def.series.filter((s, i) => !s.optional || columns[i].some((v) => v !== null));
      const key = active.map((s) => s.key).join(',');
      show(c.note, !active.length && Boolean(def.note));
      show(c.body, active.length > 0);
      if (c.key !== key) dropPlot(c); // a series came or went: uPlot takes its series when made
      if (!active.length) continue;
      const data = [xs, ...columns.filter((col, i) => active.includes(def.series[i]))];
      if (c.plot) {
        c.plot.setData(data);
      } else {
        c.plot = new uPlot(plotOptions(def, active, Math.max(200, c.body.clientWidth)), data, c.body);
        c.key = key;
      }
    }
  }

  function resizeCharts() {
    for (const c of Object.values(charts)) {
      if (c.plot && c.body.clientWidth > 0) c.plot.setSize({ width: c.body.clientWidth, height: CHART_HEIGHT });
    }
  }

  let resizeQueued = false;
  window.addEventListener('resize', () => {
    if (resizeQueued) return;
    resizeQueued = true;
    requestAnimationFrame(() => { resizeQueued = false; resizeCharts(); });
  });

  // ---- one payload ----

  function resetStop() {
    $('stop').disabled = false;
    $('stop').textContent = 'Stop the run';
  }

  function handle(p) {
    p = obj(p);
    if (!p) return;
    const runId = p.run_id === undefined ? null : p.run_id;
    if (view.runId !== undefined && runId !== view.runId) {
      // A new run: its charts start empty, and it is what the page shows.
      view.points = [];
      Object.values(charts).forEach(dropPlot);
      if (runId && p.run) view.wantForm = false;
      resetStop();
    }
    view.runId = runId;
    view.payload = p;
    view.stages = Array.isArray(p.stages) ? p.stages : [];
    if (p.state !== 'spawning' && p.state !== 'running') resetStop();
    show($('waiting'), false);
    mergePoints(p);
    let which = 'dashboard';
    guard('view', () => {
      which = chooseView(p);
      setView(which, p);
    });
    guard('header', () => renderHeader(p));
    if (which !== 'dashboard') return;
    const cards = { ended: renderEnded, stage: renderStage, load: renderLoad, throughput: renderThroughput, latency: renderLatency,
      verdict: renderVerdict, latest: renderLatest, alerts: renderAlerts, charts: renderCharts };
    for (const [name, render] of Object.entries(cards)) guard(name, () => render(p));
  }

  // ---- the stream ----

  function connect() {
    const source = new EventSource('suite/stream');
    source.onopen = () => show($('conn'), false);
    source.onmessage = (event) => {
      show($('conn'), false);
      let payload;
      try {
        payload = JSON.parse(event.data);
      } catch (e) {
        return guard('stream', () => { throw new Error('an event that is not JSON'); });
      }
      handle(payload);
    };
    source.onerror = () => {
      show($('conn'), true);
      // EventSource retries by itself, except after an answer it will not take (not 200, not
      // text/event-stream): then it is closed for good, and a new one is opened here.
      if (source.readyState === EventSource.CLOSED) setTimeout(connect, 3000);
    };
  }

  // ---- wiring ----

  $('start-form').addEventListener('submit', start);
  for (const id of ['scenario', 'target_profile', 'time_scale', 'host']) {
    $(id).addEventListener('input', () => guard('form', updateForm));
    $(id).addEventListener('change', () => guard('form', updateForm));
  }
  $('stop').addEventListener('click', () => {
    $('stop').disabled = true;
    $('stop').textContent = 'Stopping…';
    fetch('stop', { method: 'POST', headers: { 'Content-Type': 'application/x-www-form-urlencoded' }, body: '' })
      .catch(resetStop);
  });
  $('new-run').addEventListener('click', () => {
    view.wantForm = true;
    if (view.payload) handle(view.payload);
    $('scenario').focus();
  });
  $('back-to-run').addEventListener('click', () => {
    view.wantForm = false;
    if (view.payload) handle(view.payload);
  });

  connect();
})();
