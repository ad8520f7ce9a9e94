// A real OpenID Provider for zerotrust's integration tests: panva's `oidc-provider` (v8, which
// supports Node.js 18, 20 and 22; v9 wants Node.js 22 or later) on 127.0.0.1.
//
//   node tests/idp/server.mjs --port 0 --resource https://api.example.test \
//       [--resource https://other.example.test] [--client-id ID] [--client-secret SECRET] \
//       [--exit-with-stdin]
//
// The port also comes from $IDP_PORT (default 0: a free port). It serves:
// - OIDC discovery at /.well-known/openid-configuration and the JWK Set it names;
// - one confidential client (`client_secret_basic`, grant `client_credentials`);
// - RFC 8707 resource indicators: each `--resource` is a resource server whose access tokens are
//   RFC 9068 JWTs (`typ` `at+jwt`, `aud` = the resource, RS256), with the scopes listed below.
//
// The RSA signing key is generated at each start, with a new `kid`: restarting the provider rotates
// its keys, which is what the tests use to prove that a verifier refetches an unknown `kid`.
//
// When it listens it prints one line to stdout and keeps serving:
//   zerotrust-idp ready issuer=http://127.0.0.1:PORT kid=KID
// It exits on SIGTERM/SIGINT and, with --exit-with-stdin, when its stdin closes (so it never
// outlives the test process that started it, even one killed hard).
import { generateKeyPairSync, randomBytes, randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import { parseArgs } from 'node:util';

import Provider, { errors } from 'oidc-provider';

/** The scopes this provider knows (oidc-provider's `scopes`); resource servers get the API ones. */
const API_SCOPES = ['reports:read', 'reports:write'];
const SCOPES = ['openid', 'offline_access', ...API_SCOPES];

const { values: args } = parseArgs({
  options: {
    port: { type: 'string', default: process.env.IDP_PORT ?? '0' },
    resource: { type: 'string', multiple: true, default: [] },
    'client-id': { type: 'string', default: process.env.IDP_CLIENT_ID ?? 'zerotrust-test-client' },
    'client-secret': {
      type: 'string',
      default: process.env.IDP_CLIENT_SECRET ?? 'zerotrust-test-secret-0123456789abcdef',
    },
    'exit-with-stdin': { type: 'boolean', default: false },
  },
});

const port = Number.parseInt(args.port, 10);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error(`zerotrust-idp: invalid port ${JSON.stringify(args.port)}`);
  process.exit(2);
}
if (args.resource.length === 0) {
  console.error('zerotrust-idp: at least one --resource URL is required');
  process.exit(2);
}
const resources = new Set(args.resource);

// A fresh signing key at every start: restarting rotates the provider's keys.
const kid = `idp-${randomUUID()}`;
const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingJwk = { ...privateKey.export({ format: 'jwk' }), kid, use: 'sig', alg: 'RS256' };

// Listen first: with port 0 the issuer URL is known only once the socket is bound.
const server = createServer();
await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(port, '127.0.0.1', resolve);
});
const issuer = `http://127.0.0.1:${server.address().port}`;

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: args['client-id'],
      client_secret: args['client-secret'],
      token_endpoint_auth_method: 'client_secret_basic',
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      scope: API_SCOPES.join(' '),
    },
  ],
  jwks: { keys: [signingJwk] },
  scopes: SCOPES,
  cookies: { keys: [randomBytes(32).toString('base64url')] },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: { enabled: false },
    revocation: { enabled: false },
    resourceIndicators: {
      enabled: true,
      // No implicit audience: a client names the resource it wants a token for.
      defaultResource: async () => undefined,
      useGrantedResource: async () => false,
      getResourceServerInfo: async (_ctx, resourceIndicator) => {
        if (!resources.has(resourceIndicator)) {
          throw new errors.InvalidTarget(`unknown resource ${resourceIndicator}`);
        }
        return {
          scope: API_SCOPES.join(' '),
          audience: resourceIndicator,
          accessTokenTTL: 5 * 60,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'RS256' } },
        };
      },
    },
  },
  ttl: {
    ClientCredentials: 5 * 60,
  },
});

// Log failed token requests on stderr, so a failing test shows why.
provider.on('grant.error', (_ctx, err) => {
  console.error(`zerotrust-idp: grant error: ${err.error ?? err.name}: ${err.error_description ?? err.message}`);
});
provider.on('server_error', (_ctx, err) => {
  console.error(`zerotrust-idp: server error: ${err.stack ?? err}`);
});

server.on('request', provider.callback());

console.log(`zerotrust-idp ready issuer=${issuer} kid=${kid}`);

function stop() {
  server.close();
  server.closeAllConnections();
  process.exit(0);
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
if (args['exit-with-stdin']) {
  process.stdin.on('end', stop);
  process.stdin.on('close', stop);
  process.stdin.resume();
}
