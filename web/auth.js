// Sign-in, when config.js names an OpenID Connect issuer (`auth: {issuer, clientId}`): OAuth 2.0 Authorization Code
// with PKCE against the issuer's own pages (Cognito's Hosted UI, Auth0, Keycloak, the emulator's development
// provider), the ID token kept in this browser (localStorage) so every tab of the user shares one sign-in, and
// renewed with the refresh token before it expires. The room page hands the token to the server as a WebSocket
// subprotocol (`wschat, <jwt>`): browsers cannot set headers on a WebSocket, and a query string ends up in logs.
//
// No DOM here: the pages render what this says, and the Node unit tests (tests/browser/auth.test.mjs) drive it with
// fake storage, fetch and crypto.

const TOKENS_KEY = 'wschat.auth.tokens';
const PENDING_KEY = 'wschat.auth.pending';
const DISCOVERY_KEY = 'wschat.auth.discovery';
/** A token this close to its `exp` is renewed before use (or half its lifetime, for a shorter-lived one). */
export const RENEW_BEFORE_MS = 60_000;

/** How long before `exp` a token of these claims is renewed (epoch ms of the moment). */
function renewalOf(claims) {
  const lifetime = typeof claims.iat === 'number' ? (claims.exp - claims.iat) * 1000 : Infinity;
  return claims.exp * 1000 - Math.min(RENEW_BEFORE_MS, lifetime / 2);
}

/** The issuer and client of config.js, or null when the chat needs no sign-in. */
export function authSettings(config = globalThis.WSCHAT_CONFIG) {
  const auth = config && config.auth;
  if (!auth || typeof auth.issuer !== 'string' || typeof auth.clientId !== 'string') return null;
  return { issuer: auth.issuer.replace(/\/+$/, ''), clientId: auth.clientId };
}

/** Bytes as base64url without padding. */
export function base64url(bytes) {
  let text = '';
  for (const byte of bytes) text += String.fromCharCode(byte);
  return btoa(text).replaceAll('+', '-').replaceAll('/', '_').replace(/=+$/, '');
}

/** A PKCE verifier (32 random bytes: 43 characters) and its S256 challenge. */
export async function pkcePair(crypto = globalThis.crypto) {
  const verifier = base64url(crypto.getRandomValues(new Uint8Array(32)));
  const digest = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(verifier));
  return { verifier, challenge: base64url(new Uint8Array(digest)) };
}

/** A JWT's claims, unverified (the server verifies; the page only reads its own token), or null. */
export function claimsOf(jwt) {
  try {
    const part = String(jwt).split('.')[1].replaceAll('-', '+').replaceAll('_', '/');
    const json = decodeURIComponent(Array.from(atob(part), (c) => `%${c.charCodeAt(0).toString(16).padStart(2, '0')}`).join(''));
    const claims = JSON.parse(json);
    return claims && typeof claims === 'object' ? claims : null;
  } catch {
    return null;
  }
}

/** The name the server shows for these claims (the same order it reads them in). */
export function displayNameOf(claims) {
  for (const key of ['name', 'preferred_username', 'cognito:username', 'sub']) {
    if (typeof claims[key] === 'string' && claims[key].trim() !== '') return claims[key].trim().slice(0, 32);
  }
  return '';
}

export class Auth {
  /**
   * @param {object} options
   * @param {{issuer: string, clientId: string}} options.settings
   * @param {Storage} options.storage where the tokens live (localStorage: every tab shares them)
   * @param {Storage} options.session where a sign-in in progress lives (sessionStorage: this tab's)
   * @param {typeof fetch} options.fetch
   * @param {Crypto} options.crypto
   * @param {() => number} [options.now] the clock, epoch ms
   */
  constructor({ settings, storage, session, fetch, crypto, now }) {
    this.settings = settings;
    this.storage = storage;
    this.session = session;
    this.fetch = fetch;
    this.crypto = crypto;
    this.now = now ?? Date.now;
  }

  /** The issuer's discovery document (fetched once per tab). */
  async discovery() {
    const cached = this.read(this.session, DISCOVERY_KEY);
    if (cached && cached.issuer === this.settings.issuer) return cached;
    const response = await this.fetch(`${this.settings.issuer}/.well-known/openid-configuration`);
    if (!response.ok) throw new Error(`the sign-in service answered ${response.status}`);
    const doc = await response.json();
    if (doc.issuer !== this.settings.issuer || typeof doc.authorization_endpoint !== 'string' || typeof doc.token_endpoint !== 'string') {
      throw new Error('the sign-in service describes itself wrongly');
    }
    this.write(this.session, DISCOVERY_KEY, doc);
    return doc;
  }

  /** The current ID token and its claims, until it is time to renew it; else null. */
  current() {
    const tokens = this.read(this.storage, TOKENS_KEY);
    const claims = tokens && claimsOf(tokens.idToken);
    if (!claims || typeof claims.exp !== 'number') return null;
    if (renewalOf(claims) <= this.now()) return null;
    return { token: tokens.idToken, claims };
  }

  /** Who is signed in (`{name, uid}`), even with a token that needs renewing; null when nobody is. */
  who() {
    const tokens = this.read(this.storage, TOKENS_KEY);
    const claims = tokens && claimsOf(tokens.idToken);
    return claims && typeof claims.sub === 'string' ? { name: displayNameOf(claims), uid: claims.sub } : null;
  }

  /** When the current token must be renewed (epoch ms), or null. */
  renewAt() {
    const tokens = this.read(this.storage, TOKENS_KEY);
    const claims = tokens && claimsOf(tokens.idToken);
    return claims && typeof claims.exp === 'number' ? renewalOf(claims) : null;
  }

  /** The URL that takes the browser to the issuer's sign-in, and back to `callback` and then `returnTo`. */
  async signInUrl(callback, returnTo) {
    const doc = await this.discovery();
    const { verifier, challenge } = await pkcePair(this.crypto);
    const state = base64url(this.crypto.getRandomValues(new Uint8Array(16)));
    this.write(this.session, PENDING_KEY, { state, verifier, callback, returnTo });
    const url = new URL(doc.authorization_endpoint);
    for (const [key, value] of Object.entries({
      response_type: 'code', client_id: this.settings.clientId, redirect_uri: callback, scope: 'openid profile',
      state, code_challenge: challenge, code_challenge_method: 'S256',
    })) url.searchParams.set(key, value);
    return url.href;
  }

  /**
   * Finishes a sign-in the issuer sent the browser back from (`code` and `state` in `url`): where to go next, or
   * null when `url` is no such return. Throws with a reason when the sign-in failed.
   */
  async complete(url) {
    const query = new URL(url).searchParams;
    if (!query.has('state') || !(query.has('code') || query.has('error'))) return null;
    const pending = this.read(this.session, PENDING_KEY);
    this.session.removeItem(PENDING_KEY);
    if (!pending || pending.state !== query.get('state')) throw new Error('this sign-in was not started here; try again');
    if (query.has('error')) throw new Error(`the sign-in did not complete (${query.get('error')})`);
    await this.grant({
      grant_type: 'authorization_code', code: query.get('code'), redirect_uri: pending.callback,
      client_id: this.settings.clientId, code_verifier: pending.verifier,
    });
    return pending.returnTo || null;
  }

  /** Renews the ID token with the refresh token; whether it worked. */
  async refresh() {
    const tokens = this.read(this.storage, TOKENS_KEY);
    if (!tokens || !tokens.refreshToken) return false;
    try {
      await this.grant({ grant_type: 'refresh_token', refresh_token: tokens.refreshToken, client_id: this.settings.clientId });
      return true;
    } catch {
      return false;
    }
  }

  /** A token good for a while: the current one, else a renewed one; null when the user must sign in again. */
  async fresh() {
    const now = this.current();
    if (now) return now.token;
    return (await this.refresh()) ? this.current()?.token ?? null : null;
  }

  /** Forgets the tokens; the URL of the issuer's own sign-out, when it has one, back to `returnTo`. */
  async signOut(returnTo) {
    const tokens = this.read(this.storage, TOKENS_KEY);
    this.storage.removeItem(TOKENS_KEY);
    let doc = null;
    try {
      doc = await this.discovery();
    } catch {
      return null;
    }
    if (typeof doc.end_session_endpoint !== 'string') return null;
    const url = new URL(doc.end_session_endpoint);
    url.searchParams.set('client_id', this.settings.clientId);
    url.searchParams.set('post_logout_redirect_uri', returnTo);
    if (tokens && tokens.idToken) url.searchParams.set('id_token_hint', tokens.idToken);
    return url.href;
  }

  async grant(form) {
    const doc = await this.discovery();
    const response = await this.fetch(doc.token_endpoint, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams(form).toString(),
    });
    const answer = await response.json().catch(() => ({}));
    if (!response.ok || typeof answer.id_token !== 'string') {
      throw new Error(`the sign-in service refused (${answer.error || response.status})`);
    }
    const previous = this.read(this.storage, TOKENS_KEY);
    this.write(this.storage, TOKENS_KEY, {
      idToken: answer.id_token,
      refreshToken: answer.refresh_token || (previous && previous.refreshToken) || null,
    });
  }

  read(storage, key) {
    try {
      return JSON.parse(storage.getItem(key) || 'null');
    } catch {
      return null;
    }
  }

  write(storage, key, value) {
    try {
      storage.setItem(key, JSON.stringify(value));
    } catch {
      // Storage disabled: sign-in lasts only this page.
    }
  }
}

/** The page's Auth, or null when the chat needs no sign-in. */
export function pageAuth() {
  const settings = authSettings();
  if (!settings) return null;
  return new Auth({
    settings,
    storage: window.localStorage,
    session: window.sessionStorage,
    fetch: window.fetch.bind(window),
    crypto: window.crypto,
  });
}
