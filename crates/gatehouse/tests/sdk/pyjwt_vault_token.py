"""A service written in Python gets a vault token the way docs/vaults.md says:
PyJWT (with `cryptography`) signs the RFC 7523 client assertion with the PEM
private key Gatehouse handed out, posts it to the token endpoint, and verifies
the access token with nothing but the JWKS document (PyJWKClient).

Usage: pyjwt_vault_token.py <gatehouse base URL> <PEM file> <kid> <client id> <vault id> <issuer>
Prints one JSON line: the token endpoint's status and the verified claims.
"""

import json
import sys
import time
import urllib.parse
import urllib.request
import uuid

import jwt

base, pem_file, kid, client, vault, issuer = sys.argv[1:7]
pem = open(pem_file).read()
now = int(time.time())
assertion = jwt.encode(
    {"iss": client, "sub": client, "aud": issuer + "/api/v1/token",
     "iat": now, "exp": now + 60, "jti": uuid.uuid4().hex},
    pem,
    algorithm="EdDSA",
    headers={"kid": kid},
)
form = urllib.parse.urlencode({
    "grant_type": "client_credentials",
    "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
    "client_assertion": assertion,
    "vault_id": vault,
}).encode()
with urllib.request.urlopen(base + "/api/v1/token", data=form) as response:
    status, tokens = response.status, json.load(response)
access = tokens["access_token"]
key = jwt.PyJWKClient(base + "/.well-known/jwks.json").get_signing_key_from_jwt(access)
claims = jwt.decode(access, key.key, algorithms=["EdDSA"], audience=issuer, issuer=issuer)
print(json.dumps({"status": status, "sub": claims["sub"], "vault": claims["vault"], "role": claims["role"]}))
