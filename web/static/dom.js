// Building the page from data: elements made with h() and text set through
// textContent, never innerHTML, so names and messages from the API cannot
// inject markup.

/** h('p', {class: 'x'}, 'text', child) makes an element. */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === false || v === null || v === undefined) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : v);
  }
  el.append(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
  return el;
}

/** Replaces the children of el. */
export function fill(el, ...children) {
  el.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
}

/** Shows an error as a sentence plus the server's details in el. */
export function showError(el, explained) {
  el.className = 'status-line error';
  fill(el, h('strong', {}, explained.title), explained.detail ? h('span', { class: 'detail' }, explained.detail) : null);
}

/** Shows a plain message in el. */
export function showInfo(el, ...children) {
  el.className = 'status-line info';
  fill(el, ...children);
}

const units = ['B', 'KB', 'MB', 'GB', 'TB'];

/** 21692416 → "21.7 MB" (decimal units, as disks are sold). */
export function bytes(n) {
  if (n === null || n === undefined || isNaN(n)) return '—';
  let i = 0;
  while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
  return (i === 0 ? String(Math.round(n)) : n.toFixed(n < 10 ? 2 : 1)) + ' ' + units[i];
}

/** 95 → "1 min 35 s". */
export function duration(s) {
  if (s === null || s === undefined || isNaN(s)) return '';
  s = Math.max(0, Math.round(s));
  if (s < 60) return s + ' s';
  if (s < 3600) return Math.floor(s / 60) + ' min ' + (s % 60) + ' s';
  return Math.floor(s / 3600) + ' h ' + Math.floor((s % 3600) / 60) + ' min';
}

/** An ISO time as "3 min ago". */
export function ago(iso) {
  if (!iso) return 'never';
  const t = Date.parse(iso);
  if (isNaN(t)) return iso;
  const s = (Date.now() - t) / 1000;
  if (s < 5) return 'just now';
  if (s > 86400) return new Date(t).toLocaleString();
  return duration(s) + ' ago';
}
