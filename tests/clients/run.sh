#!/usr/bin/env bash
# The client-compatibility suite (SPEC §7): installs what it needs, builds the
# webhook, then runs harness.py. Called by .ci/run; by hand:
#
#   bash tests/clients/run.sh [--only CASE] [--keep] [--ablate]
#
# (--ablate also reruns each client without each variable it was given and
# lists those it failed without: the "read by" column of
# docs/src/pod-authors/using-the-stores.md.)
#
# Installs, idempotently, into a cache outside the repository
# ($PW_CLIENT_COMPAT_CACHE, default ~/.cache/persistence-webhook/client-compat):
#   servers/   Python 3.11 venv: moto's S3 server, gcp-storage-emulator, the harness's deps
#   clients/   Python 3.11 venv: boto3, s3fs, gcsfs, google-cloud-storage, adlfs, pandas
#   polyaxon/  Python 3.8 venv:  polystores 0.2.5 + polyaxon-client 0.6.1
#   azurite/   npm: Azurite
# A venv is rebuilt when its requirements file or interpreter changes, and
# left alone otherwise, so a second run installs nothing.
set -euo pipefail
cd "$(dirname "$0")/../.."
here=tests/clients
cache="${PW_CLIENT_COMPAT_CACHE:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/persistence-webhook/client-compat}"
azurite_version=3.35.0
mkdir -p "$cache"

die() { echo "client compatibility: $*" >&2; exit 1; }

find_python() { # find_python 3.11 -> an interpreter of that version, or nothing
  local want=$1 candidate
  for candidate in "python$want" "$(command -v pyenv >/dev/null 2>&1 && pyenv root)/versions/$want"*/bin/"python$want"; do
    if command -v "$candidate" >/dev/null 2>&1 &&
       [ "$("$candidate" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)" = "$want" ]; then
      command -v "$candidate"
      return
    fi
  done
}

py311=$(find_python 3.11)
[ -n "$py311" ] || die "no Python 3.11 (python3.11 on PATH) for the servers and clients"
py38=$(find_python 3.8)
[ -n "$py38" ] || die "no Python 3.8 (python3.8 on PATH, or pyenv's 3.8.x) for polystores 0.2 / polyaxon-client 0.6"
command -v npm >/dev/null 2>&1 || die "no npm (Node.js) for Azurite"

install_start=$(date +%s)
venv() { # venv NAME PYTHON REQUIREMENTS
  local dir="$cache/$1" python=$2 req=$3 stamp
  stamp="$(sha256sum "$req" | cut -d' ' -f1) $("$python" -c 'import platform; print(platform.python_version())')"
  if [ -f "$dir/.stamp" ] && [ "$(cat "$dir/.stamp")" = "$stamp" ] && [ -x "$dir/bin/python" ]; then
    return
  fi
  echo "installing $1 ($req)"
  rm -rf "$dir"
  "$python" -m venv "$dir"
  "$dir/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req"
  echo "$stamp" >"$dir/.stamp"
}
venv servers "$py311" "$here/requirements-servers.txt"
venv clients "$py311" "$here/requirements-clients.txt"
venv polyaxon "$py38" "$here/requirements-polyaxon.txt"

# The clients' "image" resolves loopback names only (loopback_only.py): a
# client missing an endpoint fails at once instead of reaching for the cloud.
for name in clients polyaxon; do
  site=$("$cache/$name/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  cp "$here/loopback_only.py" "$site/pw_loopback_only.py"
  echo "import pw_loopback_only" >"$site/pw_loopback_only.pth"
done

azurite="$cache/azurite/node_modules/.bin/azurite-blob"
if [ ! -x "$azurite" ] || [ "$(cat "$cache/azurite/.stamp" 2>/dev/null)" != "$azurite_version" ]; then
  echo "installing azurite@$azurite_version"
  rm -rf "$cache/azurite"
  mkdir -p "$cache/azurite"
  npm install --prefix "$cache/azurite" --no-audit --no-fund --loglevel=error "azurite@$azurite_version"
  echo "$azurite_version" >"$cache/azurite/.stamp"
fi
[ -x "$azurite" ] || die "azurite-blob missing after npm install ($azurite)"

cargo build --locked --quiet
echo "client compatibility: install and build $(( $(date +%s) - install_start ))s (cache: $cache)"

exec "$cache/servers/bin/python" "$here/harness.py" \
  --binary target/debug/persistence-webhook \
  --clients-python "$cache/clients/bin/python" \
  --polyaxon-python "$cache/polyaxon/bin/python" \
  --azurite "$azurite" "$@"
