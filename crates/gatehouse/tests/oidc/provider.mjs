// A real OpenID Provider (the certified `oidc-provider` package) for the
// single sign-on tests, on loopback:
//
//   node provider.mjs <port> <clients.json> <accounts.json>
//
// Clients are read once at start; accounts at every sign-in, so a test can
// move someone out of a group between two sign-ins. The development
// interactions (a login form taking any known account, then a consent form)
// stand in for the provider's own pages. Prints `listening <issuer>` when ready.
import fs from 'node:fs';
import Provider from 'oidc-provider';

const [port, clientsFile, accountsFile] = process.argv.slice(2);
const issuer = `http://127.0.0.1:${port}`;
const read = (file) => JSON.parse(fs.readFileSync(file, 'utf8'));

const provider = new Provider(issuer, {
  clients: read(clientsFile),
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name'],
    groups: ['groups'],
  },
  // Claims asked for by scope go into the ID token too, as most providers do.
  conformIdTokenClaims: false,
  features: { devInteractions: { enabled: true } },
  cookies: { keys: ['gatehouse-test-only'] },
  ttl: {
    IdToken: 3600,
    Interaction: 600,
    Session: 3600,
    Grant: 3600,
  },
  async findAccount(ctx, id) {
    const account = read(accountsFile)[id];
    if (!account) return undefined;
    return {
      accountId: id,
      async claims() {
        // A test may withhold groups from the ID token: they are then
        // only in userinfo.
        return { sub: id, ...account };
      },
    };
  },
});

provider.listen(Number(port), '127.0.0.1', () => {
  console.log(`listening ${issuer}`);
});
