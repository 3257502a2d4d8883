// The catalog: images one can download, the pool to put them in, and the
// form for any other URL.

import { post } from './api.js';
import { explain } from './errors.js';
import { h, fill, bytes, showError, showInfo } from './dom.js';
import { usability } from './nodes.js';

const select = () => document.getElementById('pool');

/** The pool picked for downloads, or '' when no pool is usable. */
export function selectedPool() {
  const s = select();
  return s.value && !s.selectedOptions[0].disabled ? s.value : '';
}

/**
 * Fills the pool selector, keeping the user's choice while it stays usable
 * and otherwise picking the first usable pool. Unusable pools stay listed,
 * disabled, with the reason.
 */
export function renderPools(state) {
  const nodesById = new Map(state.nodes.map((n) => [n.id, n]));
  const s = select();
  const before = s.value;
  const rows = state.pools.map((p) => ({ pool: p, ...usability(p, nodesById) }));
  const options = rows.map(({ pool, usable, why }) =>
    h('option', { value: pool.id, disabled: !usable },
      (pool.name || pool.id) + (pool.image_format ? ' (' + pool.image_format + ')' : '') + (usable ? '' : ' — unavailable: ' + why)));
  const firstUsable = rows.find((r) => r.sure) || rows.find((r) => r.usable);
  if (!firstUsable) options.unshift(h('option', { value: '', disabled: true }, 'No pool can take a download now'));
  fill(s, options);
  const keep = rows.find((r) => r.pool.id === before && r.usable);
  s.value = keep ? before : firstUsable ? firstUsable.pool.id : '';
  renderPoolNote(rows);
  const none = !firstUsable;
  document.querySelectorAll('button[data-download], #custom-submit').forEach((b) => { b.disabled = none; });
}

function renderPoolNote(rows) {
  const note = document.getElementById('pool-note');
  const picked = rows.find((r) => r.pool.id === select().value);
  const blocked = rows.filter((r) => !r.usable);
  const parts = [];
  if (rows.length === 0) parts.push('There are no storage pools yet: create one with POST /v1/pools and assign nodes to it.');
  else if (picked && picked.sure) parts.push('Served by ' + picked.why + '.');
  else if (picked) parts.push('Its nodes are ' + picked.why + ': the download waits for one to answer.');
  for (const r of blocked) parts.push(r.pool.id + ' cannot take downloads now: ' + r.why + '.');
  fill(note, parts.join(' '));
}

function checksumText(entry) {
  if (entry.checksum) {
    const algo = entry.checksum.split(':')[0];
    return h('span', { title: entry.checksum }, 'pinned ' + algo);
  }
  if (entry.checksum_url) {
    const file = entry.checksum_url.split('/').pop();
    const named = file.length <= 16 ? ' (' + file + ')' : ''; // SHA256SUMS, CHECKSUM; long names only in the tooltip
    return h('span', { title: entry.checksum_url }, 'from the vendor' + named);
  }
  return h('span', { class: 'warn' }, 'none');
}

function entryCard(entry, onDownload) {
  const os = [entry.os, entry.version, entry.arch].filter(Boolean).join(' ');
  return h('li', { class: 'card', 'data-entry': entry.id },
    h('h3', {}, entry.name || entry.id),
    h('dl', {},
      h('dt', {}, 'OS'), h('dd', {}, os || '—'),
      h('dt', {}, 'Format'), h('dd', {}, entry.format || '—'),
      h('dt', {}, 'Size'), h('dd', {}, entry.size_bytes ? bytes(entry.size_bytes) : 'unknown'),
      h('dt', {}, 'Checksum'), h('dd', {}, checksumText(entry))),
    h('button', {
      type: 'button', 'data-download': entry.id, 'aria-label': 'Download ' + (entry.name || entry.id),
      onclick: (ev) => onDownload(ev.currentTarget, { catalog_id: entry.id }, entry.name || entry.id),
    }, 'Download'));
}

/** Renders the catalog entries; onStarted(image) is called after a start. */
export function renderCatalog(entries, onStarted) {
  const status = document.getElementById('catalog-status');
  const download = (button, body, label) => start(button, body, label, status, onStarted);
  const list = document.getElementById('catalog-list');
  fill(list, entries.length ? entries.map((e) => entryCard(e, download)) : h('li', { class: 'empty' }, 'The catalog is empty.'));
}

/** Wires the custom URL form. */
export function wireCustomForm(onStarted) {
  const form = document.getElementById('custom');
  const status = document.getElementById('custom-status');
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const url = form.url.value.trim();
    if (!url) {
      showError(status, { title: 'Enter the URL of the image.', detail: '' });
      form.url.focus();
      return;
    }
    const body = { url };
    if (form.name.value.trim()) body.name = form.name.value.trim();
    if (form.checksum.value.trim()) body.checksum = form.checksum.value.trim();
    start(document.getElementById('custom-submit'), body, body.name || url, status, onStarted);
  });
}

async function start(button, body, label, status, onStarted) {
  const pool = selectedPool();
  if (!pool) {
    showError(status, { title: 'No storage pool can take a download now.', detail: document.getElementById('pool-note').textContent });
    return;
  }
  button.disabled = true;
  try {
    const res = await post('/v1/images', { ...body, pool_id: pool });
    const img = res.body;
    const what = res.status === 200 ? ' is already in ' + pool + ' (' + img.status + '). ' : ': download started into ' + pool + '. ';
    showInfo(status, label + what, h('a', { href: '#images', 'data-image-link': img.id }, 'Follow it in Images'));
    onStarted(img);
  } catch (err) {
    showError(status, explain(err));
  } finally {
    button.disabled = false;
  }
}
