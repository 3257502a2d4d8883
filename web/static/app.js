// The page: sections by URL hash, data refreshed every few seconds, the
// API token dialog, and a banner when the API cannot be used.

import { get, list, getToken, setToken } from './api.js';
import { explain } from './errors.js';
import { h, fill } from './dom.js';
import { renderCatalog, renderPools, wireCustomForm } from './catalog.js';
import { wireUploadForm } from './upload.js';
import { renderImages, upsert, setTemporalWeb, onImagesChanged, followLive, setPoolFilter, applyFilters } from './images.js';
import { renderNodes } from './nodes.js';
import { renderSubscriptions, renderSubscriptionChoices, wireSubscriptionForm, loadSubscriptions } from './subscriptions.js';
import { renderDistributions, renderDistributionChoices, wireDistributionForm, loadDistributions } from './distributions.js';

const sections = ['catalog', 'images', 'subscriptions', 'distributions', 'nodes'];
const state = { catalog: [], pools: [], nodes: [], images: [], subscriptions: [], distributions: [] };
const problems = new Map(); // what failed → its ApiError, shown in the banner

function show() {
  const name = sections.includes(location.hash.slice(1)) ? location.hash.slice(1) : 'catalog';
  for (const s of sections) document.getElementById(s).hidden = s !== name;
  document.querySelectorAll('nav a').forEach((a) => {
    if (a.dataset.section === name) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  });
  document.title = document.querySelector('#' + name + ' h1').textContent + ' · cloudimages';
  return name;
}

function banner() {
  const el = document.getElementById('banner');
  const errs = [...problems.values()];
  el.hidden = errs.length === 0;
  if (!errs.length) return;
  const e = explain(errs.find((x) => x.code === 'unauthorized') || errs[0]);
  const open = errs.some((x) => x.code === 'unauthorized')
    ? h('button', { type: 'button', onclick: openToken }, 'Enter API token') : null;
  fill(el, h('strong', {}, e.title), e.detail ? h('span', { class: 'detail' }, e.detail) : null, open);
}

async function load(what, fn) {
  try {
    await fn();
    problems.delete(what);
  } catch (err) {
    problems.set(what, err);
  }
  banner();
}

async function refreshImages() {
  await load('images', async () => {
    state.images = await list('/v1/images');
    renderImages(state.images);
    renderDistributionChoices(state); // a READY image may be a distribution's source
  });
}

async function refreshSubscriptions() {
  await load('subscriptions', async () => {
    try {
      state.subscriptions = await loadSubscriptions();
    } catch (err) {
      // An API from before subscriptions has no such route: nothing to show.
      if (err.code !== 'not_found') throw err;
      state.subscriptions = [];
    }
    renderSubscriptions(state.subscriptions, refreshSubscriptions);
  });
}

async function refreshDistributions() {
  await load('distributions', async () => {
    try {
      state.distributions = await loadDistributions();
    } catch (err) {
      // An API from before distributions has no such route: nothing to show.
      if (err.code !== 'not_found') throw err;
      state.distributions = [];
    }
    renderDistributions(state.distributions, refreshDistributions);
  });
}

async function refreshInfra() {
  await load('infra', async () => {
    [state.pools, state.nodes] = await Promise.all([list('/v1/pools'), list('/v1/nodes')]);
    renderPools(state);
    renderNodes(state);
    renderSubscriptionChoices(state);
    renderDistributionChoices(state);
    setPoolFilter(state.pools);
    applyFilters();
  });
}

async function refreshCatalog() {
  await load('catalog', async () => {
    state.catalog = await list('/v1/catalog');
    renderCatalog(state.catalog, started);
    renderPools(state);
    renderSubscriptionChoices(state);
    renderDistributionChoices(state);
  });
}

// Settings are optional: an API without GET /v1/settings keeps the defaults.
async function loadSettings() {
  try {
    const s = await get('/v1/settings');
    if (s && s.temporal_web_url) setTemporalWeb(s.temporal_web_url, s.temporal_namespace);
  } catch {
    // absent or not allowed: Temporal Web at its default address
  }
}

function started(img) {
  upsert(img);
  followLive();
  refreshImages();
}

function openToken() {
  const dialog = document.getElementById('token-dialog');
  document.getElementById('token').value = getToken();
  dialog.showModal();
}

function wireToken() {
  const dialog = document.getElementById('token-dialog');
  document.getElementById('token-open').addEventListener('click', openToken);
  dialog.addEventListener('close', () => {
    if (dialog.returnValue === 'save') setToken(document.getElementById('token').value.trim());
    if (dialog.returnValue === 'clear') setToken('');
    if (dialog.returnValue === 'save' || dialog.returnValue === 'clear') refreshAll();
  });
}

function refreshAll() {
  loadSettings();
  refreshCatalog();
  refreshInfra();
  refreshImages();
  refreshSubscriptions();
  refreshDistributions();
}

function main() {
  wireToken();
  wireCustomForm(started);
  wireSubscriptionForm(refreshSubscriptions);
  wireDistributionForm(refreshDistributions);
  wireUploadForm(started);
  onImagesChanged(refreshImages);
  for (const id of ['filter-status', 'filter-pool']) document.getElementById(id).addEventListener('change', applyFilters);
  window.addEventListener('hashchange', () => {
    document.querySelector('#' + show() + ' h1').focus();
  });
  show();
  refreshAll();
  setInterval(refreshImages, 3000);
  setInterval(refreshInfra, 5000);
  setInterval(refreshSubscriptions, 5000);
  // Live while a distribution runs; slow otherwise.
  setInterval(() => { if (location.hash === '#distributions' || state.distributions.some((d) => d.status === 'RUNNING')) refreshDistributions(); }, 2000);
  setInterval(() => { if (problems.has('catalog')) refreshCatalog(); }, 5000);
}

main();
