// Nodes and pools: which node serves which pool, whether a pool can take a
// download now, and the free space the API reports.

import { h, fill, bytes, ago } from './dom.js';

/** The pool ids a node's agent reports (ids, or objects with an id). */
function reportedPools(node) {
  return (node.pools || []).map((p) => (typeof p === 'string' ? p : p.id));
}

/**
 * Says whether a download into pool can start now, and if not, why: it
 * needs an assigned node whose agent serves the pool. A pool whose nodes
 * have not been checked yet ("unknown") can be tried (sure is false); one
 * whose nodes are all offline cannot.
 */
export function usability(pool, nodesById) {
  const ids = pool.node_ids || [];
  if (ids.length === 0) return { usable: false, why: 'no node is assigned to this pool' };
  const nodes = ids.map((id) => nodesById.get(id) || { id, status: 'unknown' });
  const online = nodes.filter((n) => n.status === 'online');
  const serving = online.filter((n) => !n.pools || reportedPools(n).includes(pool.id));
  if (serving.length) return { usable: true, sure: true, why: serving.map((n) => n.id).join(', ') + ' online' };
  if (online.length) {
    return { usable: false, why: online.map((n) => n.id).join(', ') + ' online but not serving this pool (check the agent’s --pool)' };
  }
  const unknown = nodes.filter((n) => n.status !== 'offline');
  if (unknown.length) return { usable: true, sure: false, why: unknown.map((n) => n.id).join(', ') + ' not checked yet' };
  return { usable: false, why: nodes.map((n) => n.id + ' offline').join(', ') };
}

/** Free and total bytes of a pool: from the pool, else from a node's report. */
export function space(pool, nodesById) {
  if (pool.free_bytes !== undefined) return { free: pool.free_bytes, total: pool.total_bytes };
  for (const id of pool.node_ids || []) {
    const node = nodesById.get(id);
    const p = node && (node.pools || []).find((x) => typeof x === 'object' && x.id === pool.id);
    if (p && p.free_bytes !== undefined) return { free: p.free_bytes, total: p.total_bytes };
  }
  return null;
}

function statusBadge(status) {
  return h('span', { class: 'badge node-' + (status || 'unknown') }, status || 'unknown');
}

function cell(label, ...children) {
  return h('td', { 'data-label': label }, ...children);
}

function poolRow(pool, nodesById) {
  const u = usability(pool, nodesById);
  const s = space(pool, nodesById);
  const served = (pool.node_ids || []).map((id) =>
    h('span', { class: 'served' }, id, ' ', statusBadge((nodesById.get(id) || {}).status)));
  return h('tr', { 'data-pool': pool.id },
    cell('Pool', h('strong', {}, pool.name || pool.id), pool.name && pool.name !== pool.id ? h('span', { class: 'sub' }, pool.id) : null),
    cell('Type', (pool.type || '?') + (pool.shared ? ', shared' : '') + (pool.image_format ? ', images as ' + pool.image_format : ''),
      windows(pool)),
    cell('Served by', served.length ? served : h('span', { class: 'muted' }, 'no node')),
    cell('Free space', s ? bytes(s.free) + (s.total ? ' of ' + bytes(s.total) : '') : h('span', { class: 'muted', title: 'The API does not report free space' }, 'not reported')),
    cell('Usable', u.sure ? h('span', { class: 'ok' }, 'yes') : h('span', { class: 'warn' }, (u.usable ? 'maybe: ' : 'no: ') + u.why)));
}

/** The pool's transfer windows, as a line under its type; null for none. */
function windows(pool) {
  const w = pool.transfer_windows || [];
  if (!w.length) return null;
  return h('span', { class: 'sub windows' }, 'transfers only ' + w.join(', ') + ' (' + (pool.time_zone || 'UTC') + ')');
}

function nodeRow(node) {
  return h('tr', { 'data-node': node.id },
    cell('Node', h('strong', {}, node.name || node.id), node.name && node.name !== node.id ? h('span', { class: 'sub' }, node.id) : null),
    cell('Address', h('code', {}, node.address || '')),
    cell('Status', statusBadge(node.status)),
    cell('Last seen', ago(node.last_seen_at)),
    cell('Pools', reportedPools(node).join(', ') || h('span', { class: 'muted' }, 'none reported')),
    cell('Downloads', node.active_downloads === undefined ? '—' : String(node.active_downloads)));
}

/** Renders the pools and nodes tables. */
export function renderNodes(state) {
  const nodesById = new Map(state.nodes.map((n) => [n.id, n]));
  const pools = document.querySelector('#pools-table tbody');
  const nodes = document.querySelector('#nodes-table tbody');
  fill(pools, state.pools.length ? state.pools.map((p) => poolRow(p, nodesById)) : emptyRow(5, 'No storage pools yet: create one with POST /v1/pools.'));
  fill(nodes, state.nodes.length ? state.nodes.map(nodeRow) : emptyRow(6, 'No nodes yet: register one with POST /v1/nodes.'));
}

function emptyRow(cols, text) {
  return h('tr', {}, h('td', { colspan: String(cols), class: 'muted' }, text));
}
