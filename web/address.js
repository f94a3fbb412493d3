// Addresses: the page's query parameters, links between the pages, and where the WebSocket is.
// Plain ES module; it reads `window.location` and `window.WSCHAT_CONFIG` (config.js), nothing else.

/** The page's query parameters. */
export function params() {
  return new URLSearchParams(window.location.search);
}

/**
 * A same-directory link such as `room.html?room=x`, keeping the `ws` parameter the page was opened with
 * (so a lobby opened with `?ws=wss://…` keeps talking to that server).
 * @param {string} page e.g. "room.html" or "index.html"
 * @param {Record<string, string>} [query]
 */
export function linkWithWs(page, query = {}) {
  const parts = Object.entries(query).map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`);
  const ws = params().get('ws');
  if (ws) parts.push(`ws=${encodeURIComponent(ws)}`);
  return parts.length ? `${page}?${parts.join('&')}` : page;
}

/**
 * Where to open the WebSocket: `?ws=` wins, then `window.WSCHAT_CONFIG.websocketUrl` (config.js),
 * then `ws(s)://<this host>/`.
 * @returns {{ok: true, url: string, source: string} | {ok: false, reason: string}}
 */
export function websocketBase() {
  const fromQuery = params().get('ws');
  const fromConfig = window.WSCHAT_CONFIG && window.WSCHAT_CONFIG.websocketUrl;
  let raw;
  let source;
  if (fromQuery) {
    raw = fromQuery;
    source = 'the ws parameter';
  } else if (fromConfig) {
    raw = String(fromConfig);
    source = 'config.js';
  } else {
    if (!window.location.host) {
      return { ok: false, reason: 'No server configured: open this page from a web server, or add ?ws=wss://… to the address.' };
    }
    raw = `${window.location.protocol === 'https:' ? 'wss:' : 'ws:'}//${window.location.host}/`;
    source = 'this page’s address';
  }
  let parsed;
  try {
    parsed = new URL(raw);
  } catch {
    return { ok: false, reason: `The server address from ${source} is not a URL: ${raw}` };
  }
  const scheme = { 'ws:': 'ws:', 'wss:': 'wss:', 'http:': 'ws:', 'https:': 'wss:' }[parsed.protocol];
  if (!scheme) {
    return { ok: false, reason: `The server address from ${source} must start with ws:// or wss:// (got ${parsed.protocol}).` };
  }
  // Keep the text as given (the stage path and any query); only swap an http(s) scheme for ws(s).
  const url = scheme === parsed.protocol ? raw : scheme + raw.slice(parsed.protocol.length);
  return { ok: true, url, source };
}

/**
 * `<base>?room=<room>`, or `<base>&room=<room>` when the base already has a query; `&name=<name>` when given.
 * @param {string} base
 * @param {string} room
 * @param {string | null} [name]
 */
export function socketUrl(base, room, name = null) {
  const hash = base.indexOf('#');
  const clean = hash >= 0 ? base.slice(0, hash) : base;
  let sep = '?';
  if (clean.includes('?')) sep = clean.endsWith('?') || clean.endsWith('&') ? '' : '&';
  const named = name ? `&name=${encodeURIComponent(name)}` : '';
  return `${clean}${sep}room=${encodeURIComponent(room)}${named}`;
}
