/* Reverie's web page: plain ES2020, one file, no build step, no network beyond the same-origin API.
 *
 * Sections: helpers · API (key + 401 retry) · views/tabs · Ask (SSE, chain, graphs, rating) ·
 * Graph explorer · Ingest · Runs (SVG plots) · Fractal (chat, training, state, plot) · start-up.
 */
'use strict';

const KEY_STORE = 'reverie.apiKey';        // sessionStorage: the key lives as long as the tab
const VIEWS = ['ask', 'graph', 'ingest', 'runs', 'fractal'];
const FRACTAL_POLL_MS = 400;               // how often the Fractal view asks how a training goes
const MAX_GRAPH_NODES = 300;               // the explorer stops adding nodes past this
const MAX_FACT_ROWS = 200;                 // rows listed per direction in the entity detail
const COLORS = {
  best: '#1e3a8a', alt: '#a3acb9', altText: '#6b7280', imagined: '#ea580c',
  answer: '#f59e0b', start: '#0f766e', ends: '#16a34a', node: '#64748b',
};
const SERIES_COLORS = ['#1e3a8a', '#ea580c', '#16a34a', '#7c3aed', '#dc2626', '#0891b2', '#ca8a04'];

const state = {
  view: null,
  asking: false,
  streamed: '',
  verdict: null,
  cy: { chain: null, tree: null, graph: null },
  graphCapped: false,
  runs: [],
  runsLoading: false,
  selectedRuns: [],
  runCache: new Map(),
  plotToken: 0,
  fractal: { status: null, polling: false, chatting: false, plotUrl: null, plotOf: null },
};

// ------------------------------------------------------------------ helpers

const $ = (id) => document.getElementById(id);

/** Builds an element; text goes through textContent, so server strings never become HTML. */
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === 'class') node.className = value;
    else if (key === 'text') node.textContent = value;
    else if (key.startsWith('on') && typeof value === 'function') node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

/** replaceChildren that skips null/false, so optional parts can be written inline. */
function fill(node, ...children) {
  node.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
}

/** A number with fixed decimals, or an em dash for null/NaN (NaN arrives as null in JSON). */
function fmt(value, digits = 2) {
  return typeof value === 'number' && Number.isFinite(value) ? value.toFixed(digits) : '—';
}

/** Compact significant-digit form for plot ticks and run numbers. */
function fmtShort(value) {
  if (typeof value !== 'number' || !Number.isFinite(value)) return '—';
  const abs = Math.abs(value);
  if (abs >= 1e6) return `${+(value / 1e6).toPrecision(3)}M`;
  if (abs >= 1e4) return `${+(value / 1e3).toPrecision(3)}k`;
  return String(+value.toPrecision(4));
}

function fmtTime(iso) {
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? String(iso ?? '') : date.toLocaleString();
}

/** The title every edge/step carries: where the fact comes from. */
function edgeTitle(edgeId, source) {
  return `edge ${edgeId ?? '—'} · source ${source ?? '—'}`;
}

function setStatus(message, isError = false) {
  const bar = $('status-bar');
  bar.textContent = message;
  bar.classList.toggle('error', isError);
}

/** Shows (or, with an empty message, hides) a view's error place; errors also go to the status bar. */
function showError(placeId, message) {
  const place = $(placeId);
  place.textContent = message || '';
  place.hidden = !message;
  if (message) setStatus(message, true);
}

// ------------------------------------------------------------------ API

class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

/** The text of an error reply: `detail` as a string, or FastAPI's list of validation errors. */
async function errorMessage(response) {
  const text = await response.text().catch(() => '');
  let body = null;
  try { body = JSON.parse(text); } catch (_) { /* not JSON: use the text */ }
  const detail = body && typeof body === 'object' ? (body.detail ?? body.error?.message ?? body.error) : null;
  if (typeof detail === 'string') return detail;
  if (Array.isArray(detail)) {
    return detail.map((d) => {
      const where = Array.isArray(d.loc) ? d.loc.filter((p) => p !== 'body').join('.') : '';
      return where ? `${where}: ${d.msg}` : String(d.msg ?? JSON.stringify(d));
    }).join('; ');
  }
  if (detail) return JSON.stringify(detail);
  return text.trim() || `${response.status} ${response.statusText}`.trim();
}

/**
 * The one way the page calls the server. Adds the stored key; on 401 asks for a key and retries
 * the same call once the user saves one. `body` is JSON-encoded unless it is FormData (which can
 * be sent again on a retry). With opts.raw the Response is returned (for the SSE stream).
 */
async function api(method, path, body, opts = {}) {
  for (let attempt = 0; ; attempt += 1) {
    const headers = {};
    const key = sessionStorage.getItem(KEY_STORE);
    if (key) headers.Authorization = `Bearer ${key}`;
    if (opts.accept) headers.Accept = opts.accept;
    let payload;
    if (body instanceof FormData) payload = body;
    else if (body instanceof Blob) {       // a file as the whole body (a state file); it can be sent again
      headers['Content-Type'] = 'application/octet-stream';
      payload = body;
    } else if (body !== undefined && body !== null) {
      headers['Content-Type'] = 'application/json';
      payload = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, { method, headers, body: payload, cache: 'no-store' });
    } catch (err) {
      throw new ApiError(`The server cannot be reached (${err.message}).`, 0);
    }
    if (response.status === 401 && attempt < 5) {
      await askForKey(key ? 'That key was refused: try another.' : '');
      continue;
    }
    if (!response.ok) throw new ApiError(await errorMessage(response), response.status);
    if (opts.raw) return response;
    if (response.status === 204) return null;
    return response.json();
  }
}

// ---- the key dialog: one pending promise shared by every call that met a 401

let keyWaiter = null;

function askForKey(note) {
  if (!keyWaiter) {
    let resolve;
    let reject;
    const promise = new Promise((res, rej) => { resolve = res; reject = rej; });
    keyWaiter = { promise, resolve, reject };
    openKeyDialog(note);
  }
  return keyWaiter.promise;
}

function openKeyDialog(note = '') {
  const dialog = $('key-dialog');
  $('key-error').textContent = note;
  $('key-error').hidden = !note;
  $('key-input').value = '';
  if (!dialog.open) dialog.showModal();
  $('key-input').focus();
}

function saveKey() {
  const value = $('key-input').value.trim();
  if (!value) { $('key-input').focus(); return; }
  sessionStorage.setItem(KEY_STORE, value);
  const waiter = keyWaiter;
  keyWaiter = null;                 // cleared first, so the close event below rejects nothing
  $('key-dialog').close();
  setStatus('API key saved for this tab.');
  if (waiter) waiter.resolve();
}

function setupKeyDialog() {
  const dialog = $('key-dialog');
  $('key-save').addEventListener('click', saveKey);
  $('key-cancel').addEventListener('click', () => dialog.close());
  $('key-input').addEventListener('keydown', (evt) => {
    if (evt.key === 'Enter') { evt.preventDefault(); saveKey(); }
  });
  // Closed without saving (Cancel or Escape): the calls that waited fail with a clear message.
  dialog.addEventListener('close', () => {
    if (!keyWaiter) return;
    const waiter = keyWaiter;
    keyWaiter = null;
    waiter.reject(new ApiError('This server needs an API key.', 401));
  });
  $('key-button').addEventListener('click', () => openKeyDialog(''));
}

// ------------------------------------------------------------------ views and tabs

function viewFromHash() {
  const name = location.hash.replace(/^#/, '');
  return VIEWS.includes(name) ? name : 'ask';
}

function showView(name) {
  if (!VIEWS.includes(name)) name = 'ask';
  const changed = state.view !== name;
  state.view = name;
  for (const view of VIEWS) {
    const active = view === name;
    $(`view-${view}`).hidden = !active;
    $(`tab-${view}`).classList.toggle('active', active);
    $(`tab-${view}`).setAttribute('aria-selected', String(active));
  }
  if (changed) setStatus('');  // the last view's message is not this one's
  if (location.hash !== `#${name}`) history.replaceState(null, '', `#${name}`);
  // Cytoscape measures its box when drawn: a canvas drawn or resized while hidden needs a resize.
  requestAnimationFrame(() => refitCanvases(name));
  if (name === 'runs' && changed) loadRuns();
  if (name === 'fractal' && changed) loadFractal();
}

function refitCanvases(view) {
  const names = { ask: ['chain', 'tree'], graph: ['graph'] }[view] || [];
  for (const name of names) {
    const cy = state.cy[name];
    if (!cy) continue;
    cy.resize();
    if (cy.nodes().length) cy.fit(undefined, 30);
  }
}

function setupTabs() {
  for (const view of VIEWS) {
    // The hash drives the view, so links, reloads and the back button all land on the same view.
    $(`tab-${view}`).addEventListener('click', () => {
      if (location.hash === `#${view}`) showView(view);
      else location.hash = view;
    });
  }
  window.addEventListener('hashchange', () => showView(viewFromHash()));
}

// ------------------------------------------------------------------ graph stats (header)

async function loadHealth() {
  const stats = $('graph-stats');
  try {
    const health = await api('GET', '/healthz');
    const g = health.graph || {};
    stats.textContent = `${g.entities ?? '?'} entities · ${g.relations ?? '?'} relations · ${g.triples ?? '?'} facts`;
    stats.title = `server status: ${health.status}`;
  } catch (err) {
    stats.textContent = 'graph unavailable';
    setStatus(`Health check failed: ${err.message}`, true);
  }
}

// ------------------------------------------------------------------ Cytoscape helpers

/** Cytoscape, or null (with a message) if its file did not load. */
function makeCy(options) {
  if (typeof window.cytoscape !== 'function') {
    setStatus('The graph library did not load: graphs cannot be drawn.', true);
    return null;
  }
  return window.cytoscape({ boxSelectionEnabled: false, minZoom: 0.1, maxZoom: 2.5, ...options });
}

function destroyCy(name) {
  if (state.cy[name]) state.cy[name].destroy();
  state.cy[name] = null;
}

/** Hovering an edge shows its edge id and source in a tooltip and in the status bar. */
function attachEdgeTooltip(cy) {
  const tip = $('tooltip');
  cy.on('mouseover', 'edge', (evt) => {
    const data = evt.target.data();
    const where = edgeTitle(data.edgeId, data.origin);
    tip.textContent = data.label ? `${data.label} · ${where}` : where;
    tip.hidden = false;
    moveTooltip(evt);
    setStatus(where);
  });
  cy.on('mousemove', 'edge', moveTooltip);
  cy.on('mouseout', 'edge', () => { tip.hidden = true; });
  cy.on('destroy', () => { tip.hidden = true; });
}

function moveTooltip(evt) {
  const tip = $('tooltip');
  const original = evt.originalEvent;
  let x;
  let y;
  if (original && typeof original.clientX === 'number') {
    x = original.clientX;
    y = original.clientY;
  } else {
    // An event without a mouse (emitted by a script): place the tip at the edge's middle.
    const box = evt.cy.container().getBoundingClientRect();
    const at = evt.renderedPosition || (evt.target.renderedMidpoint ? evt.target.renderedMidpoint() : { x: 0, y: 0 });
    x = box.left + at.x;
    y = box.top + at.y;
  }
  tip.style.left = `${Math.min(x + 14, window.innerWidth - 440)}px`;
  tip.style.top = `${y + 14}px`;
}

// Styles shared by the three graphs: labelled directed edges, dashed when imagined.
const EDGE_STYLE = [
  {
    selector: 'edge',
    style: {
      'curve-style': 'bezier', 'target-arrow-shape': 'triangle', width: 2,
      'line-color': COLORS.alt, 'target-arrow-color': COLORS.alt,
      label: 'data(label)', 'font-size': 10, color: '#4b5563', 'text-rotation': 'autorotate',
      'text-background-color': '#ffffff', 'text-background-opacity': 0.85, 'text-background-padding': 2,
    },
  },
  { selector: 'edge.imagined', style: { 'line-style': 'dashed', 'line-color': '#fdba74', 'target-arrow-color': '#fdba74' } },
];
const NODE_LABEL = {
  label: 'data(label)', 'font-size': 11, 'text-valign': 'bottom', 'text-margin-y': 4,
  'text-wrap': 'wrap', 'text-max-width': 130, color: '#1f2937',
  'text-background-color': '#ffffff', 'text-background-opacity': 0.7, 'text-background-padding': 1,
};

// ------------------------------------------------------------------ Ask

function setupAsk() {
  $('ask-button').addEventListener('click', ask);
  $('question').addEventListener('keydown', (evt) => {
    if (evt.key === 'Enter' && !evt.isComposing) { evt.preventDefault(); ask(); }
  });
  $('question-image').addEventListener('change', () => {
    $('question-image-clear').hidden = !$('question-image').files.length;
  });
  $('question-image-clear').addEventListener('click', () => {
    $('question-image').value = '';
    $('question-image-clear').hidden = true;
  });
  for (const id of ['rate-good', 'rate-bad', 'rate-neutral']) {
    $(id).addEventListener('click', () => rate($(id).dataset.rating));
  }
}

/** JSON, or multipart/form-data when an image goes with the question (same SSE reply). */
function queryBody(question) {
  const extra = {};
  const rollouts = parseInt($('ask-rollouts').value, 10);
  const hops = parseInt($('ask-hops').value, 10);
  if (rollouts > 0) extra.rollouts = rollouts;
  if (hops > 0) extra.hops = hops;
  const image = $('question-image').files[0];
  if (!image) return { question, stream: true, tree: true, ...extra };
  const form = new FormData();
  form.append('question', question);
  form.append('stream', 'true');
  form.append('tree', 'true');
  for (const [key, value] of Object.entries(extra)) form.append(key, String(value));
  form.append('image', image, image.name);
  return form;
}

function setAsking(on) {
  state.asking = on;
  $('ask-button').disabled = on;
  $('ask-progress').hidden = !on;
  $('answer').classList.toggle('streaming', on);
}

async function ask() {
  if (state.asking) return;
  const question = $('question').value.trim();
  if (!question) {
    setStatus('Type a question first.', true);
    $('question').focus();
    return;
  }
  resetAnswer();
  setAsking(true);
  $('ask-empty').hidden = true;
  $('ask-result').hidden = false;
  setStatus('dreaming…');
  let gotVerdict = false;
  try {
    const response = await api('POST', '/v1/query', queryBody(question), { raw: true, accept: 'text/event-stream, application/json' });
    const type = response.headers.get('content-type') || '';
    if (type.includes('text/event-stream')) {
      await readEvents(response, (event, data) => {
        if (event === 'token') appendToken(data && data.text);
        else if (event === 'verdict') { renderVerdict(data); gotVerdict = true; }
        else if (event === 'error') {
          const detail = (data && data.detail) || 'the answer stream reported an error';
          showError('ask-error', data && data.status ? `${detail} (${data.status})` : detail);
        }
      });
    } else {
      renderVerdict(await response.json()); // a server that answered without streaming
      gotVerdict = true;
    }
    if (!gotVerdict) showError('ask-error', 'The answer stream ended without a verdict.');
  } catch (err) {
    showError('ask-error', err.message);
    if (!state.streamed) $('ask-result').hidden = true;
  } finally {
    setAsking(false);
  }
}

function appendToken(text) {
  if (!text) return;
  state.streamed += text;
  $('answer').textContent = state.streamed;
}

/**
 * Reads a text/event-stream body with fetch's reader (EventSource cannot send the key header).
 * Calls onEvent(name, data) per event; data is parsed JSON when it parses.
 */
async function readEvents(response, onEvent) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let raw = '';      // decoded text not yet normalised (may end in a lone \r)
  let buffer = '';   // normalised text not yet split into events
  const dispatch = (block) => {
    let event = 'message';
    const data = [];
    for (const line of block.split('\n')) {
      if (!line || line.startsWith(':')) continue;
      const colon = line.indexOf(':');
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? '' : line.slice(colon + 1);
      if (value.startsWith(' ')) value = value.slice(1);
      if (field === 'event') event = value;
      else if (field === 'data') data.push(value);
    }
    if (!data.length) return;
    const text = data.join('\n');
    let parsed = text;
    try { parsed = JSON.parse(text); } catch (_) { /* keep the text */ }
    onEvent(event, parsed);
  };
  for (;;) {
    const { value, done } = await reader.read();
    raw += decoder.decode(value || new Uint8Array(), { stream: !done });
    // A \r at a chunk's end may be half of \r\n: keep it for the next chunk.
    const cut = !done && raw.endsWith('\r') ? raw.length - 1 : raw.length;
    buffer += raw.slice(0, cut).replace(/\r\n?/g, '\n');
    raw = raw.slice(cut);
    let end;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      dispatch(buffer.slice(0, end));
      buffer = buffer.slice(end + 2);
    }
    if (done) {
      if (buffer.trim()) dispatch(buffer);
      return;
    }
  }
}

/** Clears everything of the previous question (the rating is per verdict). */
function resetAnswer() {
  state.verdict = null;
  state.streamed = '';
  for (const id of ['answer', 'confidence', 'verdict-meta', 'chain', 'alternatives', 'tree-summary']) $(id).replaceChildren();
  showError('ask-error', '');
  destroyCy('chain');
  destroyCy('tree');
  resetRating();
}

function renderVerdict(verdict) {
  state.verdict = verdict;
  $('answer').textContent = verdict.answer || verdict.answer_entity || '(no answer)';
  $('confidence').textContent = confidenceText(verdict);
  $('confidence').className = `confidence ${confidenceClass(verdict.confidence)}`;
  renderMeta(verdict);
  $('chain').replaceChildren(verdict.chain ? chainView(verdict.chain, true)
    : el('p', { class: 'muted no-fact', text: 'The graph does not say: no chain answers this. The nearest chains are below, none of them an answer.' }));
  renderAlternatives(verdict);
  $('ask-result').hidden = false;
  $('rating').hidden = false;
  drawChainGraph(verdict);
  drawTree(verdict);
  const total = verdict.timings_ms && (verdict.timings_ms.total ?? null);
  setStatus(`${verdict.chain ? 'Answered' : 'The graph does not say'}: ${verdict.answer_entity || verdict.answer}${typeof total === 'number' ? ` in ${Math.round(total)} ms` : ''}.`);
}

function confidenceText(verdict) {
  if (typeof verdict.confidence !== 'number') return 'confidence —';
  const sure = verdict.sure === true ? ' (sure)' : verdict.sure === false ? ' (not sure)' : '';
  return `confidence ${verdict.confidence.toFixed(2)}${sure}`;
}

function confidenceClass(confidence) {
  if (typeof confidence !== 'number') return 'unknown';
  return confidence >= 0.7 ? 'high' : confidence >= 0.4 ? 'mid' : 'low';
}

function renderMeta(verdict) {
  const item = (key, value) => el('span', { class: 'meta-item' }, el('b', { text: key }), ' ', String(value));
  const timings = Object.entries(verdict.timings_ms || {})
    .map(([stage, ms]) => `${stage} ${typeof ms === 'number' ? Math.round(ms) : ms}`).join(' · ');
  const linked = (verdict.linked || []).slice(0, 4).map((l) => `${l.name} (${l.how})`).join(', ');
  const image = verdict.image ? `${verdict.image.entity} (${fmt(verdict.image.score)})` : null;
  fill($('verdict-meta'),
    item('answer', verdict.answer_entity ?? '—'),
    item('policy', verdict.policy ?? '—'),
    item('rollouts', verdict.rollouts ?? '—'),
    item('backend', verdict.backend ?? '—'),
    linked ? item('linked', linked) : null,
    image ? item('image', image) : null,
    timings ? item('ms', timings) : null,
  );
}

/** A chain as an ordered list of step chips, with its expert badge when not the walker. */
function chainView(chain, best = false, showScore = true) {
  const wrap = el('div', { class: `chain-view${best ? ' best' : ''}` });
  if (!chain) return el('p', { class: 'muted', text: 'No chain.' });
  const head = el('div', { class: 'chain-head' });
  if (chain.expert && chain.expert !== 'walker') {
    head.append(el('span', { class: 'badge expert', text: chain.expert, title: 'the expert that proposed this chain' }));
  }
  if (showScore && typeof chain.score === 'number') head.append(el('span', { class: 'muted', text: `score ${fmt(chain.score, 3)}` }));
  if (head.childNodes.length) wrap.append(head);
  const steps = chain.steps || [];
  if (!steps.length) {
    wrap.append(el('p', { class: 'muted', text: `No hops: ${chain.answer || 'the answer'} is itself a linked entity.` }));
    return wrap;
  }
  wrap.append(el('ol', { class: 'steps' }, steps.map(stepItem)));
  return wrap;
}

function stepItem(step) {
  const classes = ['step'];
  if (step.imagined) classes.push('imagined');
  if (step.inverse) classes.push('inverse');
  return el('li', { class: classes.join(' '), title: edgeTitle(step.edge_id, step.source), 'data-edge-id': step.edge_id ?? '' },
    el('span', { class: 'what', text: step.what }), ' ',
    el('span', { class: 'action', text: `—${step.action}→` }), ' ',
    el('span', { class: 'result', text: step.result }),
    step.imagined ? [' ', el('span', { class: 'badge imagined-badge', text: 'imagined' })] : null,
    step.inverse ? [' ', el('span', { class: 'badge inverse-badge', text: 'inverse', title: 'walked against the stored direction' })] : null);
}

/** The runner-up candidates (all but the chosen answer), each with its best chain. */
function renderAlternatives(verdict) {
  const box = $('alternatives');
  const all = verdict.candidates || [];
  const chosen = String(verdict.answer_entity ?? '').toLowerCase();
  let others = all.filter((c) => String(c.answer).toLowerCase() !== chosen);
  if (verdict.chain && others.length === all.length && others.length) others = others.slice(1); // the first is the winner
  if (!others.length) {
    box.replaceChildren(el('p', { class: 'muted', text: 'No runner-up answers: every rollout agreed.' }));
    return;
  }
  box.replaceChildren(...others.map((c, i) => el('div', { class: 'alternative' },
    el('div', { class: 'alt-head' },
      el('span', { class: 'alt-answer', text: c.answer }),
      el('span', { class: 'muted', text: `votes ${c.votes ?? '—'} · score ${fmt(c.score, 3)} · confidence ${fmt(c.confidence)}` })),
    chainView(c.best_chain || (verdict.alternatives || [])[i], false, false))));
}

// ---- the chain graph: the best chain on one row, the alternatives on rows around it

function drawChainGraph(verdict) {
  destroyCy('chain');
  const nodes = new Map();
  const edges = [];
  const seen = new Set();
  const placeNode = (name, column, row, kind) => {
    if (name === undefined || name === null || nodes.has(name)) return;
    nodes.set(name, { group: 'nodes', data: { id: name, label: name }, position: { x: column * 190, y: row * 85 }, classes: kind });
  };
  const addChain = (chain, row, kind) => {
    if (!chain) return;
    const steps = chain.steps || [];
    if (!steps.length && chain.answer) placeNode(chain.answer, 0, row, kind);
    steps.forEach((step, i) => {
      placeNode(step.what, i, row, kind);
      placeNode(step.result, i + 1, row, kind);
      const key = `${step.what}\u0000${step.action}\u0000${step.result}`;
      if (seen.has(key)) return;  // an alternative sharing a hop with the best path keeps it dark
      seen.add(key);
      const classes = [kind, step.imagined ? 'imagined' : '', step.inverse ? 'inverse' : ''].filter(Boolean).join(' ');
      edges.push({ group: 'edges', data: { id: `${kind}${edges.length}`, source: step.what, target: step.result, label: step.action, edgeId: step.edge_id, origin: step.source }, classes });
    });
  };
  addChain(verdict.chain, 0, 'best');
  (verdict.alternatives || []).forEach((chain, i) => addChain(chain, (i % 2 ? -1 : 1) * (Math.floor(i / 2) + 1), 'alt'));
  const answer = verdict.answer_entity || (verdict.chain && verdict.chain.answer);
  if (answer && !nodes.has(answer)) placeNode(answer, 0, 0, 'best');
  if (answer) nodes.get(answer).classes += ' answer';
  const first = verdict.chain && verdict.chain.steps && verdict.chain.steps[0];
  if (first && nodes.has(first.what)) nodes.get(first.what).classes += ' start';

  const cy = makeCy({
    container: $('chain-graph'),
    elements: [...nodes.values(), ...edges],
    style: chainStyle(),
    layout: { name: 'preset', fit: true, padding: 36 },
    maxZoom: 1.6,
  });
  if (!cy) return;
  state.cy.chain = cy;
  attachEdgeTooltip(cy);
}

function chainStyle() {
  return [
    { selector: 'node', style: { ...NODE_LABEL, 'background-color': '#cbd5e1', width: 16, height: 16, color: COLORS.altText } },
    { selector: 'node.best', style: { 'background-color': COLORS.best, width: 24, height: 24, color: '#111827', 'font-weight': 600 } },
    { selector: 'node.start', style: { shape: 'round-rectangle', 'background-color': COLORS.start } },
    { selector: 'node.answer', style: { 'background-color': COLORS.best, 'border-width': 5, 'border-color': COLORS.answer, width: 32, height: 32, 'font-size': 13 } },
    ...EDGE_STYLE,
    { selector: 'edge.best', style: { width: 4, 'line-color': COLORS.best, 'target-arrow-color': COLORS.best, color: COLORS.best, 'font-size': 11, 'z-index': 10 } },
    { selector: 'edge.best.imagined', style: { 'line-color': COLORS.imagined, 'target-arrow-color': COLORS.imagined, color: COLORS.imagined } },
  ];
}

// ---- the rollout tree: a prefix tree of the rollouts, roots = start entities

function treeLabel(node) {
  const ends = node.ends > 0 ? ` ✓${node.ends}` : '';
  return `${node.entity} (${node.rollouts})${ends}`;
}

function drawTree(verdict) {
  destroyCy('tree');
  const tree = verdict.tree;
  if (!tree || !Array.isArray(tree.nodes) || !tree.nodes.length) {
    $('tree-summary').textContent = 'no rollout tree in this verdict';
    return;
  }
  $('tree-summary').textContent = `${tree.rollouts} rollouts, the tree shows ${tree.shown}`;
  const ids = new Set(tree.nodes.map((n) => n.id));
  const maxWalks = Math.max(1, ...tree.nodes.map((n) => n.rollouts || 0));
  const elements = [];
  for (const node of tree.nodes) {
    const isRoot = node.parent === null || node.parent === undefined || !ids.has(node.parent);
    const classes = [isRoot ? 'root' : '', node.ends > 0 ? 'ends' : '',
      node.ends > 0 && node.entity === verdict.answer_entity ? 'answer' : ''].filter(Boolean).join(' ');
    elements.push({ group: 'nodes', classes,
      data: { id: `t${node.id}`, label: treeLabel(node), weight: Math.sqrt((node.rollouts || 0) / maxWalks), entity: node.entity } });
    if (isRoot) continue;
    const step = node.step || {};
    elements.push({ group: 'edges', classes: [step.imagined ? 'imagined' : '', step.inverse ? 'inverse' : ''].filter(Boolean).join(' '),
      data: { id: `te${node.id}`, source: `t${node.parent}`, target: `t${node.id}`, label: step.action || '', edgeId: step.edge_id, origin: step.source } });
  }
  // A row per leaf keeps the labels apart: the box grows with the branches (within bounds).
  const parents = new Set(tree.nodes.map((n) => n.parent));
  const leaves = tree.nodes.filter((n) => !parents.has(n.id)).length;
  const box = $('tree');
  box.style.height = `${Math.min(1600, Math.max(360, leaves * 26 + 48))}px`;
  const cy = makeCy({ container: box, elements, style: treeStyle(), maxZoom: 1.6 });
  if (!cy) return;
  state.cy.tree = cy;
  markBestPath(cy, tree.nodes, verdict.chain);
  // breadthfirst stacks levels top-down; laid out in a box of swapped sides and then swapped back,
  // the tree reads left to right like the chain, each level spread over the box's height.
  const width = box.clientWidth || 600;
  const height = box.clientHeight || 360;
  cy.layout({ name: 'breadthfirst', directed: true, roots: cy.nodes('.root'), padding: 24, spacingFactor: 1, animate: false, fit: true,
    boundingBox: { x1: 0, y1: 0, w: height, h: width }, transform: (_node, pos) => ({ x: pos.y, y: pos.x }) }).run();
  attachEdgeTooltip(cy);
}

/** Follows the best chain down the tree so its path can be drawn dark blue. */
function markBestPath(cy, nodes, chain) {
  const steps = (chain && chain.steps) || [];
  if (!steps.length) return;
  const children = new Map();
  for (const node of nodes) {
    const key = node.parent ?? 'root';
    if (!children.has(key)) children.set(key, []);
    children.get(key).push(node);
  }
  let current = (children.get('root') || []).find((n) => n.entity === steps[0].what)
    || nodes.find((n) => (n.parent === null || n.parent === undefined) && n.entity === steps[0].what);
  if (!current) return;
  cy.getElementById(`t${current.id}`).addClass('best');
  for (const step of steps) {
    const next = (children.get(current.id) || []).find((n) => n.entity === step.result && (!n.step || n.step.action === step.action))
      || (children.get(current.id) || []).find((n) => n.entity === step.result);
    if (!next) return;
    cy.getElementById(`t${next.id}`).addClass('best');
    cy.getElementById(`te${next.id}`).addClass('best');
    current = next;
  }
}

function treeStyle() {
  return [
    { selector: 'node', style: {
      ...NODE_LABEL, 'font-size': 10,
      width: 'mapData(weight, 0, 1, 10, 36)', height: 'mapData(weight, 0, 1, 10, 36)',
      'background-color': 'mapData(weight, 0, 1, #c7d2fe, #1e3a8a)',
    } },
    { selector: 'node.root', style: { shape: 'round-rectangle', 'border-width': 2, 'border-color': COLORS.start } },
    { selector: 'node.ends', style: { 'border-width': 3, 'border-color': COLORS.ends, 'font-weight': 600 } },
    { selector: 'node.answer', style: { 'border-width': 5, 'border-color': COLORS.answer } },
    { selector: 'node.best', style: { color: COLORS.best, 'font-weight': 700 } },
    ...EDGE_STYLE,
    { selector: 'edge.best', style: { width: 4, 'line-color': COLORS.best, 'target-arrow-color': COLORS.best, color: COLORS.best } },
    { selector: 'edge.best.imagined', style: { 'line-color': COLORS.imagined, 'target-arrow-color': COLORS.imagined } },
  ];
}

// ---- rating

function resetRating() {
  $('rating').hidden = true;
  $('rate-note').value = '';
  const status = $('rate-status');
  status.textContent = '';
  status.classList.remove('error');
  delete status.dataset.recordId;
  for (const id of ['rate-good', 'rate-bad', 'rate-neutral']) {
    $(id).classList.remove('chosen');
    $(id).disabled = false;
  }
}

async function rate(rating) {
  const verdict = state.verdict;
  if (!verdict) return;
  const status = $('rate-status');
  const buttons = ['rate-good', 'rate-bad', 'rate-neutral'].map($);
  status.textContent = 'saving…';
  status.classList.remove('error');
  buttons.forEach((b) => { b.disabled = true; });
  try {
    const record = await api('POST', '/v1/feedback', { verdict_id: verdict.id, rating, note: $('rate-note').value });
    if (state.verdict !== verdict) return; // a new question was asked meanwhile
    status.textContent = `saved ${record.id}`;
    status.dataset.recordId = record.id;
    buttons.forEach((b) => b.classList.toggle('chosen', b.dataset.rating === rating));
    setStatus(`Feedback “${rating}” saved as ${record.id}.`);
  } catch (err) {
    if (state.verdict !== verdict) return;
    status.textContent = err.message;
    status.classList.add('error');
    setStatus(err.message, true);
  } finally {
    buttons.forEach((b) => { b.disabled = false; });
  }
}

// ------------------------------------------------------------------ Graph explorer

function setupGraph() {
  $('entity-search-button').addEventListener('click', searchEntities);
  $('entity-search').addEventListener('keydown', (evt) => {
    if (evt.key === 'Enter' && !evt.isComposing) { evt.preventDefault(); searchEntities(); }
  });
  $('graph-clear').addEventListener('click', clearGraph);
}

async function searchEntities() {
  const text = $('entity-search').value.trim();
  if (!text) { $('entity-search').focus(); return; }
  const box = $('search-results');
  showError('graph-error', '');
  box.replaceChildren(el('p', { class: 'muted', text: 'searching…' }));
  try {
    const result = await api('GET', `/v1/graph/search?q=${encodeURIComponent(text)}&limit=20`);
    const hits = result.hits || [];
    box.replaceChildren(...(hits.length ? hits.map(hitButton) : [el('p', { class: 'muted', text: `No entity matches “${text}”.` })]));
    setStatus(`${hits.length} hit${hits.length === 1 ? '' : 's'} for “${text}”.`);
  } catch (err) {
    box.replaceChildren();
    showError('graph-error', err.message);
  }
}

function hitButton(hit) {
  return el('button', { type: 'button', class: 'hit', title: `score ${fmt(hit.score, 3)}`, 'data-name': hit.name, onclick: () => expandEntity(hit.name) },
    el('span', { class: 'hit-name', text: hit.name }), ' ',
    el('span', { class: 'hit-type', text: hit.type || 'untyped' }), ' ',
    el('span', { class: `hit-how how-${hit.how}`, text: hit.how }));
}

/** The explorer's Cytoscape, made on first use (the view is visible then). */
function graphCy() {
  if (state.cy.graph) return state.cy.graph;
  const cy = makeCy({ container: $('graph-view'), style: graphStyle(), maxZoom: 1.8 });
  if (!cy) return null;
  state.cy.graph = cy;
  attachEdgeTooltip(cy);
  cy.on('tap', 'node', (evt) => expandEntity(evt.target.id()));
  return cy;
}

function graphStyle() {
  return [
    { selector: 'node', style: { ...NODE_LABEL, 'background-color': '#94a3b8', width: 18, height: 18 } },
    { selector: 'node.expanded', style: { 'background-color': COLORS.best, width: 24, height: 24 } },
    { selector: 'node.focus', style: { 'border-width': 4, 'border-color': COLORS.answer, 'font-weight': 700 } },
    ...EDGE_STYLE,
    { selector: 'edge', style: { 'line-color': '#94a3b8', 'target-arrow-color': '#94a3b8' } },
  ];
}

async function expandEntity(name) {
  let view;
  setStatus(`expanding ${name}…`);
  try {
    view = await api('GET', `/v1/graph/entities/${encodeURIComponent(name)}`);
  } catch (err) {
    showError('graph-error', err.status === 404 ? `Unknown entity: ${name} (${err.message})` : err.message);
    return;
  }
  showError('graph-error', '');
  renderEntityDetail(view);
  const cy = graphCy();
  if (!cy) return;
  const added = addNeighbourhood(cy, view);
  const centre = cy.getElementById(view.entity.name);
  cy.nodes().removeClass('focus');
  centre.addClass('expanded focus');
  // cose from the current positions (randomize off), so the graph the user knows moves little.
  if (added) {
    cy.layout({ name: 'cose', animate: false, randomize: false, fit: true, padding: 30, nodeRepulsion: () => 400000,
      idealEdgeLength: () => 100, nodeOverlap: 20, gravity: 0.5, numIter: 1000 }).run();
  }
  else cy.animate({ center: { eles: centre } }, { duration: 200 });
  $('graph-cap').hidden = !state.graphCapped;
  $('graph-cap').textContent = `The graph holds ${cy.nodes().length} nodes, its limit of ${MAX_GRAPH_NODES}: some neighbours were left out. Clear it to explore further.`;
  setStatus(`${view.entity.name}: ${view.outgoing.length} outgoing, ${view.incoming.length} incoming facts; ${added} new nodes.`);
}

/** Adds the entity and its facts (head→tail, labelled with the relation); returns nodes added. */
function addNeighbourhood(cy, view) {
  const centreName = view.entity.name;
  const existing = cy.getElementById(centreName);
  const base = existing.nonempty() ? { ...existing.position() } : { x: 0, y: 0 };
  let added = 0;
  const ensureNode = (name) => {
    if (cy.getElementById(name).nonempty()) return true;
    if (cy.nodes().length >= MAX_GRAPH_NODES) { state.graphCapped = true; return false; }
    // New nodes start near the expanded one, so the layout moves the old ones little.
    cy.add({ group: 'nodes', data: { id: name, label: name }, position: { x: base.x + (Math.random() - 0.5) * 180, y: base.y + (Math.random() - 0.5) * 180 } });
    added += 1;
    return true;
  };
  ensureNode(centreName);
  for (const fact of [...(view.outgoing || []), ...(view.incoming || [])]) {
    if (!ensureNode(fact.head) || !ensureNode(fact.tail)) continue;
    const id = `f:${fact.edge_id ?? `${fact.head}|${fact.relation}|${fact.tail}`}`;
    if (cy.getElementById(id).nonempty()) continue;
    cy.add({ group: 'edges', data: { id, source: fact.head, target: fact.tail, label: fact.relation, edgeId: fact.edge_id, origin: fact.source } });
  }
  return added;
}

function renderEntityDetail(view) {
  const entity = view.entity;
  fill($('entity-detail'),
    el('h2', { class: 'entity-name', text: entity.name }),
    el('div', {}, el('span', { class: 'badge type', text: entity.type || 'untyped' }),
      entity.token ? [' ', el('span', { class: 'badge token', text: entity.token, title: 'image token' })] : null),
    el('p', { class: entity.description ? 'entity-desc' : 'muted', text: entity.description || 'No description.' }),
    entity.image ? el('p', { class: 'muted', text: `image: ${entity.image}` }) : null,
    factList('Outgoing', view.outgoing || [], 'out'),
    factList('Incoming', view.incoming || [], 'in'),
  );
}

function factList(title, facts, direction) {
  const rows = facts.slice(0, MAX_FACT_ROWS).map((fact) => factRow(fact, direction));
  const more = facts.length > MAX_FACT_ROWS ? el('li', { class: 'muted', text: `… ${facts.length - MAX_FACT_ROWS} more` }) : null;
  return el('div', { class: 'facts' },
    el('h3', { text: `${title} (${facts.length})` }),
    facts.length ? el('ul', { class: 'fact-list' }, rows, more) : el('p', { class: 'muted', text: 'none' }));
}

/** A fact row; the entity at the other end is a link that expands it. */
function factRow(fact, direction) {
  const end = (name, isOther) => (isOther
    ? el('button', { type: 'button', class: 'entity-link', text: name, onclick: () => expandEntity(name) })
    : el('span', { class: 'entity-self', text: name }));
  const confidence = typeof fact.confidence === 'number' && fact.confidence < 1
    ? el('span', { class: 'muted', text: ` (${fmt(fact.confidence)})` }) : null;
  return el('li', { class: 'fact', title: edgeTitle(fact.edge_id, fact.source), 'data-edge-id': fact.edge_id ?? '' },
    end(fact.head, direction === 'in'), ' ',
    el('span', { class: 'action', text: `—${fact.relation}→` }), ' ',
    end(fact.tail, direction === 'out'), confidence);
}

function clearGraph() {
  if (state.cy.graph) state.cy.graph.elements().remove();
  state.graphCapped = false;
  $('graph-cap').hidden = true;
  fill($('entity-detail'), el('p', { class: 'muted', text: 'The last expanded entity shows here.' }));
  setStatus('Graph cleared.');
}

// ------------------------------------------------------------------ Ingest

function setupIngest() {
  const zone = $('drop-zone');
  const over = (evt) => {
    evt.preventDefault();
    if (evt.dataTransfer) evt.dataTransfer.dropEffect = 'copy';
    zone.classList.add('dragging');
  };
  zone.addEventListener('dragenter', over);
  zone.addEventListener('dragover', over);
  zone.addEventListener('dragleave', (evt) => {
    if (!zone.contains(evt.relatedTarget)) zone.classList.remove('dragging');
  });
  zone.addEventListener('drop', (evt) => {
    evt.preventDefault();
    zone.classList.remove('dragging');
    const file = evt.dataTransfer && evt.dataTransfer.files[0];
    if (file) ingest(file);
  });
  // A file dropped beside the zone must not make the browser leave the page to open it.
  window.addEventListener('dragover', (evt) => evt.preventDefault());
  window.addEventListener('drop', (evt) => evt.preventDefault());
  $('ingest-file').addEventListener('change', (evt) => {
    const file = evt.target.files[0];
    if (file) ingest(file).finally(() => { evt.target.value = ''; }); // the same file can be chosen again
  });
}

async function ingest(file) {
  const report = $('ingest-report');
  report.replaceChildren(el('p', { class: 'progress' }, el('span', { class: 'spinner' }), ` uploading ${file.name}…`));
  setStatus(`ingesting ${file.name}…`);
  const form = new FormData();
  form.append('file', file, file.name);
  try {
    const result = await api('POST', '/v1/ingest', form);
    report.replaceChildren(ingestTable(result));
    setStatus(`Ingested ${result.source}: ${result.triples_added} new facts.`);
    loadHealth();
  } catch (err) {
    // The detail is shown verbatim: it names the file and line of the first bad row.
    report.replaceChildren(el('div', { class: 'error', text: err.message }));
    setStatus(err.message, true);
  }
}

function ingestTable(result) {
  const rows = [
    ['source', result.source], ['triples read', result.triples_read], ['triples added', result.triples_added],
    ['entities added', result.entities_added], ['relations added', result.relations_added],
    ['seconds', typeof result.seconds === 'number' ? result.seconds.toFixed(2) : result.seconds],
  ];
  const timings = Object.entries(result.timings_s || {}).map(([k, v]) => `${k} ${typeof v === 'number' ? v.toFixed(2) : v}s`).join(' · ');
  if (timings) rows.push(['timings', timings]);
  return el('table', { class: 'report-table' },
    el('caption', { text: 'Ingested' }),
    el('tbody', {}, rows.map(([key, value]) => el('tr', {}, el('th', { text: key }), el('td', { text: String(value ?? '—') })))));
}

// ------------------------------------------------------------------ Runs

function setupRuns() {
  $('runs-refresh').addEventListener('click', () => { state.runCache.clear(); loadRuns(); });
}

async function loadRuns() {
  if (state.runsLoading) return;
  state.runsLoading = true;
  try {
    const result = await api('GET', '/v1/runs');
    state.runs = result.runs || [];
    const known = new Set(state.runs.map((r) => r.id));
    state.selectedRuns = state.selectedRuns.filter((id) => known.has(id));
    showError('runs-error', '');
    renderRunsList();
    if (state.selectedRuns.length) drawRuns();
  } catch (err) {
    showError('runs-error', err.message);
  } finally {
    state.runsLoading = false;
  }
}

function renderRunsList() {
  const list = $('runs-list');
  if (!state.runs.length) {
    list.replaceChildren(el('p', { class: 'empty-hint' }, 'No training runs yet: ',
      el('code', { text: 'reverie train policy --dataset umls' }), ' or ', el('code', { text: 'reverie train tuner' }), ' writes one.'));
    return;
  }
  list.replaceChildren(...state.runs.map(runRow));
}

function runRow(run) {
  const pick = (evt) => selectRun(run.id, evt.shiftKey || evt.ctrlKey || evt.metaKey);
  const last = run.last || {};
  const selected = state.selectedRuns.includes(run.id);
  return el('div', {
    class: `run${selected ? ' selected' : ''}`, role: 'button', tabindex: '0', 'data-run-id': run.id,
    title: `${run.id}: click to plot, shift-click to overlay`, onclick: pick,
    onkeydown: (evt) => { if (evt.key === 'Enter' || evt.key === ' ') { evt.preventDefault(); pick(evt); } },
  },
  el('span', { class: `badge kind kind-${run.kind}`, text: run.kind }),
  el('span', { class: 'run-name', text: run.name }),
  el('span', { class: 'run-started muted', text: fmtTime(run.started) }),
  el('span', { class: 'run-iters', text: `${run.iterations} it.` }),
  el('span', { class: 'run-last', text: `return ${fmtShort(last.episode_return_mean)}` }));
}

function selectRun(id, overlay) {
  if (overlay) {
    state.selectedRuns = state.selectedRuns.includes(id)
      ? state.selectedRuns.filter((r) => r !== id) : [...state.selectedRuns, id];
  } else {
    state.selectedRuns = [id];
  }
  renderRunsList();
  drawRuns();
}

async function fetchRun(id) {
  if (!state.runCache.has(id)) state.runCache.set(id, await api('GET', `/v1/runs/${encodeURIComponent(id)}`));
  return state.runCache.get(id);
}

/** Plots the selected runs: return against iteration, and throughput in a second, smaller plot. */
async function drawRuns() {
  const token = ++state.plotToken;          // a later click wins over a slower earlier fetch
  const plot = $('run-plot');
  if (!state.selectedRuns.length) {
    plot.replaceChildren(el('p', { class: 'muted', text: 'Pick a run to see its curves.' }));
    return;
  }
  let runs;
  try {
    runs = await Promise.all(state.selectedRuns.map(fetchRun));
  } catch (err) {
    if (token === state.plotToken) showError('runs-error', err.message);
    return;
  }
  if (token !== state.plotToken) return;
  showError('runs-error', '');
  const series = (key) => runs.map((run, i) => ({
    name: `${run.kind} ${run.name}`, color: SERIES_COLORS[i % SERIES_COLORS.length], points: xy(run.points || [], key),
  }));
  const title = runs.map((run) => `${run.kind} ${run.name}`).join(' vs ');
  fill(plot,
    el('h3', { class: 'plot-title', text: title }),
    lineChart({ title: 'episode return (mean)', xLabel: 'iteration', yLabel: 'return', series: series('episode_return_mean'), width: 680, height: 300 }),
    lineChart({ title: 'env steps per second', xLabel: 'iteration', yLabel: 'steps/s', series: series('env_steps_per_s'), width: 680, height: 200 }),
    runs.length === 1 ? lastPointTable(runs[0]) : null,
  );
}

/** [iteration, value] pairs, nulls (NaN) skipped. */
function xy(points, key) {
  const out = [];
  points.forEach((point, i) => {
    const x = typeof point.iteration === 'number' ? point.iteration : i;
    const y = point[key];
    if (typeof y === 'number' && Number.isFinite(y)) out.push([x, y]);
  });
  return out.sort((a, b) => a[0] - b[0]);
}

function lastPointTable(run) {
  const points = run.points || [];
  const last = points[points.length - 1];
  if (!last) return el('p', { class: 'muted', text: 'This run has no points yet.' });
  const cells = Object.entries(last).filter(([, v]) => typeof v === 'number' || v === null)
    .map(([key, value]) => el('span', { class: 'meta-item' }, el('b', { text: key }), ' ', fmtShort(value)));
  return el('div', { class: 'last-point' }, el('h3', { text: `last point (${points.length} in all)` }), el('div', { class: 'verdict-meta' }, cells));
}

// ---- a small SVG line chart: axes, nice ticks, grid, one polyline + dots per series

const SVG_NS = 'http://www.w3.org/2000/svg';

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

/** Round tick values (1, 2, 5 × 10^k steps) covering [lo, hi]. */
function niceTicks(lo, hi, count) {
  if (!(hi > lo)) {
    const pad = Math.abs(lo) * 0.1 || 1;
    lo -= pad;
    hi += pad;
  }
  const raw = (hi - lo) / count;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((f) => f * magnitude).find((s) => s >= raw);
  const ticks = [];
  for (let v = Math.floor(lo / step) * step; v <= Math.ceil(hi / step) * step + step * 1e-9; v += step) {
    ticks.push(+v.toPrecision(12));
  }
  return ticks;
}

function lineChart({ title, xLabel, yLabel, series, width, height }) {
  const m = { left: 60, right: 18, top: 30, bottom: 42 };
  const root = svg('svg', { class: 'chart', viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': title });
  root.append(svg('text', { x: m.left, y: 18, class: 'chart-title' }, title));
  const all = series.flatMap((s) => s.points);
  if (!all.length) {
    root.append(svg('text', { x: width / 2, y: height / 2, 'text-anchor': 'middle', class: 'chart-empty' }, 'no values'));
    return root;
  }
  const xTicks = niceTicks(Math.min(...all.map((p) => p[0])), Math.max(...all.map((p) => p[0])), 6);
  const yTicks = niceTicks(Math.min(...all.map((p) => p[1])), Math.max(...all.map((p) => p[1])), 4);
  const [x0, x1] = [xTicks[0], xTicks[xTicks.length - 1]];
  const [y0, y1] = [yTicks[0], yTicks[yTicks.length - 1]];
  const sx = (x) => m.left + ((x - x0) / (x1 - x0)) * (width - m.left - m.right);
  const sy = (y) => height - m.bottom - ((y - y0) / (y1 - y0)) * (height - m.top - m.bottom);

  for (const t of yTicks) {
    root.append(svg('line', { x1: m.left, x2: width - m.right, y1: sy(t), y2: sy(t), class: 'grid' }));
    root.append(svg('text', { x: m.left - 6, y: sy(t) + 4, 'text-anchor': 'end' }, fmtShort(t)));
  }
  for (const t of xTicks) {
    root.append(svg('line', { x1: sx(t), x2: sx(t), y1: height - m.bottom, y2: height - m.bottom + 4, class: 'axis' }));
    root.append(svg('text', { x: sx(t), y: height - m.bottom + 16, 'text-anchor': 'middle' }, fmtShort(t)));
  }
  root.append(svg('line', { x1: m.left, x2: width - m.right, y1: height - m.bottom, y2: height - m.bottom, class: 'axis' }));
  root.append(svg('line', { x1: m.left, x2: m.left, y1: m.top, y2: height - m.bottom, class: 'axis' }));
  root.append(svg('text', { x: (m.left + width - m.right) / 2, y: height - 6, 'text-anchor': 'middle', class: 'axis-label' }, xLabel));
  root.append(svg('text', { x: 14, y: (m.top + height - m.bottom) / 2, 'text-anchor': 'middle', class: 'axis-label',
    transform: `rotate(-90 14 ${(m.top + height - m.bottom) / 2})` }, yLabel));

  for (const s of series) {
    if (!s.points.length) continue;
    root.append(svg('polyline', { points: s.points.map(([x, y]) => `${sx(x)},${sy(y)}`).join(' '), fill: 'none', stroke: s.color, 'stroke-width': 2 }));
    if (s.points.length <= 200) {
      for (const [x, y] of s.points) {
        const dot = svg('circle', { cx: sx(x), cy: sy(y), r: 3, fill: s.color });
        dot.append(svg('title', {}, `${s.name}: iteration ${x}, ${fmtShort(y)}`));
        root.append(dot);
      }
    }
  }
  if (series.length > 1) {
    series.forEach((s, i) => {
      const y = m.top + 4 + i * 15;
      root.append(svg('rect', { x: width - m.right - 170, y: y - 8, width: 10, height: 10, fill: s.color }));
      root.append(svg('text', { x: width - m.right - 155, y, class: 'legend-text' }, s.name));
    });
  }
  return root;
}

// ------------------------------------------------------------------ Fractal

function setupFractal() {
  $('fractal-send').addEventListener('click', chatFractal);
  $('fractal-message').addEventListener('keydown', (evt) => {
    if (evt.key === 'Enter' && !evt.isComposing) { evt.preventDefault(); chatFractal(); }
  });
  const slider = $('fractal-temperature');
  slider.addEventListener('input', () => { $('fractal-temperature-value').textContent = Number(slider.value).toFixed(1); });
  $('fractal-train').addEventListener('click', trainFractal);
  $('fractal-stop').addEventListener('click', stopFractal);
  $('fractal-save').addEventListener('click', saveFractal);
  $('fractal-load-file').addEventListener('change', (evt) => {
    const file = evt.target.files[0];
    if (file) loadFractalState(file).finally(() => { evt.target.value = ''; });
  });
}

/** The network's status and its training's progress; polls while a training runs. */
async function loadFractal() {
  try {
    renderFractal(await api('GET', '/v1/fractal'));
    showError('fractal-error', '');
  } catch (err) {
    showError('fractal-error', err.message);
  }
}

function renderFractal(status) {
  state.fractal.status = status;
  const summary = $('fractal-summary');
  summary.textContent = status.trained
    ? `${status.nodes ?? '?'} nodes · depth ${status.depth ?? '?'} · complexity ${fmtShort(status.complexity)} · `
      + `${fmtShort(status.weights)} weights · ${status.vocabulary ?? '?'} words · ${status.epochs} epochs`
    : 'not trained yet: train it on a Q&A file, or load a saved state';
  $('fractal-save').disabled = !status.trained;
  renderFractalJob(status.training || { state: 'idle' });
  const running = status.training && status.training.state === 'running';
  if (running) pollFractal();
  else refreshFractalPlot(status);
}

function renderFractalJob(job) {
  const running = job.state === 'running';
  $('fractal-train').disabled = running;
  $('fractal-stop').hidden = !running;
  const bar = $('fractal-progress');
  bar.max = Math.max(job.epochs || 1, 1);
  bar.value = job.state === 'idle' ? 0 : job.epoch || 0;
  const text = $('fractal-progress-text');
  text.classList.toggle('failed', job.state === 'failed');
  const numbers = job.epoch
    ? ` · loss ${fmt(job.loss, 3)} · ${job.nodes ?? '?'} nodes · depth ${job.depth ?? '?'} · complexity ${fmtShort(job.complexity)}`
    : '';
  const took = typeof job.seconds === 'number' ? ` in ${job.seconds.toFixed(1)} s` : '';
  text.textContent = {
    idle: '',
    running: `epoch ${job.epoch} of ${job.epochs} · ${job.phase || 'training'}${numbers}`,
    done: `done: ${job.epoch} epochs on ${job.pairs ?? '?'} pairs${took}${numbers}`,
    stopped: `stopped after epoch ${job.epoch} of ${job.epochs}${took}${numbers}`,
    failed: `failed: ${job.error || 'the training stopped with an error'}`,
  }[job.state] ?? job.state;
}

/** Follows a running training, one status call every FRACTAL_POLL_MS, until it ends. */
async function pollFractal() {
  if (state.fractal.polling) return;
  state.fractal.polling = true;
  try {
    for (;;) {
      await new Promise((resolve) => setTimeout(resolve, FRACTAL_POLL_MS));
      const status = await api('GET', '/v1/fractal');
      state.fractal.status = status;
      renderFractalJob(status.training);
      if (status.training.state !== 'running') {
        state.fractal.polling = false;
        renderFractal(status);
        const job = status.training;
        setStatus(job.state === 'failed' ? `Training failed: ${job.error}` : `Training ${job.state}.`, job.state === 'failed');
        return;
      }
    }
  } catch (err) {
    showError('fractal-error', err.message);
  } finally {
    state.fractal.polling = false;
  }
}

/** The Q&A file, read here and sent as JSON with the epochs and the graphs ticked. */
async function trainFractal() {
  showError('fractal-error', '');
  const body = { epochs: parseInt($('fractal-epochs').value, 10) || 40 };
  const graphs = ['world', 'umls'].filter((name) => $(`fractal-graph-${name}`).checked);
  const file = $('fractal-file').files[0];
  if (file) {
    const text = await file.text();
    try {
      body.pairs = JSON.parse(text);
    } catch (err) {
      showError('fractal-error', `${file.name} is not JSON: ${err.message}`);
      return;
    }
  }
  if (graphs.length) body.graphs = graphs;
  if (!file && !graphs.length) {
    showError('fractal-error', 'Choose a Q&A file, or tick a graph whose facts to learn.');
    return;
  }
  try {
    renderFractalJob(await api('POST', '/v1/fractal/train', body));
    setStatus(`training the fractal network${file ? ` on ${file.name}` : ''}…`);
    pollFractal();
  } catch (err) {
    showError('fractal-error', err.message);  // a bad file: the server names the entry
  }
}

async function stopFractal() {
  try {
    renderFractalJob(await api('DELETE', '/v1/fractal/train'));
  } catch (err) {
    showError('fractal-error', err.message);
  }
}

async function chatFractal() {
  if (state.fractal.chatting) return;
  const message = $('fractal-message').value.trim();
  if (!message) { $('fractal-message').focus(); return; }
  const chat = $('fractal-chat');
  if (!chat.querySelector('.bubble')) chat.replaceChildren();
  chat.append(el('div', { class: 'bubble user', text: message }));
  const pending = el('div', { class: 'bubble pending', text: 'thinking…' });
  chat.append(pending);
  chat.scrollTop = chat.scrollHeight;
  $('fractal-message').value = '';
  state.fractal.chatting = true;
  $('fractal-send').disabled = true;
  try {
    const temperature = Number($('fractal-temperature').value);
    const reply = await api('POST', '/v1/fractal/chat', { message, temperature });
    pending.replaceWith(el('div', { class: 'bubble fractal', text: reply.reply }));
    showError('fractal-error', '');
  } catch (err) {
    pending.remove();
    showError('fractal-error', err.message);
  } finally {
    state.fractal.chatting = false;
    $('fractal-send').disabled = false;
    chat.scrollTop = chat.scrollHeight;
  }
}

/** The plot (fetched with the key, so it is shown from a blob URL), drawn again when the network changed. */
async function refreshFractalPlot(status) {
  const img = $('fractal-plot');
  const which = status.trained ? `${status.epochs}:${status.weights}:${JSON.stringify(status.history.slice(-1))}` : null;
  if (which === state.fractal.plotOf && (which === null || !img.hidden)) return;
  state.fractal.plotOf = which;
  if (!status.trained) {
    img.hidden = true;
    $('fractal-plot-empty').hidden = false;
    return;
  }
  try {
    const blob = await (await api('GET', '/v1/fractal/plot.png', null, { raw: true })).blob();
    if (state.fractal.plotUrl) URL.revokeObjectURL(state.fractal.plotUrl);
    state.fractal.plotUrl = URL.createObjectURL(blob);
    img.src = state.fractal.plotUrl;
    img.hidden = false;
    $('fractal-plot-empty').hidden = true;
  } catch (err) {
    img.hidden = true;
    $('fractal-plot-empty').hidden = false;
    if (err.status !== 404) showError('fractal-error', err.message);
  }
}

/** Downloads the state file (fetched with the key, then saved from a blob URL). */
async function saveFractal() {
  try {
    const blob = await (await api('GET', '/v1/fractal/state', null, { raw: true })).blob();
    const url = URL.createObjectURL(blob);
    const link = el('a', { href: url, download: 'fractal.safetensors' });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
    setStatus('State saved as fractal.safetensors.');
  } catch (err) {
    showError('fractal-error', err.message);
  }
}

async function loadFractalState(file) {
  try {
    renderFractal(await api('PUT', '/v1/fractal/state', file));
    showError('fractal-error', '');
    setStatus(`Loaded ${file.name}.`);
  } catch (err) {
    showError('fractal-error', `${file.name}: ${err.message}`);  // the server's network is as it was
  }
}

// ------------------------------------------------------------------ start-up

function init() {
  setupKeyDialog();
  setupTabs();
  setupAsk();
  setupGraph();
  setupIngest();
  setupRuns();
  setupFractal();
  showView(viewFromHash());
  loadHealth();
}

// For debugging and browser tests: the page's state (Cytoscape instances under state.cy) and api().
window.reverie = { state, api };

if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init);
else init();
