// A real OpenID Provider (panva/oidc-provider) for lanmesh's login tests.
// Env: PORT, CLIENTS (JSON list of {client_id, client_secret,
// redirect_uris}). Accounts: any login name; groups from GROUPS (JSON map
// name -> list). Dev interactions (login form, consent) stay on.
import Provider from 'oidc-provider';

const port = Number(process.env.PORT);
const issuer = `http://127.0.0.1:${port}`;
const groups = JSON.parse(process.env.GROUPS || '{}');
// Accounts deleted through POST /test/delete-account?id=NAME: the
// provider no longer knows them, so their refresh tokens stop working.
const deleted = new Set();
const clients = JSON.parse(process.env.CLIENTS).map((c) => ({
  grant_types: ['authorization_code', 'refresh_token'],
  response_types: ['code'],
  token_endpoint_auth_method: 'client_secret_basic',
  ...c,
}));

const provider = new Provider(issuer, {
  clients,
  conformIdTokenClaims: false,
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name'],
    groups: ['groups'],
  },
  scopes: ['openid', 'offline_access', 'email', 'profile', 'groups'],
  issueRefreshToken: async () => true,
  pkce: { required: () => true },
  features: { devInteractions: { enabled: true } },
  ttl: { IdToken: 3600, AccessToken: 3600, AuthorizationCode: 60, RefreshToken: 3600, Session: 3600, Interaction: 600, Grant: 3600 },
  async findAccount(ctx, id) {
    if (deleted.has(id)) return undefined;
    return {
      accountId: id,
      async claims() {
        return { sub: id, email: `${id}@example.net`, email_verified: true, name: id, groups: groups[id] || [] };
      },
    };
  },
});
provider.proxy = false;
provider.use(async (ctx, next) => {
  if (ctx.method === 'POST' && ctx.path === '/test/delete-account') {
    deleted.add(String(ctx.query.id));
    ctx.status = 204;
    return;
  }
  await next();
});
provider.on('server_error', (ctx, err) => { console.error('server_error', err); });
provider.listen(port, '127.0.0.1', () => {
  console.log(`oidc-provider ready at ${issuer}`);
});
