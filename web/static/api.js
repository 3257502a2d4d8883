// The REST API client: JSON in and out, the bearer token from this browser's
// storage, errors as ApiError with the contract's codes.

const tokenKey = 'cloudimages.token';

/** An error answered by the API ({"error": {code, message}}) or the network. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export function getToken() {
  return localStorage.getItem(tokenKey) || '';
}

export function setToken(token) {
  if (token) localStorage.setItem(tokenKey, token);
  else localStorage.removeItem(tokenKey);
}

function headers(extra) {
  const h = { Accept: 'application/json', ...extra };
  const token = getToken();
  if (token) h.Authorization = 'Bearer ' + token;
  return h;
}

async function errorFrom(res) {
  let code = 'http_' + res.status, message = res.statusText || 'HTTP ' + res.status;
  try {
    const body = await res.json();
    if (body && body.error) {
      code = body.error.code || code;
      message = body.error.message || message;
    }
  } catch {
    // not JSON: keep the status line
  }
  return new ApiError(res.status, code, message);
}

async function send(method, path, body) {
  const init = { method, headers: headers(body ? { 'Content-Type': 'application/json' } : {}) };
  if (body) init.body = JSON.stringify(body);
  let res;
  try {
    res = await fetch(path, init);
  } catch (err) {
    throw new ApiError(0, 'network', String(err && err.message || err));
  }
  if (!res.ok) throw await errorFrom(res);
  return res;
}

/** GET path and return its JSON. */
export async function get(path) {
  return (await send('GET', path)).json();
}

/** GET a list endpoint and return all its items, page after page. */
export async function list(path) {
  // A list may come in pages (GET /v1/images): follow next_page_token.
  const items = [];
  let page = path;
  for (;;) {
    const body = await get(page);
    items.push(...((body && body.items) || []));
    const token = body && body.next_page_token;
    if (!token) return items;
    page = path + (path.includes('?') ? '&' : '?') + 'page_token=' + encodeURIComponent(token);
  }
}

/** POST JSON; returns {status, body}. */
export async function post(path, body) {
  const res = await send('POST', path, body);
  return { status: res.status, body: await res.json() };
}

/** DELETE; returns the status (202 cancelling, 204 removed). */
export async function del(path) {
  return (await send('DELETE', path)).status;
}

/**
 * Follows a text/event-stream of JSON snapshots until it ends or signal
 * aborts. EventSource cannot send an Authorization header, so this reads
 * the stream with fetch.
 */
export async function follow(path, onData, signal) {
  const res = await fetch(path, { headers: headers({ Accept: 'text/event-stream' }), signal });
  if (!res.ok) throw await errorFrom(res);
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += value.replace(/\r\n?/g, '\n');
    let end;
    while ((end = buf.indexOf('\n\n')) >= 0) {
      const data = eventData(buf.slice(0, end));
      buf = buf.slice(end + 2);
      if (data) onData(JSON.parse(data));
    }
  }
}

function eventData(block) {
  return block.split('\n')
    .filter((line) => line.startsWith('data:'))
    .map((line) => line.slice(5).replace(/^ /, ''))
    .join('\n');
}

/** PATCH JSON; returns the answer's JSON. */
export async function patch(path, body) {
  return (await send('PATCH', path, body)).json();
}
