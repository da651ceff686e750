// The console's one way to the server: ordinary FHIR (and /auth, /readyz)
// requests with the signed-in user's bearer token. A refusal is an
// ApiError the screens show ("not permitted", "not found"), never a crash.

// ApiError is a request that did not succeed; outcome is the
// OperationOutcome the server sent, when it sent one.
export class ApiError extends Error {
  constructor(status, message, outcome) {
    super(message);
    this.status = status;
    this.outcome = outcome || null;
  }

  // kind: "denied", "missing", "invalid", "conflict", "signed-out",
  // "network" or "error".
  get kind() {
    switch (this.status) {
      case 0: return 'network';
      case 401: return 'signed-out';
      case 403: return 'denied';
      case 404: case 410: return 'missing';
      case 400: case 422: return 'invalid';
      case 409: case 412: return 'conflict';
      default: return 'error';
    }
  }

  // issues are the outcome's issues (empty without one).
  get issues() {
    return (this.outcome && Array.isArray(this.outcome.issue)) ? this.outcome.issue : [];
  }
}

// diagnostics joins an OperationOutcome's issue texts.
export function diagnostics(outcome) {
  const issues = (outcome && Array.isArray(outcome.issue)) ? outcome.issue : [];
  return issues.map((i) => i.diagnostics || (i.details && i.details.text) || i.code).filter(Boolean).join('; ');
}

// describe is what a screen says about err.
export function describe(err, what) {
  const subject = what ? what + ': ' : '';
  if (!(err instanceof ApiError)) return subject + 'something went wrong (' + (err && err.message) + ')';
  const detail = diagnostics(err.outcome);
  switch (err.kind) {
    case 'denied': return subject + 'not permitted' + (detail ? ' — ' + detail : '');
    case 'missing': return subject + (err.status === 410 ? 'deleted' : 'not found');
    case 'signed-out': return subject + 'your session has ended; sign in again';
    case 'network': return subject + 'the server could not be reached';
    case 'conflict': return subject + (err.status === 412 ? 'changed by someone else since you opened it; reload and try again' : 'conflict') + (detail ? ' — ' + detail : '');
    default: return subject + (detail || err.message);
  }
}

// messageKind maps an error to dom.message's kinds.
export function messageKind(err) {
  if (err instanceof ApiError) {
    if (err.kind === 'denied') return 'denied';
    if (err.kind === 'missing') return 'missing';
  }
  return 'error';
}

const FHIR_JSON = 'application/fhir+json';

export class Api {
  // root is the path the server's endpoints hang from ("/" usually);
  // session supplies the token (null under --auth none).
  constructor(root, session) {
    this.root = root;
    this.session = session;
  }

  fhirURL(path) {
    return this.root + 'fhir' + (path ? '/' + path.replace(/^\/+/, '') : '');
  }

  // request sends one request; opts: method, body (string), headers.
  // It returns the Response when ok, and throws ApiError otherwise. A 401
  // refreshes the token once (offline_access) and tries again.
  async request(url, opts = {}) {
    let res = await this.send(url, opts);
    if (res.status === 401 && this.session && await this.session.refresh()) {
      res = await this.send(url, opts);
    }
    if (res.ok || res.status === 304) return res;
    let outcome = null;
    let text = '';
    try {
      text = await res.text();
      const j = JSON.parse(text);
      if (j && j.resourceType === 'OperationOutcome') outcome = j;
    } catch (e) {
      // Not JSON: keep the text.
    }
    if (res.status === 401 && this.session) this.session.expired();
    throw new ApiError(res.status, (outcome ? diagnostics(outcome) : text.trim()) || res.statusText || String(res.status), outcome);
  }

  async send(url, opts) {
    const headers = Object.assign({ Accept: FHIR_JSON }, opts.headers || {});
    const token = this.session && this.session.accessToken;
    if (token) headers.Authorization = 'Bearer ' + token;
    if (opts.body != null && !headers['Content-Type']) headers['Content-Type'] = FHIR_JSON;
    try {
      return await fetch(url, { method: opts.method || 'GET', headers, body: opts.body, cache: 'no-store', credentials: 'omit' });
    } catch (e) {
      throw new ApiError(0, 'the server could not be reached (' + e.message + ')');
    }
  }

  // fhir is a FHIR request answered in JSON, parsed.
  async fhir(path, opts) {
    const res = await this.request(this.fhirURL(path), opts);
    const text = await res.text();
    return text ? JSON.parse(text) : null;
  }

  // fhirRaw is a FHIR request's body as text (for showing JSON exactly as
  // stored: numbers keep their written form) with the response.
  async fhirRaw(path, opts) {
    const res = await this.request(this.fhirURL(path), opts);
    return { text: await res.text(), res };
  }

  // count is a search's total with _summary=count.
  async count(type, params) {
    const q = new URLSearchParams(params || {});
    q.set('_summary', 'count');
    const b = await this.fhir(type + '?' + q.toString());
    return b && typeof b.total === 'number' ? b.total : null;
  }

  // searchAll follows next links until max resources are read.
  async searchAll(type, params, max = 5000) {
    let b = await this.fhir(type + '?' + new URLSearchParams(params).toString());
    const out = [];
    for (;;) {
      for (const e of (b && b.entry) || []) {
        if (e.resource && (!e.search || e.search.mode !== 'outcome') && e.resource.resourceType === type) out.push(e.resource);
      }
      const next = linkQuery(b, 'next');
      if (!next || out.length >= max) return out;
      b = await this.fhir(type + '?' + next);
    }
  }

  // text GETs a plain endpoint (readyz) relative to the root.
  async text(path) {
    const res = await this.request(this.root + path, { headers: { Accept: 'text/plain' } });
    return res.text();
  }
}

// linkQuery is the query string of a Bundle link (next, previous, self),
// or "" when the Bundle has none.
export function linkQuery(bundle, relation) {
  const l = ((bundle && bundle.link) || []).find((x) => x.relation === relation);
  if (!l || !l.url) return '';
  const i = l.url.indexOf('?');
  return i < 0 ? '' : l.url.slice(i + 1);
}
