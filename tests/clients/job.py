"""A training job's storage code, one client at a time, as a user would write it.

harness.py runs this in a subprocess whose environment is the mutated pod's
container environment (Secret references resolved, secret volumes on disk)
and nothing else but PATH, HOME and the trust store (see harness.py). Every
client is constructed with NO arguments that carry credentials, endpoints or
regions: those come from the environment the webhook wrote, as in a real pod.

    job.py CLIENT SPEC_JSON

SPEC_JSON (test inputs only, never credentials):
  read:        data store names whose `input.csv` this client reads
  write:       whether it writes `<name>.csv` under POLYAXON_RUN_OUTPUTS_PATH
  name:        the writer's name in that file (default: CLIENT; variants differ)
  denied:      data store names this client must NOT be able to read (the SDKs
               see only each provider's default store)
  azure_host:  for Azure with an account key only: the blob host, which in a real
               cluster is `<account>.blob.core.windows.net` (DNS stands in for it);
               `account_host` of adlfs, the account URL of azure-storage-blob
  polystores:  "access-keys" (StoreManager(path=...), what Polyaxon code does) or
               "sdk" (the store built with no keys: the SDK's own credential chain)
  gcs_credentials: google-cloud-storage only: "default" passes google.auth.default()'s
               credentials to Client() explicitly
  probe_only:  polystores only: report which store class each path gets, move nothing

Prints one JSON line: {"read": {store: sha256}, "wrote": url or null,
"denied": {store: error}, "store_types": {path: type}}. The object written is
CSV `client,store,sha256` with one row per store read, so the harness can check
on the server that this very process read the data and wrote the result.
Compatible with Python 3.8 (polystores 0.2 and polyaxon-client 0.6 run there).
"""

import hashlib
import json
import os
import sys
import tempfile

DATA_OBJECT = "input.csv"


def join(base, name):
    return base.rstrip("/") + "/" + name


def split_bucket(url, scheme):
    rest = url[len(scheme) :]
    bucket, _, key = rest.partition("/")
    return bucket, key


def split_wasbs(url):
    # wasbs://<container>@<account>.blob.core.windows.net/<path>
    rest = url[len("wasbs://") :]
    where, _, path = rest.partition("/")
    container, _, host = where.partition("@")
    return container, host.split(".")[0], path


def abfs_path(url):
    """adlfs and pandas address Azure as abfs://<container>/<path>; the account
    comes from AZURE_STORAGE_ACCOUNT_NAME."""
    container, _, path = split_wasbs(url)
    return "abfs://" + container + "/" + path


def result_csv(client, digests):
    lines = ["client,store,sha256"]
    lines += ["%s,%s,%s" % (client, store, digests[store]) for store in sorted(digests)]
    return ("\n".join(lines) + "\n").encode()


def denied_error(err):
    text = "%s: %s" % (type(err).__name__, err)
    for word in ("AccessDenied", "Forbidden", "403", "PermissionError"):
        if word in text:
            return word
    raise err


# --- S3 -------------------------------------------------------------------


def run_boto3(spec, data, outputs):
    import boto3

    s3 = boto3.client("s3")

    def get(url):
        bucket, key = split_bucket(url, "s3://")
        return s3.get_object(Bucket=bucket, Key=key)["Body"].read()

    def put(url, body):
        bucket, key = split_bucket(url, "s3://")
        s3.put_object(Bucket=bucket, Key=key, Body=body)

    return get, put


def run_s3fs(spec, data, outputs):
    import s3fs

    fs = s3fs.S3FileSystem()
    return fs.cat, fs.pipe


# --- GCS ------------------------------------------------------------------


def run_gcsfs(spec, data, outputs):
    import gcsfs

    fs = gcsfs.GCSFileSystem()
    return fs.cat, fs.pipe


def run_google_cloud_storage(spec, data, outputs):
    from google.cloud import storage

    if spec.get("gcs_credentials") == "default":
        # Client() is anonymous whenever STORAGE_EMULATOR_HOST is set; a server
        # there that checks credentials needs them passed explicitly.
        import google.auth

        credentials, project = google.auth.default()
        client = storage.Client(credentials=credentials, project=project)
    else:
        client = storage.Client()

    def get(url):
        bucket, key = split_bucket(url, "gs://")
        return client.bucket(bucket).blob(key).download_as_bytes()

    def put(url, body):
        bucket, key = split_bucket(url, "gs://")
        client.bucket(bucket).blob(key).upload_from_string(body)

    return get, put


# --- Azure ----------------------------------------------------------------


def run_adlfs(spec, data, outputs):
    import adlfs

    kwargs = {"account_host": spec["azure_host"]} if spec.get("azure_host") else {}
    fs = adlfs.AzureBlobFileSystem(**kwargs)
    return (lambda url: fs.cat(abfs_path(url))), (lambda url, body: fs.pipe(abfs_path(url), body))


def run_azure_storage_blob(spec, data, outputs):
    from azure.storage.blob import BlobServiceClient

    if os.environ.get("AZURE_STORAGE_CONNECTION_STRING"):
        service = BlobServiceClient.from_connection_string(
            os.environ["AZURE_STORAGE_CONNECTION_STRING"]
        )
    else:
        account = os.environ["AZURE_STORAGE_ACCOUNT_NAME"]
        host = spec.get("azure_host") or account + ".blob.core.windows.net"
        service = BlobServiceClient(
            account_url="https://" + host,
            credential={"account_name": account, "account_key": os.environ["AZURE_STORAGE_ACCOUNT_KEY"]},
        )

    def get(url):
        container, _, path = split_wasbs(url)
        return service.get_blob_client(container, path).download_blob().readall()

    def put(url, body):
        container, _, path = split_wasbs(url)
        service.get_blob_client(container, path).upload_blob(body, overwrite=True)

    return get, put


# --- pandas (fsspec underneath: s3fs, gcsfs, adlfs) ------------------------


def run_pandas(spec, data, outputs):
    import pandas as pd

    def fsspec_url(url):
        return abfs_path(url) if url.startswith("wasbs://") else url

    def get(url):
        return pd.read_csv(fsspec_url(url)).to_csv(index=False).encode()

    def put(url, body):
        import io

        pd.read_csv(io.BytesIO(body), dtype=str).to_csv(fsspec_url(url), index=False)

    return get, put


# --- polystores 0.2 + polyaxon-client 0.6 ----------------------------------


def run_polystores(spec, data, outputs, report):
    from polystores.stores.base_store import BaseStore
    from polystores.stores.manager import StoreManager

    workdir = tempfile.mkdtemp()
    kinds = {"s3://": "s3", "gs://": "gcs", "wasbs://": "azure"}

    def manager(path):
        if spec.get("polystores") == "sdk":
            kind = next(k for prefix, k in kinds.items() if path.startswith(prefix))
            return StoreManager(store=BaseStore.get_store(store_type=kind), path=path)
        return StoreManager(path=path)

    def store_type(store):
        return type(store).__name__

    def get(base, name):
        sm = manager(base)
        report["store_types"][base] = store_type(sm.store)
        local = os.path.join(workdir, "in-" + hashlib.sha256(base.encode()).hexdigest())
        sm.download_file(name, local)
        with open(local, "rb") as f:
            return f.read()

    def put(base, name, body):
        sm = manager(base)
        report["store_types"][base] = store_type(sm.store)
        local = os.path.join(workdir, name)
        with open(local, "wb") as f:
            f.write(body)
        sm.upload_file(local)

    def probe(base):
        report["store_types"][base] = store_type(manager(base).store)

    return get, put, probe


def data_and_outputs_polyaxon():
    from polyaxon_client.tracking import get_data_paths, get_outputs_path

    return get_data_paths() or {}, get_outputs_path()


CLIENTS = {
    "boto3": run_boto3,
    "s3fs": run_s3fs,
    "gcsfs": run_gcsfs,
    "google-cloud-storage": run_google_cloud_storage,
    "adlfs": run_adlfs,
    "azure-storage-blob": run_azure_storage_blob,
    "pandas": run_pandas,
}


def main():
    client, spec = sys.argv[1], json.loads(sys.argv[2])
    report = {"read": {}, "wrote": None, "denied": {}, "store_types": {}}
    if client == "polystores":
        data, outputs = data_and_outputs_polyaxon()
        get, put, probe = run_polystores(spec, data, outputs, report)
        if spec.get("probe_only"):
            # Only which store polystores picks for each path (keyless stores:
            # LocalStore, whose download and upload do nothing).
            for path in [data[s] for s in spec.get("read", [])] + [outputs]:
                probe(path)
            print(json.dumps(report))
            return
    else:
        data = json.loads(os.environ["POLYAXON_RUN_DATA_PATHS"])
        outputs = os.environ.get("POLYAXON_RUN_OUTPUTS_PATH")
        get_url, put_url = CLIENTS[client](spec, data, outputs)

        def get(base, name):
            return get_url(join(base, name))

        def put(base, name, body):
            put_url(join(base, name), body)

    for store in spec.get("read", []):
        body = get(data[store], DATA_OBJECT)
        report["read"][store] = hashlib.sha256(body).hexdigest()
    for store in spec.get("denied", []):
        try:
            get(data[store], DATA_OBJECT)
        except Exception as err:  # the SDK's own error type; checked by name
            report["denied"][store] = denied_error(err)
        else:
            report["denied"][store] = None
    if spec.get("write"):
        writer = spec.get("name", client)
        name = writer + ".csv"
        put(outputs, name, result_csv(writer, report["read"]))
        report["wrote"] = join(outputs, name)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
