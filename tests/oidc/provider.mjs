// A real OpenID Connect provider on loopback for the sign-in tests: panva's certified `oidc-provider`
// (npm, pinned in package.json / package-lock.json), configured like a company identity provider in front of a JWT
// resource server. See README.md beside this file.
//
// Usage: node tests/oidc/provider.mjs          (or: npm start --prefix tests/oidc)
// Prints ONE line of JSON on stdout once it listens, e.g. {"issuer":"http://127.0.0.1:41234"}, then logs nothing
// more on stdout. Stops on SIGTERM/SIGINT or when stdin closes (so a test that dies never leaves it behind).
//
// Environment (all optional):
//   OIDC_HOST                  interface to listen on (default 127.0.0.1); the port is always chosen by the OS
//   OIDC_DASHBOARD_CLIENT_ID   id of the pre-registered public dashboard client (default "kpi-dashboard")
//   OIDC_DASHBOARD_REDIRECT_URIS  comma-separated redirect URIs of that client (none: the client is not registered)
//   OIDC_DEFAULT_RESOURCE      resource (audience) used when a client asks for none (like Auth0's default audience);
//                              unset: such a request gets an opaque token for the userinfo endpoint only
//   OIDC_ACCESS_TOKEN_TTL      lifetime of access tokens in seconds (default 600)
//   OIDC_REFRESH_TOKENS        "1": issue refresh tokens when `offline_access` is asked for (default off)

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';

import Provider from 'oidc-provider';

const KPI_READ = 'kpi:read';
const host = process.env.OIDC_HOST || '127.0.0.1';
const dashboardClientId = process.env.OIDC_DASHBOARD_CLIENT_ID || 'kpi-dashboard';
const dashboardRedirectUris = (process.env.OIDC_DASHBOARD_REDIRECT_URIS || '')
  .split(',').map((uri) => uri.trim()).filter(Boolean);
const defaultResource = process.env.OIDC_DEFAULT_RESOURCE || undefined;
const accessTokenTTL = Number.parseInt(process.env.OIDC_ACCESS_TOKEN_TTL || '600', 10);
const refreshTokens = process.env.OIDC_REFRESH_TOKENS === '1';

// Roles by login name, the way a directory would assign them: `exec-*` are executives, `admin-*` administrators.
// They travel both as a top-level `roles` claim (Auth0/Entra style) and as Keycloak's `realm_access.roles`.
function rolesOf(accountId) {
  if (accountId.startsWith('exec-')) return ['exec'];
  if (accountId.startsWith('admin-')) return ['admin'];
  return [];
}

function signingKey() {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = privateKey.export({ format: 'jwk' });
  return { ...jwk, kid: randomBytes(8).toString('hex'), alg: 'RS256', use: 'sig' };
}

const server = createServer();
await new Promise((resolve) => { server.listen(0, host, resolve); });
const { port } = server.address();
const issuer = `http://${host.includes(':') ? `[${host}]` : host}:${port}`;

const clients = dashboardRedirectUris.length === 0 ? [] : [{
  client_id: dashboardClientId,
  token_endpoint_auth_method: 'none', // a public single-page client: no secret, PKCE instead
  application_type: 'web',
  grant_types: refreshTokens ? ['authorization_code', 'refresh_token'] : ['authorization_code'],
  response_types: ['code'],
  redirect_uris: dashboardRedirectUris,
  post_logout_redirect_uris: dashboardRedirectUris,
}];

const provider = new Provider(issuer, {
  clients,
  responseTypes: ['code'], // authorization code only, like an IdP configured for OAuth 2.1
  jwks: { keys: [signingKey()] },
  cookies: { keys: [randomBytes(32).toString('hex')] },
  scopes: ['openid', 'offline_access', KPI_READ],
  claims: { openid: ['sub'] },
  pkce: { required: () => true }, // every client, public or confidential (OAuth 2.1, the MCP authorization spec)
  // Any login name becomes the subject (devInteractions' login page takes any name and password).
  findAccount: async (_ctx, sub) => ({ accountId: sub, claims: async () => ({ sub }) }),
  extraTokenClaims: async (_ctx, token) => {
    const roles = token.accountId ? rolesOf(token.accountId) : [];
    return roles.length ? { roles, realm_access: { roles } } : undefined;
  },
  issueRefreshToken: async (_ctx, client, code) => refreshTokens
    && client.grantTypeAllowed('refresh_token') && code.scopes.has('offline_access'),
  ttl: { AccessToken: accessTokenTTL },
  features: {
    devInteractions: { enabled: true }, // the built-in login and consent pages (plain HTML forms)
    registration: { enabled: true }, // open dynamic client registration (RFC 7591), for MCP clients
    revocation: { enabled: true },
    rpInitiatedLogout: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: async (_ctx, _client, oneOf) => oneOf || defaultResource,
      useGrantedResource: async () => true,
      // Any resource a client names is an API of this company: a JWT access token, RS256, audience = the resource,
      // scope = the requested scopes that the API knows (kpi:read).
      getResourceServerInfo: async (_ctx, resourceIndicator) => ({
        scope: KPI_READ,
        audience: resourceIndicator,
        accessTokenTTL,
        accessTokenFormat: 'jwt',
        jwt: { sign: { alg: 'RS256' } },
      }),
    },
  },
});
provider.on('server_error', (_ctx, error) => { process.stderr.write(`oidc-provider server_error: ${error.stack}\n`); });

server.on('request', provider.callback());
process.stdout.write(`${JSON.stringify({ issuer })}\n`);

function stop() { server.close(); server.closeAllConnections(); process.exit(0); }
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
process.stdin.on('end', stop);
process.stdin.on('close', stop);
process.stdin.resume();
