// "Upload an image": a file from this computer into the picked pool, over
// the tus resumable upload protocol (tus-js-client, vendored, sets
// window.tus). tus-js-client remembers each upload in localStorage by a
// fingerprint of the file and pool, so picking the same file again after a
// reload or a closed tab resumes where the server is.

import { ApiError, get, getToken } from './api.js';
import { explain } from './errors.js';
import { h, fill, bytes, duration, showError, showInfo } from './dom.js';
import { selectedPool } from './catalog.js';

const el = (id) => document.getElementById(id);

/** Wires the upload form; onStarted(image) is called once the bytes are in. */
export function wireUploadForm(onStarted) {
  const form = el('upload');
  const file = el('upload-file');
  const drop = el('upload-drop');
  let current = null;
  file.addEventListener('change', () => {
    if (file.files[0] && !form.name.value.trim()) form.name.value = file.files[0].name;
  });
  drop.addEventListener('dragover', (ev) => { ev.preventDefault(); drop.classList.add('over'); });
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', (ev) => {
    ev.preventDefault();
    drop.classList.remove('over');
    if (ev.dataTransfer.files.length) {
      file.files = ev.dataTransfer.files;
      file.dispatchEvent(new Event('change'));
    }
  });
  el('upload-pause').addEventListener('click', () => {
    if (!current) return;
    current.abort();
    current = null;
    el('upload-pause').hidden = true;
    el('upload-submit').disabled = false;
    showInfo(el('upload-status'), 'Paused. Pick the same file and press Upload to resume.');
  });
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const status = el('upload-status');
    const f = file.files[0];
    const pool = selectedPool();
    if (!f) {
      showError(status, { title: 'Pick a disk image, or drop one on the form.', detail: '' });
      return;
    }
    if (!pool) {
      showError(status, { title: 'No storage pool can take an upload now.', detail: el('pool-note').textContent });
      return;
    }
    const name = form.name.value.trim() || f.name;
    const checksum = form.checksum.value.trim();
    current = await start(f, pool, name, checksum, onStarted, () => { current = null; });
  });
}

async function start(f, pool, name, checksum, onStarted, ended) {
  const status = el('upload-status');
  const bar = el('upload-progress');
  const numbers = el('upload-numbers');
  const metadata = { pool_id: pool, name, filename: f.name };
  if (checksum) metadata.checksum = checksum;
  const token = getToken();
  let began = null;
  const upload = new window.tus.Upload(f, {
    endpoint: location.origin + '/v1/uploads',
    metadata,
    headers: token ? { Authorization: 'Bearer ' + token } : {},
    retryDelays: [0, 1000, 3000, 5000, 10000, 20000],
    removeFingerprintOnSuccess: true,
    // The same file into the same pool under the same name is the same upload.
    fingerprint: async (file) => ['cloudimages', pool, name, file.name, file.size, file.lastModified].join('/'),
    onProgress(sent, total) {
      if (!began) began = { at: Date.now(), sent };
      const secs = (Date.now() - began.at) / 1000;
      const rate = secs > 0.5 ? (sent - began.sent) / secs : 0;
      bar.hidden = false;
      bar.value = total ? (100 * sent) / total : 0;
      const eta = rate > 0 ? ', about ' + duration((total - sent) / rate) + ' left' : '';
      fill(numbers, Math.floor(bar.value) + '% — ' + bytes(sent) + ' of ' + bytes(total) + (rate > 0 ? ' at ' + bytes(rate) + '/s' : '') + eta);
    },
    async onSuccess() {
      ended();
      el('upload-pause').hidden = true;
      el('upload-submit').disabled = false;
      const id = upload.url.split('/').pop();
      try {
        const img = await get('/v1/images/' + id);
        showInfo(status, name + ' is uploaded into ' + pool + ' and being checked. ', h('a', { href: '#images', 'data-image-link': id }, 'Follow it in Images'));
        onStarted(img);
      } catch (err) {
        showError(status, explain(err));
      }
    },
    onError(err) {
      ended();
      el('upload-pause').hidden = true;
      el('upload-submit').disabled = false;
      showError(status, explain(tusError(err)));
    },
  });
  const previous = await upload.findPreviousUploads();
  if (previous.length) {
    upload.resumeFromPreviousUpload(previous[0]);
    showInfo(status, 'Resuming the earlier upload of ' + f.name + '…');
  } else {
    showInfo(status, 'Uploading ' + f.name + ' into ' + pool + '…');
  }
  el('upload-submit').disabled = true;
  el('upload-pause').hidden = false;
  upload.start();
  return upload;
}

/** The API's {"error": {code, message}} out of a tus-js-client error. */
function tusError(err) {
  const res = err && err.originalResponse;
  if (res) {
    try {
      const body = JSON.parse(res.getBody());
      if (body && body.error) return new ApiError(res.getStatus(), body.error.code, body.error.message);
    } catch {
      // not JSON
    }
    return new ApiError(res.getStatus(), 'http_' + res.getStatus(), String(err.message || err));
  }
  return new ApiError(0, 'network', String((err && err.message) || err));
}
