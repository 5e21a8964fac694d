"""moto's S3 (and IAM) server on a free loopback port, with credentials enforced.

Run by harness.py in the servers' virtualenv. moto checks request signatures
and IAM policies once its first INITIAL_NO_AUTH_ACTION_COUNT requests are
spent (the harness spends exactly those on creating users and their keys), so
a client with a wrong or missing key, or a key whose user has no policy for
a bucket, is refused as S3 would refuse it.

Prints `ready <port>` on stdout, then serves until stdin closes.
"""

import os
import sys


def main():
    if "INITIAL_NO_AUTH_ACTION_COUNT" not in os.environ:
        sys.exit("s3_server.py: INITIAL_NO_AUTH_ACTION_COUNT must be set (auth enforcement)")
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    _, port = server.get_host_and_port()
    print("ready %d" % port, flush=True)
    sys.stdin.read()
    server.stop()


if __name__ == "__main__":
    main()
