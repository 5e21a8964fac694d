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
- `/computeMetadata/v1/...` and `GET /` (with `Metadata-Flavor: Google`): a
  GKE metadata server's answers for the pod's workload identity
  (`--workload-identity`, an email): the ping, the default service account,
  its token, the project. google-auth finds it through GCE_METADATA_HOST and
  GCE_METADATA_IP, which the harness sets as the keyless run's ambient
  environment (on GKE the metadata server is at its well-known address).
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


def metadata(handler, path, email):
    """A GKE metadata server's answers for the workload identity `email`."""
    if handler.headers.get("Metadata-Flavor") != "Google":
        reply(handler, 403, {"error": "Metadata-Flavor: Google missing"})
        return
    # As GKE's metadata server: the account by the alias `default` or by
    # its email (google-auth asks by email once it knows it).
    prefix = "/computeMetadata/v1/instance/service-accounts/"
    account = prefix + "default"
    if path.startswith(prefix + email + "/"):
        account = prefix + email
    if path == "/":
        reply(handler, 200, "ok")
    elif path == account + "/":
        reply(handler, 200, {"email": email, "aliases": ["default"],
                             "scopes": ["https://www.googleapis.com/auth/cloud-platform"]})
    elif path == account + "/email":
        reply(handler, 200, email, text=True)
    elif path == account + "/token":
        with LOCK:
            token = "pw-test-token-%d" % (len(TOKENS) + 1)
            TOKENS[token] = email
        reply(handler, 200, {"access_token": token, "expires_in": 3600, "token_type": "Bearer"})
    elif path == "/computeMetadata/v1/project/project-id":
        reply(handler, 200, "pw-compat", text=True)
    elif path == "/computeMetadata/v1/universe/universe-domain":
        reply(handler, 200, "googleapis.com", text=True)
    else:
        reply(handler, 404, {"error": "not served: " + path})


def reply(handler, status, body, text=False):
    data = body.encode() if text else json.dumps(body).encode()
    handler.send_response(status)
    handler.send_header("Metadata-Flavor", "Google")
    handler.send_header("Content-Type", "text/plain" if text else "application/json")
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
    parser.add_argument("--workload-identity", required=True)
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
        if method == "GET" and (path == "/" or path.startswith("/computeMetadata/")):
            metadata(handler, path, args.workload_identity)
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
