// Images: every download with its live progress (from the events stream),
// failovers, errors in words, and Cancel/Delete. Rows are updated in place,
// so focus stays where it was while numbers move.

import { del, follow } from './api.js';
import { explain } from './errors.js';
import { h, fill, bytes, duration, ago, showError, showInfo } from './dom.js';

const terminal = new Set(['READY', 'FAILED', 'CANCELLED']);
const maxStreams = 4; // browsers allow 6 connections per host; leave room for the rest

const rows = new Map(); // image id → {img, el, parts}
const streams = new Map(); // image id → AbortController
const rest = new Map(); // image id → time before which its stream is not reopened
let settings = { web: 'http://127.0.0.1:8233', namespace: 'default' };
let onChange = () => {};

/** Sets where Temporal Web is, for the workflow links. */
export function setTemporalWeb(web, namespace) {
  settings = { web: web.replace(/\/+$/, ''), namespace: namespace || 'default' };
  for (const r of rows.values()) update(r);
}

/** Sets the function called after a cancel or delete, to refresh the list. */
export function onImagesChanged(fn) { onChange = fn; }

/** Lists the pools in the pool filter, keeping the choice. */
export function setPoolFilter(pools) {
  const sel = document.getElementById('filter-pool');
  const before = sel.value;
  fill(sel, h('option', { value: '' }, 'every pool'), pools.map((p) => h('option', { value: p.id }, p.name || p.id)));
  sel.value = pools.some((p) => p.id === before) ? before : '';
}

/** Hides the rows that the filters leave out. */
export function applyFilters() {
  const status = document.getElementById('filter-status').value;
  const pool = document.getElementById('filter-pool').value;
  let shown = 0;
  for (const { img, el } of rows.values()) {
    const live = !terminal.has(img.status);
    const ok = (!pool || img.pool_id === pool) &&
      (!status || (status === 'live' ? live : status === 'ended' ? !live && img.status !== 'READY' : img.status === status));
    el.hidden = !ok;
    if (ok) shown++;
  }
  document.getElementById('images-empty').hidden = rows.size > 0;
  document.getElementById('images-filtered').hidden = !(rows.size > 0 && shown === 0);
}

function newer(a, b) {
  return !b || !a.updated_at || !b.updated_at || Date.parse(a.updated_at) >= Date.parse(b.updated_at);
}

/** Shows one image snapshot, unless an already shown one is newer. */
export function upsert(img) {
  if (!img || !img.id || !img.status) return; // not an Image (e.g. an error event)
  let r = rows.get(img.id);
  if (r && !newer(img, r.img)) return;
  if (!r) {
    r = build(img);
    rows.set(img.id, r);
    const list = document.getElementById('images-list');
    list.prepend(r.el);
  }
  // The API lists failovers only while a download is live: keep those seen.
  if (!(img.failovers || []).length && (r.img.failovers || []).length) img = { ...img, failovers: r.img.failovers };
  r.img = img;
  update(r);
  applyFilters();
}

/** Shows the whole list: newest first, rows of deleted images removed. */
export function renderImages(images) {
  const ids = new Set(images.map((i) => i.id));
  for (const [id, r] of rows) {
    if (!ids.has(id)) { r.el.remove(); rows.delete(id); stopStream(id); }
  }
  const sorted = [...images].sort((a, b) => Date.parse(a.created_at || 0) - Date.parse(b.created_at || 0));
  for (const img of sorted) upsert(img);
  const list = document.getElementById('images-list');
  for (const img of sorted.reverse()) list.append(rows.get(img.id).el);
  applyFilters();
  followLive();
}

/** Follows the events stream of live images, a few at a time. */
export function followLive() {
  for (const r of rows.values()) {
    if (streams.size >= maxStreams) return;
    const id = r.img.id;
    if (!terminal.has(r.img.status) && !streams.has(id) && !(rest.get(id) > Date.now())) stream(id);
  }
}

function stream(id) {
  const ctl = new AbortController();
  streams.set(id, ctl);
  follow('/v1/images/' + encodeURIComponent(id) + '/events', upsert, ctl.signal)
    .catch(() => {}) // the periodic list refresh shows the state and restarts the stream
    .finally(() => {
      if (streams.get(id) === ctl) streams.delete(id);
      // A stream that ended while the image still looks live (or failed)
      // is reopened by a later list refresh, not at once in a loop.
      rest.set(id, Date.now() + 2500);
      followLive();
    });
}

function stopStream(id) {
  const ctl = streams.get(id);
  if (ctl) { ctl.abort(); streams.delete(id); }
}

function build(img) {
  const parts = {
    name: h('h3', {}),
    status: h('span', { class: 'badge' }),
    signature: h('span', { class: 'badge signature' }),
    meta: h('p', { class: 'meta' }),
    source: h('p', { class: 'meta sub' }),
    file: h('p', { class: 'meta sub file' }),
    mirrors: h('p', { class: 'meta sub mirrors' }),
    bar: h('progress', { max: '100' }),
    numbers: h('p', { class: 'numbers' }),
    failovers: h('ul', { class: 'failovers', 'aria-label': 'Failovers' }),
    note: h('p', { class: 'note' }),
    error: h('div', { class: 'status-line error', role: 'alert' }),
    actionStatus: h('div', { class: 'status-line', role: 'status', 'aria-live': 'polite' }),
    link: h('a', { target: '_blank', rel: 'noopener' }, 'Workflow in Temporal Web'),
    cancel: h('button', { type: 'button', class: 'danger', 'data-action': 'cancel' }, 'Cancel'),
    del: h('button', { type: 'button', class: 'quiet', 'data-action': 'delete' }, 'Delete'),
  };
  const el = h('li', { class: 'image', 'data-image': img.id },
    h('div', { class: 'head' }, parts.name, h('span', { class: 'badges' }, parts.signature, parts.status)),
    parts.meta, parts.source, parts.file, parts.mirrors, parts.bar, parts.numbers, parts.failovers, parts.note, parts.error,
    h('div', { class: 'actions' }, parts.cancel, parts.del, parts.link),
    parts.actionStatus);
  const r = { img, el, parts };
  parts.cancel.addEventListener('click', () => remove(r, 'cancel'));
  parts.del.addEventListener('click', () => remove(r, 'delete'));
  return r;
}

function update(r) {
  const { img, parts, el } = r;
  const p = img.progress || {};
  const label = img.name || img.catalog_id || img.id;
  parts.name.textContent = label;
  parts.status.textContent = img.status;
  parts.status.className = 'badge status-' + (img.status || '').toLowerCase();
  el.dataset.status = img.status;
  fill(parts.meta,
    'Pool ', h('strong', {}, img.pool_id || '—'),
    ' · node ', h('strong', {}, p.node_id || img.node_id || (terminal.has(img.status) ? 'none' : 'not chosen yet')),
    p.attempt > 1 ? ' · attempt ' + p.attempt : '',
    ' · started ' + ago(img.created_at));
  fill(parts.source,
    img.catalog_id ? 'From the catalog: ' + img.catalog_id : img.source_url ? 'From ' + img.source_url : '',
    img.credential ? ' · with credential ' + img.credential : '',
    img.version ? h('span', { class: 'version' }, ' · version ', h('code', {}, img.version)) : null,
    img.latest ? h('span', { class: 'badge latest', title: img.catalog_id + '-latest names this file' }, 'latest') : null,
    img.pinned ? h('span', { class: 'badge pinned', title: 'never removed by a subscription' }, 'pinned') : null);
  updateProgress(parts, img, p, label);
  updateFile(parts.file, img);
  updateMirrors(parts.mirrors, p);
  updateSignature(parts.signature, img);
  updateFailovers(parts.failovers, img, p);
  updateNote(parts.note, img);
  // A cancelled image carries the code "cancelled": that is its status, not a problem.
  const problem = img.error && img.error.code && img.status !== 'CANCELLED';
  if (problem) showError(parts.error, explain(img.error));
  parts.error.hidden = !problem;
  if (r.shown !== img.status) fill(parts.actionStatus); // "Cancelling…" is done with
  r.shown = img.status;
  const live = !terminal.has(img.status);
  parts.cancel.hidden = !live;
  parts.del.hidden = live;
  parts.cancel.setAttribute('aria-label', 'Cancel ' + label);
  parts.del.setAttribute('aria-label', 'Delete ' + label);
  parts.link.hidden = !img.workflow_id;
  if (img.workflow_id) {
    parts.link.href = settings.web + '/namespaces/' + encodeURIComponent(settings.namespace) +
      '/workflows/' + encodeURIComponent(img.workflow_id);
  }
}

function updateProgress(parts, img, p, label) {
  const bar = parts.bar;
  bar.setAttribute('aria-label', 'Progress of ' + label);
  if (img.status === 'READY') bar.value = 100;
  else if (p.bytes_total > 0) bar.value = Math.min(100, p.percent || (100 * p.bytes_done) / p.bytes_total);
  else bar.removeAttribute('value'); // indeterminate: size not known yet
  bar.hidden = img.status === 'CANCELLED' || (img.status === 'FAILED' && !p.bytes_done);
  const n = [];
  if (img.status === 'READY') {
    const sum = img.checksum || '';
    n.push(bytes(img.size_bytes || p.bytes_total) + (img.unverified ? ' · not verified' + (sum ? ' (its ' + sum + ')' : '') : ' · verified ' + sum));
  } else if (img.status === 'VERIFYING') {
    n.push('Verifying the checksum…');
  } else if (img.status === 'CONVERTING') {
    n.push('Converting to the pool’s image format (qemu-img)…');
  } else if (img.status === 'PENDING' && p.waiting_until) {
    n.push(waitingFor(p.waiting_until, p.message));
    if (p.bytes_done > 0) n.push('paused at ' + bytes(p.bytes_done) + (p.bytes_total > 0 ? ' of ' + bytes(p.bytes_total) : ''));
  } else if (p.bytes_total > 0 || p.bytes_done > 0) {
    const pct = p.bytes_total > 0 ? (p.percent ?? (100 * p.bytes_done) / p.bytes_total) : null;
    if (pct !== null) n.push(Number(pct).toFixed(1) + '%');
    n.push(bytes(p.bytes_done) + (p.bytes_total > 0 ? ' of ' + bytes(p.bytes_total) : ''));
    if (!terminal.has(img.status)) {
      if (p.bytes_per_second > 0) n.push(bytes(p.bytes_per_second) + '/s');
      if (p.eta_seconds !== null && p.eta_seconds !== undefined) n.push(duration(p.eta_seconds) + ' left');
    }
  } else if (img.status === 'PENDING') {
    n.push('Waiting for a node…');
  }
  parts.numbers.textContent = n.join(' · ');
  parts.numbers.title = img.status === 'PENDING' && p.message ? p.message : '';
}

/**
 * Says until when a download waits for its pool's transfer window (or, by
 * its message, for a node of its pool), in the browser's time: "HH:MM"
 * today, with the date otherwise.
 */
function waitingFor(until, message) {
  const t = new Date(until);
  const hm = t.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', hour12: false });
  const today = t.toDateString() === new Date().toDateString();
  const what = (message || '').startsWith('waiting for a node') ? 'a node' : 'transfer window';
  return 'Waiting for ' + what + ' until ' + (today ? hm : t.toLocaleDateString() + ' ' + hm);
}

// What the node found in the published file, once READY: its format and
// virtual size, how the download was compressed, and both checksums (they
// differ when the node decompressed the download).
function updateFile(line, img) {
  const n = [];
  if (img.format) n.push(img.format + (img.virtual_size_bytes > 0 ? ' disk, ' + bytes(img.virtual_size_bytes) + ' virtual' : ' disk'));
  else if (img.virtual_size_bytes > 0) n.push(bytes(img.virtual_size_bytes) + ' virtual');
  if (img.compression && img.compression !== 'none') n.push('downloaded ' + img.compression + '-compressed');
  if (img.source_checksum) n.push('source ' + img.source_checksum);
  if (img.file_checksum) n.push('file ' + img.file_checksum);
  line.textContent = n.join(' · ');
  line.hidden = n.length === 0;
}

// Which mirror served how much, when the image has several: the node
// moves on to the next on a 404, a server error or a stall.
function updateMirrors(line, p) {
  const ms = p.mirrors || [];
  line.textContent = ms.length > 1
    ? 'Mirrors: ' + ms.map((m) => hostOf(m.url) + ' ' + bytes(m.bytes)).join(' · ')
    : '';
  line.hidden = ms.length <= 1;
}

function hostOf(url) {
  try { return new URL(url).host; } catch { return url; }
}

// What the signature of the vendor's checksum file said, always visible:
// "not checked" is never dressed up as verified.
const signatures = {
  verified: ['signature verified', 'ok', 'The vendor’s checksum file was signed by a key its catalog entry pins, and the signature matched.'],
  unsigned: ['unsigned', 'muted', 'Nothing signed to check: the vendor does not sign its checksum file, or the checksum was given.'],
  not_checked: ['signature not checked', 'warn', 'The checksum file is signed, but the worker does not hold the vendor’s key (see the worker’s --keyring), or the checksum is not resolved yet.'],
};

function updateSignature(badge, img) {
  const [text, cls, why] = signatures[img.signature] || signatures.not_checked;
  badge.textContent = text;
  badge.className = 'badge signature ' + cls;
  badge.title = why;
  badge.dataset.signature = img.signature || 'not_checked';
}

// What happened to a node, in a word, from the workflow's reason.
function what(reason) {
  // "is down": its agent crashed (refused), left at once without the grace.
  if (/ is down/i.test(reason)) return 'down';
  if (/unreachable|does not answer|connection refused|no route/i.test(reason)) return 'unreachable';
  if (/timed out|timeout/i.test(reason)) return 'timed out';
  return 'failed';
}

function updateFailovers(list, img, p) {
  const fo = img.failovers || [];
  fill(list, fo.map((f, i) => {
    const next = i + 1 < fo.length ? fo[i + 1].node_id : (p.node_id || img.node_id);
    const moved = next && next !== f.node_id ? ' → continued on ' + next : '';
    return h('li', {}, f.node_id + ' ' + what(f.reason || '') + moved,
      f.at ? h('span', { class: 'sub-inline' }, ' (' + ago(f.at) + ')') : null,
      f.reason ? h('details', {}, h('summary', {}, 'Why'), h('p', {}, f.reason)) : null);
  }));
  list.hidden = fo.length === 0;
}

function updateNote(note, img) {
  const parts = [];
  if (img.status === 'READY' && img.path) parts.push('At ' + img.path + ' on ' + img.node_id + '.');
  if (img.status === 'CANCELLED') parts.push('Cancelled; the partial file was removed.');
  if (img.unverified) parts.push('Unverified: no checksum was given or found, so the file was not checked.');
  note.textContent = parts.join(' ');
  note.hidden = parts.length === 0;
}

async function remove(r, action) {
  const { img, parts } = r;
  if (action === 'delete' && img.status === 'READY' && parts.del.dataset.confirm !== 'yes') {
    parts.del.dataset.confirm = 'yes';
    parts.del.textContent = 'Really delete the file?';
    showInfo(parts.actionStatus, 'This removes ' + (img.path || 'the file') + ' from the pool. Click again to delete.');
    return;
  }
  const button = action === 'cancel' ? parts.cancel : parts.del;
  button.disabled = true;
  try {
    const status = await del('/v1/images/' + encodeURIComponent(img.id));
    showInfo(parts.actionStatus, status === 202 ? 'Cancelling…' : 'Deleted.');
    if (status !== 202) document.getElementById('images-h').focus(); // the row goes away
  } catch (err) {
    showError(parts.actionStatus, explain(err));
  } finally {
    button.disabled = false;
    delete parts.del.dataset.confirm;
    parts.del.textContent = 'Delete';
  }
  onChange();
}
