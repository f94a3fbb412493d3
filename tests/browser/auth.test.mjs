// web/auth.js without a browser: PKCE, the code flow's return, renewal, sign-out, and reading tokens, against a
// fake issuer (fetch), fake storage and Node's own WebCrypto.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { webcrypto } from 'node:crypto';
import { Auth, authSettings, base64url, claimsOf, displayNameOf, pkcePair } from '../../web/auth.js';

const ISSUER = 'http://127.0.0.1:3000/oidc';

class MemoryStorage {
  constructor() { this.map = new Map(); }
  getItem(key) { return this.map.has(key) ? this.map.get(key) : null; }
  setItem(key, value) { this.map.set(key, String(value)); }
  removeItem(key) { this.map.delete(key); }
}

/** An unsigned JWT with these claims (the page never verifies; the server does). */
function jwt(claims) {
  const part = (value) => base64url(new TextEncoder().encode(JSON.stringify(value)));
  return `${part({ alg: 'ES256' })}.${part(claims)}.c2ln`;
}

/** A fake issuer: its discovery document and a token endpoint recording what it was sent. */
function issuer({ now, refreshOk = true }) {
  const sent = [];
  const fetch = async (url, init = {}) => {
    if (url === `${ISSUER}/.well-known/openid-configuration`) {
      return { ok: true, status: 200, json: async () => ({
        issuer: ISSUER, authorization_endpoint: `${ISSUER}/authorize`, token_endpoint: `${ISSUER}/token`,
        end_session_endpoint: `${ISSUER}/logout`,
      }) };
    }
    if (url === `${ISSUER}/token`) {
      const form = Object.fromEntries(new URLSearchParams(init.body));
      sent.push(form);
      if (form.grant_type === 'refresh_token' && !refreshOk) return { ok: false, status: 400, json: async () => ({ error: 'invalid_grant' }) };
      const exp = Math.floor(now() / 1000) + 600;
      return { ok: true, status: 200, json: async () => ({
        id_token: jwt({ sub: 'u-ann', name: 'Ann', exp, n: sent.length }),
        refresh_token: form.grant_type === 'authorization_code' ? 'r-1' : undefined,
      }) };
    }
    return { ok: false, status: 404, json: async () => ({}) };
  };
  return { fetch, sent };
}

function auth(options = {}) {
  let clock = 1_800_000_000_000;
  const now = () => clock;
  const fake = issuer({ now, ...options });
  const a = new Auth({
    settings: { issuer: ISSUER, clientId: 'wschat-local' },
    storage: new MemoryStorage(), session: new MemoryStorage(), fetch: fake.fetch, crypto: webcrypto, now,
  });
  return { auth: a, sent: fake.sent, advance: (ms) => { clock += ms; } };
}

test('pkce_verifiers_are_43_characters_and_their_challenge_is_the_rfc_7636_s256', async () => {
  const { verifier, challenge } = await pkcePair(webcrypto);
  assert.match(verifier, /^[A-Za-z0-9_-]{43}$/);
  const expected = base64url(new Uint8Array(await webcrypto.subtle.digest('SHA-256', new TextEncoder().encode(verifier))));
  assert.equal(challenge, expected);
  // RFC 7636, appendix B.
  const rfc = base64url(new Uint8Array(await webcrypto.subtle.digest('SHA-256', new TextEncoder().encode('dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk'))));
  assert.equal(rfc, 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM');
});

test('settings_come_from_config_js_only_when_it_names_an_issuer_and_a_client', () => {
  assert.equal(authSettings({ websocketUrl: 'ws://x' }), null);
  assert.equal(authSettings({ auth: { issuer: ISSUER } }), null);
  assert.deepEqual(authSettings({ auth: { issuer: `${ISSUER}/`, clientId: 'c' } }), { issuer: ISSUER, clientId: 'c' });
});

test('a_sign_in_goes_to_the_issuer_with_pkce_and_comes_back_with_a_token_for_the_room_it_was_for', async () => {
  const { auth: a, sent } = auth();
  const away = new URL(await a.signInUrl('http://127.0.0.1:3000/index.html', 'room.html?room=lobby'));
  assert.equal(away.origin + away.pathname, `${ISSUER}/authorize`);
  assert.equal(away.searchParams.get('code_challenge_method'), 'S256');
  assert.equal(away.searchParams.get('client_id'), 'wschat-local');
  const state = away.searchParams.get('state');

  assert.equal(await a.complete('http://127.0.0.1:3000/index.html'), null, 'not a return');
  const next = await a.complete(`http://127.0.0.1:3000/index.html?code=c-1&state=${state}`);

  assert.equal(next, 'room.html?room=lobby');
  assert.equal(sent[0].grant_type, 'authorization_code');
  assert.equal(sent[0].code, 'c-1');
  assert.match(sent[0].code_verifier, /^[A-Za-z0-9_-]{43}$/);
  assert.deepEqual(a.who(), { name: 'Ann', uid: 'u-ann' });
  assert.ok(a.current());
});

test('a_return_with_another_state_or_an_error_is_refused', async () => {
  const { auth: a } = auth();
  await a.signInUrl('http://127.0.0.1:3000/index.html', null);
  await assert.rejects(a.complete('http://127.0.0.1:3000/index.html?code=c&state=forged'), /not started here/);
  const away = new URL(await a.signInUrl('http://127.0.0.1:3000/index.html', null));
  await assert.rejects(
    a.complete(`http://127.0.0.1:3000/index.html?error=access_denied&state=${away.searchParams.get('state')}`),
    /access_denied/,
  );
  assert.equal(a.who(), null);
});

test('a_token_near_its_end_is_renewed_with_the_refresh_token_and_without_one_sign_in_is_needed', async () => {
  const { auth: a, sent, advance } = auth();
  const away = new URL(await a.signInUrl('http://127.0.0.1:3000/index.html', null));
  await a.complete(`http://127.0.0.1:3000/index.html?code=c&state=${away.searchParams.get('state')}`);
  const first = await a.fresh();

  advance(560_000); // 40 s left: inside the renewal margin
  const renewed = await a.fresh();

  assert.notEqual(renewed, first);
  assert.equal(sent.at(-1).grant_type, 'refresh_token');
  assert.equal(sent.at(-1).refresh_token, 'r-1');
  const { auth: b, advance: later } = auth({ refreshOk: false });
  const back = new URL(await b.signInUrl('http://127.0.0.1:3000/index.html', null));
  await b.complete(`http://127.0.0.1:3000/index.html?code=c&state=${back.searchParams.get('state')}`);
  later(700_000);
  assert.equal(await b.fresh(), null, 'expired and not renewable: sign in again');
});

test('signing_out_forgets_the_tokens_and_goes_through_the_issuer_s_sign_out', async () => {
  const { auth: a } = auth();
  const away = new URL(await a.signInUrl('http://127.0.0.1:3000/index.html', null));
  await a.complete(`http://127.0.0.1:3000/index.html?code=c&state=${away.searchParams.get('state')}`);

  const out = new URL(await a.signOut('http://127.0.0.1:3000/index.html'));

  assert.equal(out.origin + out.pathname, `${ISSUER}/logout`);
  assert.equal(out.searchParams.get('post_logout_redirect_uri'), 'http://127.0.0.1:3000/index.html');
  assert.equal(a.who(), null);
});

test('claims_are_read_as_utf_8_and_the_name_falls_back_like_the_server_s', () => {
  assert.deepEqual(claimsOf(jwt({ sub: 's', name: 'Zoë 로비' })), { sub: 's', name: 'Zoë 로비' });
  assert.equal(claimsOf('garbage'), null);
  assert.equal(displayNameOf({ sub: 'u', preferred_username: ' ann ' }), 'ann');
  assert.equal(displayNameOf({ sub: 'x'.repeat(40) }), 'x'.repeat(32));
});
