"""Client compatibility: the env of a mutated pod moves real bytes with today's clients.

Run by run.sh (which installs everything first) in the servers' virtualenv:

    harness.py --binary target/debug/persistence-webhook --clients-python V --polyaxon-python V
               --azurite PATH [--only CASE] [--keep]

1. Starts moto's S3 server (credentials and IAM policies enforced), a GCS-API
   server (gcp-storage-emulator plus an OAuth token endpoint that checks the
   service-account key's signature), and Azurite over HTTPS (so an account
   key reaches it as it reaches `<account>.blob.core.windows.net`), all on
   free loopback ports.
2. Creates users and keys, buckets and containers holding `input.csv`, and
   the contents of the Secrets the config references, with working
   credentials for those servers (kept in memory and in a temporary directory).
3. For each case (a pod in pods/ against persistence.yaml): runs
   `persistence-webhook mutate`, then does what the kubelet would: resolves
   every `secretKeyRef` from those Secrets, writes secret volumes to a
   temporary directory and points the env values that lead into their mount
   paths there. Then runs job.py once per client in a subprocess whose
   environment is exactly that container's env plus PATH, HOME (a fresh
   directory; for the keyless case it holds the run's ambient credentials)
   and the trust store (SSL_CERT_FILE, REQUESTS_CA_BUNDLE: the test CA that
   signed Azurite's certificate, standing in for the image's CA bundle), and
   the per-client additions listed in CLIENT_EXTRAS (printed, and reported:
   each is something a client needs that the webhook does not set).
4. Checks on the servers that every object landed at exactly the expected
   key with the expected content (which proves the same process read the
   data), that nothing else landed under the run's outputs path, which GCS
   identity each client used, and prints a table of client x case.

Exits non-zero, naming what failed, on any missing tool or failed check.
"""

import argparse
import base64
import hashlib
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from urllib.parse import quote

import boto3
import requests
import yaml
from azure.storage.blob import BlobServiceClient
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

HERE = os.path.dirname(os.path.abspath(__file__))
REGION = "eu-west-1"
NAMESPACE = "default"
DATA_OBJECT = "input.csv"
# Azurite's published development account and key (the same in every Azurite).
AZ_ACCOUNT = "devstoreaccount1"
AZ_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
GCS_EMAIL = "pw-runner@pw-compat.iam.gserviceaccount.com"
# The keyless GCS run's identity, served by the GCS server's metadata endpoint.
GCS_WORKLOAD_IDENTITY = "pw-workload@pw-compat.iam.gserviceaccount.com"
# What a kubelet-run image has beside the pod's env (python images set this PATH).
IMAGE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CLIENT_TIMEOUT = 120
# What the harness adds to every client's env besides the pod's (see run_client).
IMAGE_ENV = ("PATH", "HOME", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE")
# The keyless GCS case's ambient identity (GKE's metadata server, see run_client).
AMBIENT_ENV = ("GCE_METADATA_HOST", "GCE_METADATA_IP")

# Buckets (S3, GCS) and containers (Azure), and the data each data store holds.
S3_BUCKETS = ["pw-data", "pw-other-data", "pw-outputs", "pw-keyless-data", "pw-keyless-outputs"]
GCS_BUCKETS = ["pw-gcs-data", "pw-gcs-outputs", "pw-gcs-keyless-data", "pw-gcs-keyless-outputs"]
AZ_CONTAINERS = ["data", "outputs", "keydata", "keyoutputs"]
DATA_STORES = {
    "data-s3": ("s3", "pw-data"),
    "data-s3-other": ("s3", "pw-other-data"),
    "data-s3-keyless": ("s3", "pw-keyless-data"),
    "data-gcs": ("gcs", "pw-gcs-data"),
    "data-gcs-keyless": ("gcs", "pw-gcs-keyless-data"),
    "data-azure-cs": ("azure", "data"),
    "data-azure-key": ("azure", "keydata"),
}
# IAM users: who may touch which bucket (moto enforces it).
S3_USERS = {
    "admin": ["*"],
    "main": ["pw-data", "pw-outputs"],
    "other": ["pw-other-data"],
    "ambient": ["pw-keyless-data", "pw-keyless-outputs"],
}

# Variables some clients need that are not in the pod's env: each is reported.
CLIENT_EXTRAS = {
    # gcsfs >= 2026.x looks up every bucket's layout through the gRPC storage
    # control API; a GCS-API server at STORAGE_EMULATOR_HOST has none, and each
    # operation then waits 60 s before falling back (the result is not cached).
    "gcsfs": {"GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false"},
    "pandas": {"GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false"},
    # polyaxon-client 0.6's get_data_paths()/get_outputs_path() raise "not
    # managed by Polyaxon" unless this (or POLYAXON_IN_CLUSTER) is set; Polyaxon's
    # own scheduler sets it, the webhook does not.
    "polystores": {"POLYAXON_IS_MANAGED": "true"},
}
EXTRA_WHEN = {"GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "STORAGE_EMULATOR_HOST"}
CLIENT_EXTRAS_ALL = {n: v for extras in CLIENT_EXTRAS.values() for n, v in extras.items()}


def data_body(store):
    """Each data store holds its own CSV, so a digest says which one was read.
    pandas writes it back byte for byte (read_csv then to_csv(index=False))."""
    return ("store,row\n%s,1\n%s,2\n" % (store, store)).encode()


def digest(body):
    return hashlib.sha256(body).hexdigest()


def result_csv(client, stores):
    lines = ["client,store,sha256"]
    lines += ["%s,%s,%s" % (client, s, digest(data_body(s))) for s in sorted(stores)]
    return ("\n".join(lines) + "\n").encode()


class Fail(Exception):
    pass


# --- the cases -------------------------------------------------------------


def run(client, read=(), write=True, denied=(), gcs_identity=None, **spec):
    return {
        "client": client,
        "read": list(read),
        "write": write,
        "denied": list(denied),
        "gcs_identity": gcs_identity,
        "spec": spec,
    }


CASES = [
    {
        "name": "s3-endpoint",
        "title": "S3: endpoint + region + key pair",
        "outputs": ("s3", "pw-outputs"),
        "env": {
            "AWS_ACCESS_KEY_ID": "@main.id",
            "AWS_SECRET_ACCESS_KEY": "@main.secret",
            "AWS_ENDPOINT_URL_S3": "@s3",
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
        },
        "runs": [
            run("boto3", ["data-s3"]),
            run("s3fs", ["data-s3"]),
            run("pandas", ["data-s3"]),
            run("polystores", ["data-s3"]),
        ],
    },
    {
        "name": "gcs-key",
        "title": "GCS: service-account key + endpoint",
        "outputs": ("gcs", "pw-gcs-outputs"),
        "env": {"GOOGLE_APPLICATION_CREDENTIALS": "@file", "STORAGE_EMULATOR_HOST": "@gcs"},
        "runs": [
            run("gcsfs", ["data-gcs"], gcs_identity={GCS_EMAIL}),
            # google-cloud-storage's Client() goes anonymous whenever
            # STORAGE_EMULATOR_HOST is set (its documented emulator rule).
            run("google-cloud-storage", ["data-gcs"], gcs_identity={"anonymous"}),
            run("google-cloud-storage", ["data-gcs"], gcs_identity={GCS_EMAIL},
                gcs_credentials="default", label="google-cloud-storage (explicit credentials)"),
            run("pandas", ["data-gcs"], gcs_identity={GCS_EMAIL}),
            run("polystores", ["data-gcs"], gcs_identity={GCS_EMAIL}),
        ],
    },
    {
        "name": "azure-connection-string",
        "title": "Azure: connection string",
        "outputs": ("azure", "outputs"),
        "env": {"AZURE_STORAGE_ACCOUNT_NAME": AZ_ACCOUNT, "AZURE_STORAGE_CONNECTION_STRING": "@az.cs"},
        "absent": ["AZURE_STORAGE_ACCOUNT_KEY"],
        "runs": [
            run("adlfs", ["data-azure-cs"]),
            run("azure-storage-blob", ["data-azure-cs"]),
            run("pandas", ["data-azure-cs"]),
            run("polystores", ["data-azure-cs"]),
        ],
    },
    {
        "name": "azure-account-key",
        "title": "Azure: account name + key",
        "outputs": ("azure", "keyoutputs"),
        "env": {"AZURE_STORAGE_ACCOUNT_NAME": AZ_ACCOUNT, "AZURE_STORAGE_ACCOUNT_KEY": AZ_KEY},
        "absent": ["AZURE_STORAGE_CONNECTION_STRING"],
        "runs": [
            run("adlfs", ["data-azure-key"], azure_host="@az.host"),
            run("azure-storage-blob", ["data-azure-key"], azure_host="@az.host"),
        ],
        # polystores 0.2 builds https://<account>.blob.core.windows.net from a
        # name and key and takes no host; the connection-string case covers it.
        "not_run": {"polystores": "needs <account>.blob.core.windows.net (covered by the connection-string case)"},
    },
    {
        "name": "s3-keyless",
        "title": "S3 keyless: ambient credentials",
        "outputs": ("s3", "pw-keyless-outputs"),
        "env": {"AWS_ENDPOINT_URL_S3": "@s3", "AWS_REGION": REGION, "AWS_DEFAULT_REGION": REGION},
        "absent": ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "POLYSTORES_RUN_STORES_ACCESS_KEYS"],
        "ambient": {"aws_user": "ambient"},
        "runs": [
            run("boto3", ["data-s3-keyless"]),
            run("s3fs", ["data-s3-keyless"]),
            run("pandas", ["data-s3-keyless"]),
            # What Polyaxon code does: StoreManager(path=...) finds no access key
            # and falls back to LocalStore, whose download and upload do nothing.
            run("polystores", ["data-s3-keyless"], write=False, probe_only=True, polystores="access-keys",
                store_types="LocalStore"),
            # The SDK way: a store built without keys uses boto3's own chain.
            run("polystores", ["data-s3-keyless"], polystores="sdk", label="polystores (SDK way)"),
        ],
    },
    {
        "name": "gcs-keyless",
        "title": "GCS keyless: workload identity",
        "outputs": ("gcs", "pw-gcs-keyless-outputs"),
        "env": {"STORAGE_EMULATOR_HOST": "@gcs"},
        "absent": ["GOOGLE_APPLICATION_CREDENTIALS", "POLYSTORES_RUN_STORES_ACCESS_KEYS"],
        "ambient": {"gce_metadata": True},
        "runs": [
            run("gcsfs", ["data-gcs-keyless"], gcs_identity={GCS_WORKLOAD_IDENTITY}),
            run("google-cloud-storage", ["data-gcs-keyless"], gcs_identity={"anonymous"}),
            run("google-cloud-storage", ["data-gcs-keyless"], gcs_identity={GCS_WORKLOAD_IDENTITY},
                gcs_credentials="default", label="google-cloud-storage (explicit credentials)"),
            run("pandas", ["data-gcs-keyless"], gcs_identity={GCS_WORKLOAD_IDENTITY}),
            run("polystores", ["data-gcs-keyless"], write=False, probe_only=True, polystores="access-keys",
                store_types="LocalStore"),
            run("polystores", ["data-gcs-keyless"], polystores="sdk", label="polystores (SDK way)",
                gcs_identity={GCS_WORKLOAD_IDENTITY}),
        ],
    },
    {
        "name": "s3-outputs-gcs-data",
        "title": "S3 outputs + GCS data, one pod",
        "outputs": ("s3", "pw-outputs"),
        "env": {
            "AWS_ACCESS_KEY_ID": "@main.id",
            "AWS_ENDPOINT_URL_S3": "@s3",
            "GOOGLE_APPLICATION_CREDENTIALS": "@file",
            "STORAGE_EMULATOR_HOST": "@gcs",
        },
        "runs": [
            run("boto3", []),
            run("s3fs", []),
            run("gcsfs", ["data-gcs"], write=False, gcs_identity={GCS_EMAIL}),
            run("google-cloud-storage", ["data-gcs"], write=False, gcs_identity={"anonymous"}),
            run("pandas", ["data-gcs"], gcs_identity={GCS_EMAIL}),
            run("polystores", ["data-gcs"], gcs_identity={GCS_EMAIL}),
        ],
    },
    {
        "name": "two-s3-stores",
        "title": "two S3 stores, two key pairs",
        "outputs": ("s3", "pw-outputs"),
        "env": {
            "AWS_ACCESS_KEY_ID": "@main.id",
            "AWS_SECRET_ACCESS_KEY": "@main.secret",
            "AWS_ENDPOINT_URL_S3": "@s3",
        },
        "runs": [
            # The SDKs see the default store's key (the outputs store's), which
            # the other store's bucket refuses.
            run("boto3", ["data-s3"], denied=["data-s3-other"]),
            run("s3fs", ["data-s3"], denied=["data-s3-other"]),
            # polystores takes each path's own key from POLYSTORES_RUN_STORES_ACCESS_KEYS.
            run("polystores", ["data-s3", "data-s3-other"]),
        ],
    },
]


# --- servers -----------------------------------------------------------------


class Servers:
    def __init__(self, logdir):
        self.procs = []
        self.logdir = logdir

    def start(self, name, argv, ready, env=None, timeout=60):
        """Starts argv in its own process group; waits for a stdout line matching
        `ready` (a regex whose group 1 is the port)."""
        log = open(os.path.join(self.logdir, name + ".log"), "w")
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            env=env,
            start_new_session=True,
            text=True,
        )
        self.procs.append((name, proc, log))
        lines = queue.Queue()

        def pump():
            for line in proc.stdout:
                lines.put(line)
                log.write(line)
                log.flush()
            lines.put(None)

        threading.Thread(target=pump, daemon=True).start()
        deadline = time.time() + timeout
        while True:
            try:
                line = lines.get(timeout=max(0.1, deadline - time.time()))
            except queue.Empty:
                line = None
                if time.time() < deadline:
                    continue
            if line is None:
                raise Fail("%s did not start within %ds (log: %s)" % (name, timeout, log.name))
            match = re.search(ready, line)
            if match:
                return int(match.group(1))

    def stop(self):
        for name, proc, log in reversed(self.procs):
            if proc.poll() is None:
                try:
                    proc.stdin.close()
                except OSError:
                    pass
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGTERM)
                    try:
                        proc.wait(timeout=5)
                    except subprocess.TimeoutExpired:
                        os.killpg(proc.pid, signal.SIGKILL)
                        proc.wait()
            log.close()


def make_ca_and_cert(workdir):
    """A throwaway CA and a certificate for 127.0.0.1 signed by it (Azurite's HTTPS)."""
    import datetime
    import ipaddress

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "client-compat test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = {n: os.path.join(workdir, n) for n in ("ca.crt", "azurite.crt", "azurite.key")}
    with open(paths["ca.crt"], "wb") as f:
        f.write(ca.public_bytes(serialization.Encoding.PEM))
    with open(paths["azurite.crt"], "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(paths["azurite.key"], "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption(),
            )
        )
    return paths


def service_account(token_uri):
    """A service-account key file as Google issues them, whose token_uri is the
    GCS server's token endpoint (a real key names Google's)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    info = {
        "type": "service_account",
        "project_id": "pw-compat",
        "private_key_id": hashlib.sha1(pem.encode()).hexdigest(),
        "private_key": pem,
        "client_email": GCS_EMAIL,
        "client_id": "100000000000000000001",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
        "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
        "universe_domain": "googleapis.com",
    }
    return info, public


# --- setting the servers up ----------------------------------------------------


class World:
    """The running servers, their credentials and the Secrets' contents."""

    def __init__(self, args, workdir):
        self.args = args
        self.workdir = workdir
        self.servers = Servers(workdir)
        self.keys = {}

    def start(self):
        py = sys.executable
        self.certs = make_ca_and_cert(self.workdir)
        iam_calls = 3 * len(S3_USERS)
        env = dict(os.environ, INITIAL_NO_AUTH_ACTION_COUNT=str(iam_calls))
        port = self.servers.start("moto", [py, os.path.join(HERE, "s3_server.py")], r"^ready (\d+)", env=env)
        self.s3 = "http://127.0.0.1:%d" % port

        # The GCS server needs the service account's public key before it
        # starts, and the key file names the server's token URL: the key is
        # made first, then its token_uri filled in once the port is known.
        sa, public = service_account("")
        keys_file = os.path.join(self.workdir, "gcs-public-keys.json")
        with open(keys_file, "w") as f:
            json.dump({GCS_EMAIL: public}, f)
        port = self.servers.start(
            "gcs",
            [py, os.path.join(HERE, "gcs_server.py"), "--keys", keys_file,
             "--workload-identity", GCS_WORKLOAD_IDENTITY],
            r"^ready (\d+)",
        )
        self.gcs = "http://127.0.0.1:%d" % port
        self.gce_metadata = "127.0.0.1:%d" % port
        sa["token_uri"] = self.gcs + "/token"
        self.service_account = sa

        azdir = os.path.join(self.workdir, "azurite")
        os.makedirs(azdir)
        port = self.servers.start(
            "azurite",
            [
                self.args.azurite, "--blobHost", "127.0.0.1", "--blobPort", "0",
                "--location", azdir, "--skipApiVersionCheck", "--disableTelemetry",
                "--cert", self.certs["azurite.crt"], "--key", self.certs["azurite.key"],
            ],
            r"listens on https://127\.0\.0\.1:(\d+)",
        )
        self.az_host = "127.0.0.1:%d/%s" % (port, AZ_ACCOUNT)
        self.az_cs = (
            "DefaultEndpointsProtocol=https;AccountName=%s;AccountKey=%s;BlobEndpoint=https://%s;"
            % (AZ_ACCOUNT, AZ_KEY, self.az_host)
        )

    def s3_client(self, user):
        key_id, secret = self.keys[user]
        return boto3.client(
            "s3", endpoint_url=self.s3, region_name=REGION,
            aws_access_key_id=key_id, aws_secret_access_key=secret,
        )

    def populate(self):
        iam = boto3.client(
            "iam", endpoint_url=self.s3, region_name="us-east-1",
            aws_access_key_id="setup", aws_secret_access_key="setup",
        )
        for user, buckets in S3_USERS.items():
            resources = []
            for b in buckets:
                resources += ["arn:aws:s3:::%s" % b, "arn:aws:s3:::%s/*" % b] if b != "*" else ["*"]
            iam.create_user(UserName=user)
            iam.put_user_policy(
                UserName=user, PolicyName="buckets",
                PolicyDocument=json.dumps({
                    "Version": "2012-10-17",
                    "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": resources}],
                }),
            )
            key = iam.create_access_key(UserName=user)["AccessKey"]
            self.keys[user] = (key["AccessKeyId"], key["SecretAccessKey"])
        # From here on moto checks every signature and policy: prove it.
        for bad in [("AKIAIOSFODNN7EXAMPLE", "wrong"), (self.keys["main"][0], "wrong")]:
            c = boto3.client("s3", endpoint_url=self.s3, region_name=REGION,
                             aws_access_key_id=bad[0], aws_secret_access_key=bad[1])
            try:
                c.list_buckets()
            except c.exceptions.ClientError:
                continue
            raise Fail("moto accepted a wrong key: credentials are not enforced")
        admin = self.s3_client("admin")
        for bucket in S3_BUCKETS:
            admin.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
        try:
            self.s3_client("other").list_objects_v2(Bucket="pw-data")
            raise Fail("moto let user 'other' list pw-data: bucket policies are not enforced")
        except admin.exceptions.ClientError:
            pass

        for bucket in GCS_BUCKETS:
            r = requests.post(self.gcs + "/storage/v1/b", params={"project": "pw-compat"}, json={"name": bucket})
            r.raise_for_status()

        self.blob_service = BlobServiceClient.from_connection_string(
            self.az_cs, connection_verify=self.certs["ca.crt"]
        )
        for container in AZ_CONTAINERS:
            self.blob_service.create_container(container)

        for store, (kind, bucket) in DATA_STORES.items():
            self.put(kind, bucket, DATA_OBJECT, data_body(store))

        self.secrets = {
            "s3-main": self.s3_secret("main", "s3-main.json"),
            "s3-other": self.s3_secret("other", "s3-other.json"),
            "gcs-runner": {"gcs-runner.json": json.dumps(self.service_account)},
            "azure-cs": {
                "azure-cs.json": json.dumps({"AZURE_CONNECTION_STRING": self.az_cs}),
                "connection-string": self.az_cs,
            },
            "azure-key": {
                "azure-key.json": json.dumps({"AZURE_ACCOUNT_NAME": AZ_ACCOUNT, "AZURE_ACCOUNT_KEY": AZ_KEY}),
                "account-key": AZ_KEY,
            },
        }

    def write_secrets(self):
        """The Secrets as manifests, for a person looking at a kept run (--keep)."""
        docs = [
            {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": data}
            for name, data in sorted(self.secrets.items())
        ]
        with open(os.path.join(self.workdir, "secrets.yaml"), "w") as f:
            yaml.safe_dump_all(docs, f)

    def s3_secret(self, user, polystores_key):
        key_id, secret = self.keys[user]
        return {
            # What polystores 0.2's S3Store reads (the endpoint lives in its JSON).
            polystores_key: json.dumps({
                "AWS_ACCESS_KEY_ID": key_id,
                "AWS_SECRET_ACCESS_KEY": secret,
                "AWS_ENDPOINT_URL": self.s3,
                "AWS_REGION": REGION,
            }),
            # What the SDK variables reference (accessKeyIdKey, secretAccessKeyKey).
            "access-key-id": key_id,
            "secret-access-key": secret,
        }

    def put(self, kind, bucket, key, body):
        if kind == "s3":
            self.s3_client("admin").put_object(Bucket=bucket, Key=key, Body=body)
        elif kind == "gcs":
            r = requests.post(
                self.gcs + "/upload/storage/v1/b/%s/o" % bucket,
                params={"uploadType": "media", "name": key},
                data=body,
            )
            r.raise_for_status()
        else:
            self.blob_service.get_blob_client(bucket, key).upload_blob(body)

    def listing(self, kind, bucket, prefix):
        """{key: body} of every object under prefix, read back from the server."""
        found = {}
        if kind == "s3":
            s3 = self.s3_client("admin")
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
                for obj in page.get("Contents", []):
                    found[obj["Key"]] = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
        elif kind == "gcs":
            r = requests.get(self.gcs + "/storage/v1/b/%s/o" % bucket, params={"prefix": prefix})
            r.raise_for_status()
            for item in r.json().get("items", []):
                body = requests.get(
                    self.gcs + "/storage/v1/b/%s/o/%s" % (bucket, quote(item["name"], safe="")),
                    params={"alt": "media"},
                )
                body.raise_for_status()
                found[item["name"]] = body.content
        else:
            container = self.blob_service.get_container_client(bucket)
            for blob in container.list_blobs(name_starts_with=prefix):
                found[blob.name] = container.get_blob_client(blob.name).download_blob().readall()
        return found

    def gcs_log(self):
        r = requests.get(self.gcs + "/_pw/log")
        r.raise_for_status()
        return r.json()

    def resolve(self, value):
        """The expected value of an env var named in a case ('@...' are facts of this run)."""
        facts = {
            "@s3": self.s3,
            "@gcs": self.gcs,
            "@main.id": self.keys["main"][0],
            "@main.secret": self.keys["main"][1],
            "@az.cs": self.az_cs,
            "@az.host": self.az_host,
        }
        return facts.get(value, value)


# --- what the kubelet does with the mutated pod -----------------------------------


def expand(value, env):
    """Kubernetes' $(VAR) expansion: a defined VAR is replaced, $$ is a literal $,
    anything else is left as it is."""
    out, i = [], 0
    while i < len(value):
        if value.startswith("$$", i):
            out.append("$")
            i += 2
        elif value.startswith("$(", i) and ")" in value[i:]:
            end = value.index(")", i)
            name = value[i + 2 : end]
            out.append(env[name] if name in env else value[i : end + 1])
            i = end + 1
        else:
            out.append(value[i])
            i += 1
    return "".join(out)


def kubelet_env(pod, container_name, secrets, root):
    """The container's environment as the kubelet would start it, with secret
    volumes written under root and the env values that lead into their mount
    paths pointed there. Anything this emulation does not cover is an error."""
    spec = pod["spec"]
    containers = spec.get("containers", []) + spec.get("initContainers", [])
    container = next(c for c in containers if c["name"] == container_name)
    if container.get("envFrom"):
        raise Fail("envFrom is not emulated")

    def secret_value(name, key):
        if name not in secrets or key not in secrets[name]:
            raise Fail("the kubelet would not start the container: Secret %s has no key %s" % (name, key))
        return secrets[name][key]

    host_dirs = {}
    for volume in spec.get("volumes", []):
        if "secret" not in volume:
            continue
        source = volume["secret"]
        directory = os.path.join(root, volume["name"])
        os.makedirs(directory)
        items = source.get("items") or [{"key": k, "path": k} for k in secrets.get(source["secretName"], {})]
        for item in items:
            path = os.path.join(directory, item["path"])
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as f:
                f.write(secret_value(source["secretName"], item["key"]))
            os.chmod(path, item.get("mode", source.get("defaultMode", 0o644)))
        host_dirs[volume["name"]] = directory

    mounts = {}
    for mount in container.get("volumeMounts", []):
        if mount["name"] not in host_dirs:
            raise Fail("volume %s of container %s is not a secret volume: not emulated" % (mount["name"], container_name))
        mounts[mount["mountPath"].rstrip("/")] = os.path.join(host_dirs[mount["name"]], mount.get("subPath", ""))

    env = {}
    for entry in container.get("env", []):
        if "valueFrom" in entry:
            ref = entry["valueFrom"].get("secretKeyRef")
            if ref is None:
                raise Fail("env %s: only secretKeyRef is emulated, got %s" % (entry["name"], entry["valueFrom"]))
            env[entry["name"]] = secret_value(ref["name"], ref["key"])
        else:
            env[entry["name"]] = expand(entry.get("value", ""), env)

    for name, value in env.items():
        for mount_path, host in mounts.items():
            if value == mount_path or value.startswith(mount_path + "/"):
                env[name] = host.rstrip("/") + value[len(mount_path) :]
    return env


# --- running the cases ---------------------------------------------------------------


def mutate(args, config, pod_file):
    proc = subprocess.run(
        [args.binary, "mutate", "--config", config, "--pod", pod_file],
        capture_output=True, text=True, env={"PATH": os.environ.get("PATH", "")},
    )
    if proc.returncode != 0:
        raise Fail("persistence-webhook mutate %s exited %d: %s" % (pod_file, proc.returncode, proc.stderr.strip()))
    return yaml.safe_load(proc.stdout)


def run_case(world, args, config, case, results, notes):
    pod = mutate(args, config, os.path.join(HERE, "pods", case["name"] + ".yaml"))
    root = tempfile.mkdtemp(prefix="kubelet-", dir=world.workdir)
    env = kubelet_env(pod, "main", world.secrets, root)

    # The pod's env says what the case needs, before any client runs.
    problems = []
    kind, bucket = case["outputs"]
    scheme = {"s3": "s3://", "gcs": "gs://", "azure": "wasbs://"}[kind]
    prefix = "%s/%s" % (NAMESPACE, case["name"])
    if kind == "azure":
        expected_outputs = "wasbs://%s@%s.blob.core.windows.net/%s" % (bucket, AZ_ACCOUNT, prefix)
    else:
        expected_outputs = "%s%s/%s" % (scheme, bucket, prefix)
    if env.get("POLYAXON_RUN_OUTPUTS_PATH") != expected_outputs:
        problems.append("POLYAXON_RUN_OUTPUTS_PATH is %r, expected %r" % (env.get("POLYAXON_RUN_OUTPUTS_PATH"), expected_outputs))
    for name, value in case["env"].items():
        want = world.resolve(value)
        got = env.get(name)
        if want == "@file":
            if not got or not os.path.isfile(got):
                problems.append("%s=%r is not a file the kubelet wrote" % (name, got))
        elif got != want:
            problems.append("%s is %r, expected %r" % (name, redact(got), redact(want)))
    for name in case.get("absent", []):
        if name in env:
            problems.append("%s is set (%r) but must not be" % (name, redact(env[name])))
    if problems:
        for run_ in case["runs"]:
            results[(case["name"], label(run_))] = "FAIL"
        notes.append((case["name"], "pod env", problems))
        return

    before = world.listing(kind, bucket, prefix + "/")
    if before:
        raise Fail("%s: outputs prefix %s not empty before the run: %s" % (case["name"], prefix, sorted(before)))
    written = {}
    for run_ in case["runs"]:
        name = label(run_)
        try:
            outcome = run_client(world, args, case, run_, env)
            if run_["write"]:
                written[prefix + "/" + writer(run_) + ".csv"] = result_csv(writer(run_), run_["read"])
            results[(case["name"], name)] = outcome
        except Fail as err:
            results[(case["name"], name)] = "FAIL"
            notes.append((case["name"], name, [str(err)]))

    # On the server: exactly the objects the clients wrote, at exactly their keys.
    after = world.listing(kind, bucket, prefix + "/")
    wrong = []
    for key, body in written.items():
        if key not in after:
            wrong.append("missing %s%s/%s" % (scheme, bucket, key))
        elif after[key] != body:
            wrong.append("%s has %r, expected %r" % (key, after[key][:200], body[:200]))
    for key in sorted(set(after) - set(written)):
        wrong.append("unexpected object %s%s/%s" % (scheme, bucket, key))
    if wrong:
        notes.append((case["name"], "server", wrong))
        for run_ in case["runs"]:
            if run_["write"] and any(writer(run_) + ".csv" in w for w in wrong):
                results[(case["name"], label(run_))] = "FAIL"

    if args.ablate:
        # Which of the pod's variables each client needs: run it again without
        # each one (writing under another name); a run that then fails any
        # check needed it.
        for run_ in case["runs"]:
            if results.get((case["name"], label(run_)), "FAIL").startswith("FAIL"):
                continue
            needed = []
            for var in sorted(env):
                without = {k: v for k, v in env.items() if k != var}
                try:
                    # A client left without its endpoint retries for minutes:
                    # 30 s without an answer counts as failing.
                    run_client(world, args, case, run_, without, timeout=30,
                               variant="without-" + var.lower().replace("_", "-").replace(".", "-"))
                except Fail:
                    needed.append(var)
            ABLATION[(case["name"], label(run_))] = (needed, sorted(set(env) - set(needed)))


def label(run_):
    return run_["spec"].get("label", run_["client"])


def writer(run_):
    """The name a run writes under (<writer>.csv): the client, or its variant's label."""
    return re.sub(r"[^a-z0-9]+", "-", label(run_).lower()).strip("-")


def redact(value):
    if value is None:
        return None
    return value if len(value) < 16 else value[:6] + "..." + value[-4:]


def run_client(world, args, case, run_, pod_env, variant=None, timeout=CLIENT_TIMEOUT):
    client = run_["client"]
    home = tempfile.mkdtemp(prefix="home-", dir=world.workdir)
    env = {
        "PATH": IMAGE_PATH,
        "HOME": home,
        "SSL_CERT_FILE": world.certs["ca.crt"],
        "REQUESTS_CA_BUNDLE": world.certs["ca.crt"],
    }
    ambient = case.get("ambient", {})
    if ambient.get("aws_user"):
        # The run's own identity: a credentials file in HOME, which boto3,
        # s3fs and polystores' boto3 find by themselves (as they find what
        # EKS Pod Identity or IRSA provide).
        key_id, secret = world.keys[ambient["aws_user"]]
        os.makedirs(os.path.join(home, ".aws"))
        with open(os.path.join(home, ".aws", "credentials"), "w") as f:
            f.write("[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n" % (key_id, secret))
    if ambient.get("gce_metadata"):
        # GKE Workload Identity: google-auth asks the metadata server for the
        # pod's token. On GKE it is at its well-known address; here these two
        # variables point google-auth at the GCS server's metadata endpoint.
        env["GCE_METADATA_HOST"] = world.gce_metadata
        env["GCE_METADATA_IP"] = world.gce_metadata
    env.update(pod_env)
    for name, value in CLIENT_EXTRAS.get(client, {}).items():
        if name not in EXTRA_WHEN or EXTRA_WHEN[name] in pod_env:
            env[name] = value
    spec = {k: world.resolve(v) for k, v in run_["spec"].items() if k not in ("label", "store_types")}
    name = writer(run_) + ("-" + variant if variant else "")
    spec.update({"read": run_["read"], "write": run_["write"], "denied": run_["denied"], "name": name})
    python = args.polyaxon_python if client == "polystores" else args.clients_python
    log_start = len(world.gcs_log())
    started = time.time()
    try:
        proc = subprocess.run(
            [python, os.path.join(HERE, "job.py"), client, json.dumps(spec)],
            env=env, capture_output=True, text=True, timeout=timeout, cwd=home,
        )
    except subprocess.TimeoutExpired:
        raise Fail("%s did not finish within %ds" % (client, timeout))
    took = time.time() - started
    if proc.returncode != 0:
        raise Fail("%s exited %d:\n%s" % (client, proc.returncode, tail(proc.stderr)))
    try:
        report = json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise Fail("%s printed no report: %r" % (client, proc.stdout[-500:]))

    problems = []
    for store in [] if run_["spec"].get("probe_only") else run_["read"]:
        if report["read"].get(store) != digest(data_body(store)):
            problems.append("read %s: digest %s, expected that of %s" % (store, report["read"].get(store), store))
    for store in run_["denied"]:
        if not report["denied"].get(store):
            problems.append("read %s with the default store's key: should be refused, was not" % store)
    want_types = run_["spec"].get("store_types")
    if want_types:
        got = set(report["store_types"].values())
        if got != {want_types}:
            problems.append("polystores picked %s, expected %s for every path" % (report["store_types"], want_types))
    if run_["gcs_identity"] is not None:
        used = {entry["identity"] for entry in world.gcs_log()[log_start:]}
        if used != run_["gcs_identity"]:
            problems.append("GCS requests made as %s, expected %s" % (sorted(used), sorted(run_["gcs_identity"])))
    if problems:
        raise Fail("; ".join(problems))
    extras = sorted(set(env) - set(pod_env) - set(IMAGE_ENV) - set(AMBIENT_ENV))
    cell = "ok"
    if want_types:
        cell = want_types
    elif report["denied"]:
        cell = "ok, 2nd refused"
    if extras:
        cell += "*"
        EXTRAS_USED.setdefault(label(run_), set()).update(extras)
    return "%s %.1fs" % (cell, took)


EXTRAS_USED = {}
ABLATION = {}


def tail(text, lines=25):
    return "\n".join(text.strip().splitlines()[-lines:])


def print_table(results, notes):
    cases = [c["name"] for c in CASES]
    clients = []
    for c in CASES:
        for r in c["runs"]:
            if label(r) not in clients:
                clients.append(label(r))
    width = max(len(c) for c in clients) + 2
    cols = [max(len(c), 15) for c in cases]
    print()
    print("client".ljust(width) + "  ".join(c.ljust(w) for c, w in zip(cases, cols)))
    for client in clients:
        cells = [results.get((case, client), "-").ljust(w) for case, w in zip(cases, cols)]
        print(client.ljust(width) + "  ".join(cells))
    print()
    print("ok: read input.csv of each data store and wrote <client>.csv under the outputs path, checked on the server")
    print("ok, 2nd refused: and the default store's key was refused by the other store's bucket")
    print("LocalStore: polystores' StoreManager(path=...) fell back to LocalStore (moves nothing)")
    print("keyless: s3-keyless's identity is ~/.aws/credentials in HOME; gcs-keyless's is a metadata")
    print("         server found through GCE_METADATA_HOST and GCE_METADATA_IP (GKE's is at a fixed address)")
    for client, names in sorted(EXTRAS_USED.items()):
        print("*  %s needed beyond the pod's env: %s" % (client, ", ".join("%s=%s" % (n, CLIENT_EXTRAS_ALL[n]) for n in sorted(names))))
    for case in CASES:
        for client, why in case.get("not_run", {}).items():
            print("-  %s / %s not run: %s" % (case["name"], client, why))
    if ABLATION:
        print()
        print("ablation: the pod variables each run failed without (needed) and did not")
        for (case, client), (needed, unneeded) in sorted(ABLATION.items(), key=lambda kv: (kv[0][1], kv[0][0])):
            print("  %s / %s" % (client, case))
            print("      needed:     %s" % (", ".join(needed) or "-"))
            print("      not needed: %s" % (", ".join(unneeded) or "-"))
    if notes:
        print()
        for case, what, problems in notes:
            print("FAILED %s / %s:" % (case, what))
            for p in problems:
                print("    " + p.replace("\n", "\n    "))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--binary", required=True)
    parser.add_argument("--clients-python", required=True)
    parser.add_argument("--polyaxon-python", required=True)
    parser.add_argument("--azurite", required=True)
    parser.add_argument("--config", default=os.path.join(HERE, "persistence.yaml"),
                        help="the config template ({s3_endpoint}, {gcs_endpoint} filled in)")
    parser.add_argument("--only", action="append", help="run only this case (repeatable)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--ablate", action="store_true",
                        help="also run each client without each of the pod's variables, to tell which it needs (slow)")
    args = parser.parse_args()
    for tool in (args.binary, args.clients_python, args.polyaxon_python, args.azurite):
        if not (os.path.isfile(tool) and os.access(tool, os.X_OK)):
            sys.exit("client compatibility: %s is missing or not executable" % tool)

    workdir = tempfile.mkdtemp(prefix="client-compat-")
    world = World(args, workdir)
    results, notes = {}, []
    started = time.time()
    try:
        world.start()
        world.populate()
        world.write_secrets()
        with open(args.config) as f:
            template = f.read()
        config = os.path.join(workdir, "persistence.yaml")
        with open(config, "w") as f:
            f.write(template.replace("{s3_endpoint}", world.s3).replace("{gcs_endpoint}", world.gcs))
        for case in CASES:
            if args.only and case["name"] not in args.only:
                continue
            print("== %s: %s" % (case["name"], case["title"]), flush=True)
            run_case(world, args, config, case, results, notes)
    except Fail as err:
        notes.append(("setup", "harness", [str(err)]))
    finally:
        world.servers.stop()
        if args.keep:
            print("kept %s" % workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print_table(results, notes)
    failed = sum(1 for v in results.values() if v.startswith("FAIL"))
    failed += sum(1 for _, what, _ in notes if what in ("server", "harness"))
    passed = sum(1 for v in results.values() if not v.startswith("FAIL"))
    print("client compatibility: %.0fs" % (time.time() - started))
    print("%d passed, %d failed" % (passed, failed))
    sys.exit(1 if failed or notes or not results else 0)


if __name__ == "__main__":
    main()
