// Distributions: one image onto many pools, fetched from the mirror once.
// Each distribution is a matrix, one cell per pool: the copy's status, its
// live progress, and where its bytes came from (the mirror, or the node
// whose READY copy it read).

import { post, del, list } from './api.js';
import { explain } from './errors.js';
import { h, fill, bytes, ago, showError, showInfo } from './dom.js';

const live = new Set(['PENDING', 'DOWNLOADING', 'VERIFYING', 'CONVERTING']);

function sourceName(d) {
  const s = d.source || {};
  if (s.image_id) return 'image ' + (s.name || s.image_id);
  return s.catalog_id || s.name || s.url || d.id;
}

// mirrorText says what the mirror served; a distribution of an image has
// no mirror: its copies come from the image's node.
function mirrorText(d) {
  return d.source && d.source.image_id ? 'no mirror: copied from the image\'s node' : 'mirror served ' + bytes(d.mirror_bytes);
}

function from(c) {
  // A copy that ended without a source (it failed before one was chosen)
  // waits for nothing: say nothing rather than "waiting".
  if (!c.source) return c.adopted ? 'already there' : live.has(c.status) ? 'waiting for a source' : '';
  if (c.source === 'mirror') return 'from the mirror';
  return 'from ' + c.source.replace(/^node:/, 'node ');
}

function cellOf(c) {
  const p = c.progress;
  const pct = p && p.bytes_total > 0 ? Math.min(100, p.percent) : null;
  return h('td', { 'data-pool': c.pool_id, 'data-status': c.status, class: 'copy copy-' + c.status.toLowerCase() },
    h('strong', {}, c.pool_id),
    h('span', { class: 'copy-status' }, c.status + (c.adopted ? ' (adopted)' : '')),
    live.has(c.status) && pct !== null
      ? h('progress', { max: '100', value: String(pct), 'aria-label': 'copy into ' + c.pool_id }, pct + '%') : null,
    live.has(c.status) && p ? h('span', { class: 'sub' }, bytes(p.bytes_done) + ' of ' + bytes(p.bytes_total)) : null,
    h('span', { class: 'sub copy-from' }, from(c)),
    c.error ? h('span', { class: 'error-text' }, c.error.code + ': ' + c.error.message) : null);
}

function card(d, refresh) {
  const status = h('div', { class: 'status-line', role: 'status', 'aria-live': 'polite' });
  const running = d.status === 'RUNNING';
  const action = h('button', { type: 'button', class: 'quiet', 'data-action': running ? 'cancel' : 'forget',
    onclick: async () => {
      showInfo(status, running ? 'Cancelling…' : 'Forgetting…');
      try {
        await del('/v1/distributions/' + encodeURIComponent(d.id));
        fill(status);
        refresh();
      } catch (err) {
        showError(status, explain(err));
      }
    } }, running ? 'Cancel' : 'Forget');
  const ready = d.copies.filter((c) => c.status === 'READY').length;
  return h('li', { class: 'distribution', 'data-distribution': d.id, 'data-status': d.status },
    h('div', { class: 'dist-head' },
      h('strong', {}, sourceName(d)),
      h('span', { class: 'badge badge-' + d.status.toLowerCase() }, d.status),
      h('span', { class: 'sub' }, ready + ' of ' + d.copies.length + ' pools READY · ' + mirrorText(d) +
        ' · max ' + d.max_parallel + ' per source · started ' + ago(d.created_at))),
    d.message ? h('p', { class: d.status === 'READY' ? 'note' : 'error-text' }, d.message) : null,
    h('table', { class: 'matrix' }, h('tbody', {}, h('tr', {}, ...d.copies.map(cellOf)))),
    h('div', { class: 'actions' }, action), status);
}

/** Renders the distributions. */
export function renderDistributions(ds, refresh) {
  const el = document.getElementById('distributions-list');
  fill(el, ds.length ? ds.map((d) => card(d, refresh))
    : h('li', { class: 'muted' }, 'No distributions yet: start one below or with POST /v1/distributions.'));
}

/** Fills the form's source (catalog entries, then READY images) and pool choices. */
export function renderDistributionChoices(state) {
  const source = document.getElementById('dist-source');
  const pools = document.getElementById('dist-pools');
  const keep = source.value;
  const option = (value, text) => h('option', { value, selected: value === keep }, text);
  const ready = (state.images || []).filter((i) => i.status === 'READY');
  fill(source,
    h('optgroup', { label: 'Catalog entries' }, ...state.catalog.map((e) => option('catalog:' + e.id, e.name + ' (' + e.id + ')'))),
    ready.length ? h('optgroup', { label: 'READY images' },
      ...ready.map((i) => option('image:' + i.id, i.name + ' in ' + i.pool_id + ' (' + (i.source || 'mirror') + ', ' + i.id.slice(0, 8) + ')'))) : null);
  const chosen = new Set([...pools.selectedOptions].map((o) => o.value));
  fill(pools, state.pools.map((p) => h('option', { value: p.id, selected: chosen.has(p.id) }, p.name || p.id)));
}

/** Wires the form that starts a distribution. */
export function wireDistributionForm(refresh) {
  const form = document.getElementById('dist-form');
  const status = document.getElementById('dist-status');
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const all = document.getElementById('dist-all').checked;
    const [kind, id] = document.getElementById('dist-source').value.split(/:(.*)/s);
    const body = { [kind === 'image' ? 'image_id' : 'catalog_id']: id,
      max_parallel: Number(document.getElementById('dist-parallel').value || 4) };
    if (all) body.all_pools = true;
    else body.pool_ids = [...document.getElementById('dist-pools').selectedOptions].map((o) => o.value);
    showInfo(status, 'Starting…');
    try {
      const res = await post('/v1/distributions', body);
      showInfo(status, res.status === 202 ? 'Started.' : 'Already there: showing it.');
      refresh();
    } catch (err) {
      showError(status, explain(err));
    }
  });
}

/** Loads the distributions. */
export function loadDistributions() {
  return list('/v1/distributions');
}
