// The OpenID Connect provider Schakel runs locally and in tests (ADR 0016): panva's oidc-provider with the
// demo people of the example municipality, one confidential client (the werkbak), JWT access tokens for the
// Schakel APIs (audience "schakel") and login, consent and logout pages in Dutch.
//
//   node provider.js <config.json>
//
// config.json: {"issuer": "http://127.0.0.1:PORT", "port": PORT, "host": "127.0.0.1" (the default),
//               "people": "path/to/demo-people.json",
//               "clients": [{"client_id", "client_secret", "redirect_uris", "post_logout_redirect_uris"}],
//               "audience": "schakel", "access_token_ttl_s": 3600}
// A real municipality uses its own identity provider; this one is for development and tests only.

import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import { URLSearchParams } from 'node:url';

import Provider from 'oidc-provider';

const config = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const people = new Map(
  JSON.parse(fs.readFileSync(config.people, 'utf8')).people.map((person) => [person.email.toLowerCase(), person]),
);
const audience = config.audience || 'schakel';
const resource = `urn:schakel:${audience}`;

function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => ({
    '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;',
  }[c]));
}

const STYLE = 'body{font-family:system-ui,sans-serif;max-width:32rem;margin:2rem auto;padding:0 1rem;color:#1a1a1a}'
  + 'label{display:block;margin-top:1rem;font-weight:600}input{font-size:1rem;padding:.4rem;width:100%;'
  + 'box-sizing:border-box;border:1px solid #555}button{margin-top:1.5rem;font-size:1rem;padding:.5rem 1rem;'
  + 'background:#0b4f8a;color:#fff;border:0}button.secondary{background:#fff;color:#0b4f8a;border:1px solid #0b4f8a}'
  + ':focus{outline:3px solid #c25100;outline-offset:2px}.fout{color:#a4000f;font-weight:600}';

function page(title, body) {
  return `<!DOCTYPE html><html lang="nl"><head><meta charset="utf-8">`
    + `<meta name="viewport" content="width=device-width, initial-scale=1"><title>${escapeHtml(title)}</title>`
    + `<style>${STYLE}</style></head><body><main><h1>${escapeHtml(title)}</h1>${body}</main></body></html>`;
}

function loginPage(uid, { email = '', error = '' } = {}) {
  const fout = error ? `<p class="fout" role="alert" id="fout">${escapeHtml(error)}</p>` : '';
  return page('Inloggen bij Gemeente Lindendam', `${fout}
    <form method="post" action="/interaction/${escapeHtml(uid)}/login">
      <label for="email">E-mailadres</label>
      <input id="email" name="email" type="email" autocomplete="username" required value="${escapeHtml(email)}"
        ${error ? 'aria-describedby="fout"' : ''}>
      <label for="password">Wachtwoord</label>
      <input id="password" name="password" type="password" autocomplete="current-password" required>
      <button type="submit">Inloggen</button>
    </form>`);
}

const jwk = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' });
const provider = new Provider(config.issuer, {
  clients: config.clients.map((client) => ({
    grant_types: ['authorization_code'], response_types: ['code'], token_endpoint_auth_method: 'client_secret_basic',
    ...client,
  })),
  jwks: { keys: [{ ...jwk, kid: crypto.randomUUID(), use: 'sig', alg: 'RS256' }] },
  cookies: { keys: [crypto.randomBytes(32).toString('hex')] },
  claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'], schakel: ['schakel_organisation'] },
  scopes: ['openid', 'email', 'profile', 'schakel'],
  pkce: { required: () => true },
  ttl: { AccessToken: config.access_token_ttl_s || 3600, IdToken: 3600, Session: 8 * 3600, Interaction: 600, Grant: 8 * 3600 },
  async findAccount(ctx, id) {
    const person = people.get(String(id).toLowerCase());
    if (!person) return undefined;
    return {
      accountId: id,
      async claims() {
        return { sub: id, email: person.email, email_verified: true, name: person.name,
          schakel_organisation: person.organisation };
      },
    };
  },
  async extraTokenClaims(ctx, token) {
    const person = people.get(String(token.accountId || '').toLowerCase());
    if (!person) return undefined;
    return { email: person.email, email_verified: true, name: person.name, schakel_organisation: person.organisation };
  },
  features: {
    devInteractions: { enabled: false },
    rpInitiatedLogout: {
      enabled: true,
      async logoutSource(ctx, form) {
        ctx.body = page('Afmelden', `${form}<p>Wilt u zich afmelden bij de gemeente?</p>
          <button type="submit" form="op.logoutForm" value="yes" name="logout">Ja, afmelden</button>
          <button type="submit" form="op.logoutForm" class="secondary">Nee, aangemeld blijven</button>`);
      },
      async postLogoutSuccessSource(ctx) {
        ctx.body = page('Afgemeld', '<p>U bent afgemeld.</p>');
      },
    },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => resource,
      useGrantedResource: () => true,
      getResourceServerInfo: (ctx, indicator) => {
        if (indicator !== resource) throw new Provider.errors.InvalidTarget();
        return { scope: 'openid email profile schakel', audience, accessTokenTTL: config.access_token_ttl_s || 3600,
          accessTokenFormat: 'jwt', jwt: { sign: { alg: 'RS256' } } };
      },
    },
  },
  async renderError(ctx, out) {
    ctx.type = 'html';
    ctx.body = page('Er ging iets mis bij het inloggen',
      `<p>${escapeHtml(out.error)}: ${escapeHtml(out.error_description || '')}</p>`);
  },
});
provider.on('server_error', (ctx, error) => console.error('server_error', error));

async function readForm(req) {
  let body = '';
  for await (const chunk of req) {
    body += chunk;
    if (body.length > 10000) throw new Error('form too large');
  }
  return new URLSearchParams(body);
}

async function interaction(req, res) {
  const details = await provider.interactionDetails(req, res);
  const { uid, prompt, params, session } = details;
  const isLoginPost = req.method === 'POST' && req.url.endsWith('/login');
  if (prompt.name === 'login' && !isLoginPost) {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
    res.end(loginPage(uid));
    return;
  }
  if (prompt.name === 'login') {
    const form = await readForm(req);
    const email = (form.get('email') || '').trim().toLowerCase();
    const person = people.get(email);
    const given = Buffer.from(form.get('password') || '');
    const expected = Buffer.from(person ? person.password : crypto.randomUUID());
    const ok = person && given.length === expected.length && crypto.timingSafeEqual(given, expected);
    if (!ok) {
      console.log(JSON.stringify({ event: 'login_refused' }));
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
      res.end(loginPage(uid, { email, error: 'Het e-mailadres of het wachtwoord klopt niet.' }));
      return;
    }
    console.log(JSON.stringify({ event: 'login' }));
    await provider.interactionFinished(req, res, { login: { accountId: person.email } }, { mergeWithLastSubmission: false });
    return;
  }
  // consent: the werkbak is the municipality's own client, so what it asks is granted.
  const grant = details.grantId
    ? await provider.Grant.find(details.grantId)
    : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
  const missing = prompt.details;
  if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
  if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
  if (missing.missingResourceScopes) {
    for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes)) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
  }
  const grantId = await grant.save();
  await provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
}

const handle = provider.callback();
const server = http.createServer((req, res) => {
  if (req.url === '/healthz') {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end('{"status":"ok"}');
    return;
  }
  if (req.url.startsWith('/interaction/')) {
    interaction(req, res).catch((error) => {
      console.error('interaction_failed', error);
      if (!res.headersSent) res.writeHead(400, { 'content-type': 'text/html; charset=utf-8' });
      res.end(page('Inloggen mislukt', '<p>Deze aanmelding is verlopen of ongeldig. Begin opnieuw.</p>'));
    });
    return;
  }
  handle(req, res);
});
server.listen(config.port, config.host || '127.0.0.1', () => console.log(JSON.stringify({ event: 'listening', issuer: config.issuer })));
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => server.close(() => process.exit(0)));
