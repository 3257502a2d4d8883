// Subscriptions: which catalog entry is kept current in which pools, when
// it is checked next, the build now current and the last error, with
// pause/resume and "check now".

import { post, patch, list } from './api.js';
import { explain } from './errors.js';
import { h, fill, ago, showError, showInfo } from './dom.js';

function when(iso) {
  if (!iso) return 'not scheduled';
  const t = Date.parse(iso);
  if (isNaN(t)) return iso;
  const s = Math.round((t - Date.now()) / 1000);
  if (s <= 0) return 'due now';
  return new Date(t).toLocaleString();
}

function cell(label, ...children) {
  return h('td', { 'data-label': label }, ...children);
}

function row(sub, refresh) {
  const status = h('div', { class: 'status-line', role: 'status', 'aria-live': 'polite' });
  const act = async (what, fn) => {
    showInfo(status, what + '…');
    try {
      await fn();
      fill(status);
      refresh();
    } catch (err) {
      showError(status, explain(err));
    }
  };
  const pause = h('button', { type: 'button', class: 'quiet', 'data-action': sub.paused ? 'resume' : 'pause',
    onclick: () => act(sub.paused ? 'Resuming' : 'Pausing', () => patch('/v1/subscriptions/' + encodeURIComponent(sub.id), { paused: !sub.paused })) },
  sub.paused ? 'Resume' : 'Pause');
  const check = h('button', { type: 'button', 'data-action': 'check', disabled: sub.paused || sub.checking,
    onclick: () => act('Checking', () => post('/v1/subscriptions/' + encodeURIComponent(sub.id) + '/check')) },
  sub.checking ? 'Checking…' : 'Check now');
  pause.setAttribute('aria-label', (sub.paused ? 'Resume ' : 'Pause ') + sub.catalog_id);
  check.setAttribute('aria-label', 'Check ' + sub.catalog_id + ' now');
  return h('tr', { 'data-subscription': sub.id },
    cell('Catalog entry', h('strong', {}, sub.catalog_id), h('span', { class: 'sub' }, 'every ' + sub.every + ', keep ' + sub.keep)),
    cell('Pools', (sub.pool_ids || []).join(', ')),
    cell('Next check', sub.paused ? h('span', { class: 'warn' }, 'paused') : when(sub.next_check_at),
      h('span', { class: 'sub' }, 'last ' + ago(sub.last_checked_at))),
    cell('Current version', sub.current_version ? h('code', {}, sub.current_version) : h('span', { class: 'muted' }, 'none yet')),
    cell('Last error', sub.last_error ? h('span', { class: 'error-text' }, sub.last_error) : h('span', { class: 'ok' }, 'none')),
    cell('Actions', h('div', { class: 'actions' }, pause, check), status));
}

/** Renders the subscriptions table. */
export function renderSubscriptions(subs, refresh) {
  const body = document.querySelector('#subscriptions-table tbody');
  fill(body, subs.length ? subs.map((s) => row(s, refresh))
    : h('tr', {}, h('td', { colspan: '6', class: 'muted' }, 'No subscriptions yet: create one below or with POST /v1/subscriptions.')));
}

/** Fills the form's catalog and pool choices. */
export function renderSubscriptionChoices(state) {
  const entry = document.getElementById('sub-catalog');
  const pools = document.getElementById('sub-pools');
  const keepEntry = entry.value;
  fill(entry, state.catalog.filter((e) => e.checksum_url).map((e) => h('option', { value: e.id, selected: e.id === keepEntry }, e.name + ' (' + e.id + ')')));
  const chosen = new Set([...pools.selectedOptions].map((o) => o.value));
  fill(pools, state.pools.map((p) => h('option', { value: p.id, selected: chosen.has(p.id) }, p.name || p.id)));
}

/** Wires the form that creates a subscription. */
export function wireSubscriptionForm(refresh) {
  const form = document.getElementById('sub-form');
  const status = document.getElementById('sub-status');
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const body = {
      catalog_id: document.getElementById('sub-catalog').value,
      pool_ids: [...document.getElementById('sub-pools').selectedOptions].map((o) => o.value),
      every: document.getElementById('sub-every').value.trim() || '6h',
      keep: Number(document.getElementById('sub-keep').value || 3),
    };
    showInfo(status, 'Creating…');
    try {
      const res = await post('/v1/subscriptions', body);
      showInfo(status, 'Subscribed: ' + res.body.catalog_id + ' is checked now and every ' + res.body.every + '.');
      refresh();
    } catch (err) {
      showError(status, explain(err));
    }
  });
}

/** Loads the subscriptions. */
export function loadSubscriptions() {
  return list('/v1/subscriptions');
}
