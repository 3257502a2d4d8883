// Uploads a file to the cloudimages API with the real tus-js-client (the
// copy vendored for the web UI, web/static/vendor), run by Node: a fetch
// HTTP stack stands in for the browser's XMLHttpRequest, and a JSON file
// for localStorage, so a second run finds and resumes the first run's
// upload as a reloaded page would.
//
// node tus-upload.js API_URL TOKEN FILE POOL NAME CHECKSUM STATE_FILE STOP_AFTER_BYTES
// prints {"url": ..., "resumed": bool, "stopped": bool} on its last line.
'use strict';
const fs = require('fs');
const path = require('path');
const tus = require(path.join(__dirname, '../../web/static/vendor/tus-js-client-4.3.1.min.js'));

const [apiURL, token, file, pool, name, checksum, stateFile, stopAfterText] = process.argv.slice(2);
const stopAfter = Number(stopAfterText);

class FetchRequest {
  constructor(method, url) {
    this.method = method;
    this.url = url;
    this.headers = {};
    this.ctrl = new AbortController();
  }
  getMethod() { return this.method; }
  getURL() { return this.url; }
  setHeader(k, v) { this.headers[k] = v; }
  getHeader(k) { return this.headers[k]; }
  setProgressHandler() {}
  async send(body) {
    const init = { method: this.method, headers: this.headers, signal: this.ctrl.signal };
    if (body !== null && body !== undefined) init.body = body;
    const res = await fetch(this.url, init);
    const text = await res.text();
    return {
      getStatus: () => res.status,
      getHeader: (h) => res.headers.get(h) ?? undefined,
      getBody: () => text,
      getUnderlyingObject: () => res,
    };
  }
  abort() { this.ctrl.abort(); return Promise.resolve(); }
  getUnderlyingObject() { return null; }
}

const httpStack = { createRequest: (m, u) => new FetchRequest(m, u), getName: () => 'fetch' };

// The UrlStorage interface of tus-js-client, kept in a JSON file.
const load = () => (fs.existsSync(stateFile) ? JSON.parse(fs.readFileSync(stateFile, 'utf8')) : {});
const save = (s) => fs.writeFileSync(stateFile, JSON.stringify(s));
const urlStorage = {
  async findAllUploads() { return Object.entries(load()).map(([k, v]) => ({ ...v, urlStorageKey: k })); },
  async findUploadsByFingerprint(fp) {
    return Object.entries(load()).filter(([k]) => k.startsWith(fp + '::')).map(([k, v]) => ({ ...v, urlStorageKey: k }));
  },
  async removeUpload(key) { const s = load(); delete s[key]; save(s); },
  async addUpload(fp, upload) { const s = load(); const key = fp + '::' + Date.now(); s[key] = upload; save(s); return key; },
};

const data = fs.readFileSync(file);
const metadata = { pool_id: pool, name };
if (checksum) metadata.checksum = checksum;
let stopped = false;
const upload = new tus.Upload(new Blob([data]), {
  endpoint: apiURL + '/v1/uploads',
  headers: { Authorization: 'Bearer ' + token },
  metadata,
  chunkSize: 256 * 1024,
  retryDelays: [0, 500, 1000],
  httpStack,
  urlStorage,
  fingerprint: async () => ['cloudimages', pool, name, data.length].join('/'),
  removeFingerprintOnSuccess: true,
  onChunkComplete(_chunk, accepted) {
    if (stopAfter > 0 && accepted >= stopAfter && !stopped) {
      stopped = true;
      upload.abort().then(() => done());
    }
  },
  onSuccess() { done(); },
  onError(err) { console.error(String(err)); process.exit(1); },
});
let resumed = false;
function done() {
  console.log(JSON.stringify({ url: upload.url, resumed, stopped }));
  process.exit(0);
}
upload.findPreviousUploads().then((previous) => {
  if (previous.length) {
    resumed = true;
    upload.resumeFromPreviousUpload(previous[0]);
  }
  upload.start();
});
