// Sign-in: the console is a public SMART client (authorization code with
// PKCE S256) registered by `ember serve` as "ember-console". Tokens live in
// sessionStorage (this tab only, gone when it closes); sign-out revokes
// them. Under --auth none there is no sign-in and no token.

const SESSION_KEY = 'ember-console.session';
const PENDING_KEY = 'ember-console.pending';

function b64url(bytes) {
  let s = '';
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

function randomString(n) {
  return b64url(crypto.getRandomValues(new Uint8Array(n)));
}

// jwtClaims reads a JWT's payload for display (the server checks tokens;
// the console only shows who is signed in and which buttons make sense).
function jwtClaims(tok) {
  try {
    const p = tok.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const bin = atob(p + '='.repeat((4 - p.length % 4) % 4));
    return JSON.parse(new TextDecoder().decode(Uint8Array.from(bin, (c) => c.charCodeAt(0))));
  } catch (e) {
    return {};
  }
}

// parseScopes reads SMART v1 and v2 resource scopes into
// {context, type, perms} (perms a string of c r u d s).
export function parseScopes(scope) {
  const out = [];
  for (const s of (scope || '').split(/\s+/)) {
    const m = /^(user|patient|system)\/([A-Za-z]+|\*)\.([a-z*]+)(\?.*)?$/.exec(s);
    if (!m) continue;
    let perms = m[3];
    if (perms === 'read') perms = 'rs';
    else if (perms === 'write') perms = 'cud';
    else if (perms === '*') perms = 'cruds';
    else if (!/^c?r?u?d?s?$/.test(perms)) continue;
    out.push({ context: m[1], type: m[2], perms, filtered: Boolean(m[4]) });
  }
  return out;
}

export class Session {
  constructor(config, root) {
    this.config = config;
    this.root = root;
    this.listeners = [];
    this.data = null;
    if (config.auth === 'smart') {
      try {
        this.data = JSON.parse(sessionStorage.getItem(SESSION_KEY) || 'null');
      } catch (e) {
        this.data = null;
      }
    }
    this.refreshing = null;
  }

  get authOff() { return this.config.auth !== 'smart'; }
  get signedIn() { return this.authOff || Boolean(this.data && this.data.access_token); }
  get accessToken() { return this.data ? this.data.access_token : null; }
  get patient() { return this.data ? this.data.patient || null : null; }
  get scopes() { return this.data ? parseScopes(this.data.scope) : []; }

  // who describes the user: {name, role, fhirUser}.
  get who() {
    if (!this.data) return null;
    const c = jwtClaims(this.data.access_token);
    return { name: c.sub || '', role: c.role || '', fhirUser: c.fhirUser || '' };
  }

  // staff reports whether the grant reaches beyond one patient's record.
  get staff() {
    return this.authOff || this.scopes.some((s) => s.context !== 'patient');
  }

  // can reports whether the grant's scopes permit perm (one of c r u d s)
  // on type: enough to decide which buttons to show; the server decides.
  can(type, perm) {
    if (this.authOff) return true;
    return this.scopes.some((s) => (s.type === '*' || s.type === type) && s.perms.includes(perm) &&
      (s.context !== 'patient' || Boolean(this.patient)));
  }

  onChange(fn) { this.listeners.push(fn); }
  changed() { for (const fn of this.listeners) fn(); }

  save(tok) {
    this.data = {
      access_token: tok.access_token,
      refresh_token: tok.refresh_token || (this.data && this.data.refresh_token) || null,
      scope: tok.scope || '',
      patient: tok.patient || null,
      expires_at: Date.now() + 1000 * (Number(tok.expires_in) || 3600),
    };
    sessionStorage.setItem(SESSION_KEY, JSON.stringify(this.data));
  }

  clear() {
    this.data = null;
    sessionStorage.removeItem(SESSION_KEY);
  }

  // expired drops a token the server no longer accepts.
  expired() {
    if (!this.data) return;
    this.clear();
    this.changed();
  }

  // canSignIn is null, or why this browser cannot sign in here.
  canSignIn() {
    if (!window.crypto || !crypto.subtle) {
      return 'This page is not a secure context (HTTPS, or localhost): the browser offers no SHA-256 for PKCE. Open the console over HTTPS.';
    }
    return null;
  }

  // signIn starts the authorization code flow; returnTo is the route to
  // come back to.
  async signIn(returnTo) {
    const verifier = randomString(32);
    const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(verifier)));
    const state = randomString(16);
    sessionStorage.setItem(PENDING_KEY, JSON.stringify({ state, verifier, returnTo: returnTo || '#/' }));
    const q = new URLSearchParams({
      response_type: 'code',
      client_id: this.config.clientId,
      redirect_uri: this.config.redirectUri,
      scope: this.config.scope,
      state,
      aud: this.config.fhirBase,
      code_challenge: b64url(digest),
      code_challenge_method: 'S256',
    });
    location.assign(this.root + 'auth/authorize?' + q.toString());
  }

  // completeCallback exchanges the code the authorization server sent back
  // (params: the callback's query) and returns the route to show.
  async completeCallback(params) {
    const pending = JSON.parse(sessionStorage.getItem(PENDING_KEY) || 'null');
    sessionStorage.removeItem(PENDING_KEY);
    if (params.get('error')) {
      throw new Error('sign-in was not completed: ' + (params.get('error_description') || params.get('error')));
    }
    if (!pending || params.get('state') !== pending.state) {
      throw new Error('this sign-in answer does not belong to this tab (state mismatch); sign in again');
    }
    const tok = await this.tokenRequest({
      grant_type: 'authorization_code',
      code: params.get('code') || '',
      redirect_uri: this.config.redirectUri,
      client_id: this.config.clientId,
      code_verifier: pending.verifier,
    });
    this.save(tok);
    this.changed();
    return pending.returnTo || '#/';
  }

  async tokenRequest(form) {
    let res;
    try {
      res = await fetch(this.root + 'auth/token', {
        method: 'POST',
        headers: { 'Content-Type': 'application/x-www-form-urlencoded', Accept: 'application/json' },
        body: new URLSearchParams(form).toString(),
        credentials: 'omit',
      });
    } catch (e) {
      throw new Error('the authorization server could not be reached');
    }
    const body = await res.json().catch(() => ({}));
    if (!res.ok) throw new Error((body.error_description || body.error || res.statusText) + ' (token endpoint)');
    return body;
  }

  // refresh trades the refresh token for a new access token, once at a
  // time; false when there is none or it failed.
  async refresh() {
    if (this.authOff || !this.data || !this.data.refresh_token) return false;
    if (!this.refreshing) {
      this.refreshing = this.tokenRequest({
        grant_type: 'refresh_token',
        refresh_token: this.data.refresh_token,
        client_id: this.config.clientId,
      }).then((tok) => { this.save(tok); return true; }, () => false)
        .finally(() => { this.refreshing = null; });
    }
    return this.refreshing;
  }

  // signOut revokes the refresh and access tokens (RFC 7009) and forgets
  // them; the tokens are forgotten even if revocation fails.
  async signOut() {
    const d = this.data;
    this.clear();
    if (d) {
      for (const token of [d.refresh_token, d.access_token]) {
        if (!token) continue;
        try {
          await fetch(this.root + 'auth/revoke', {
            method: 'POST',
            headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
            body: new URLSearchParams({ token, client_id: this.config.clientId }).toString(),
            credentials: 'omit',
          });
        } catch (e) {
          // Offline: the tokens expire on their own.
        }
      }
    }
    this.changed();
  }
}
