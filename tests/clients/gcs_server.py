"""A GCS-API server on a free loopback port that also tells who called it.

Run by harness.py in the servers' virtualenv: gcp-storage-emulator (the JSON
and upload APIs the clients use), plus, on the same port:

- `POST /token`: an OAuth 2.0 token endpoint for service-account keys (the
  JWT-bearer grant Google's own endpoint takes). The service-account JSON the
  harness puts in the Secret names this URL as its `token_uri`, as a real key
  names Google's. The assertion's RS256 signature is checked against the
  public key of the account it claims (`--keys`: a JSON file
  `{client_email: public key PEM}`), so a token is only issued to a client
  that really read the private key from the file or the variable it was given.
- `GET /_pw/log`: every storage request so far, as JSON
  `[{"method", "path", "identity"}]`, where identity is the client_email whose
  token the request carried, `anonymous` (no Authorization header) or
  `unknown-token`. The harness reads it to say which credentials each client used.

Prints `ready <port>` on stdout, then serves until stdin closes.
"""

import argparse
import base64
import json
import sys
import threading
import time
from urllib.parse import parse_qs

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from gcp_storage_emulator import server as emulator

LOCK = threading.Lock()
LOG = []
TOKENS = {}


def b64url(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def issue_token(handler, keys):
    length = int(handler.headers.get("Content-Length") or 0)
    form = parse_qs(handler.rfile.read(length).decode())
    grant = form.get("grant_type", [""])[0]
    assertion = form.get("assertion", [""])[0]
    try:
        if grant != "urn:ietf:params:oauth:grant-type:jwt-bearer":
            raise ValueError("grant_type %r" % grant)
        head, body, sig = assertion.split(".")
        header = json.loads(b64url(head))
        claims = json.loads(b64url(body))
        if header.get("alg") != "RS256":
            raise ValueError("alg %r" % header.get("alg"))
        email = claims.get("iss")
        if email not in keys:
            raise ValueError("unknown service account %r" % email)
        keys[email].verify(
            b64url(sig), (head + "." + body).encode(), padding.PKCS1v15(), hashes.SHA256()
        )
        if claims.get("exp", 0) < time.time():
            raise ValueError("assertion expired")
    except (ValueError, InvalidSignature) as err:
        reply(handler, 400, {"error": "invalid_grant", "error_description": str(err) or "bad signature"})
        return
    with LOCK:
        token = "pw-test-token-%d" % (len(TOKENS) + 1)
        TOKENS[token] = email
    reply(handler, 200, {"access_token": token, "expires_in": 3600, "token_type": "Bearer"})


def reply(handler, status, body):
    data = json.dumps(body).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


def identity(header):
    if not header:
        return "anonymous"
    scheme, _, token = header.partition(" ")
    with LOCK:
        return TOKENS.get(token, "unknown-token") if scheme == "Bearer" else "unknown-token"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--keys", required=True)
    args = parser.parse_args()
    with open(args.keys) as f:
        keys = {
            email: serialization.load_pem_public_key(pem.encode())
            for email, pem in json.load(f).items()
        }

    original = emulator.Router.handle

    def handle(router, method):
        handler = router._request_handler
        path = handler.path.split("?")[0]
        if method == "POST" and path == "/token":
            issue_token(handler, keys)
            return
        if method == "GET" and path == "/_pw/log":
            with LOCK:
                reply(handler, 200, list(LOG))
            return
        with LOCK:
            LOG.append({"method": method, "path": path})
        who = identity(handler.headers.get("Authorization"))
        with LOCK:
            LOG[-1]["identity"] = who
        original(router, method)

    emulator.Router.handle = handle
    storage = emulator.Storage(use_memory_fs=True)
    httpd = emulator.server.HTTPServer(
        ("127.0.0.1", 0), lambda *a, **kw: emulator.RequestHandler(storage, *a, **kw)
    )
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    print("ready %d" % httpd.server_address[1], flush=True)
    sys.stdin.read()
    httpd.shutdown()


if __name__ == "__main__":
    main()
