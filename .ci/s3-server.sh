#!/usr/bin/env bash
# Starts a local S3-compatible server (moto) for the kinora-storage S3 test suite and creates
# its bucket.
#
#   eval "$(bash .ci/s3-server.sh)"     # run: prints `export ...` lines on stdout
#   source .ci/s3-server.sh             # source: exports straight into the calling shell
#
# Then `cargo test -p kinora-storage` runs the S3 suite too. Stop the server with
# `kill "$KINORA_TEST_S3_SERVER_PID"` (set only when this script started it).
#
# Only the export lines go to stdout, so that `eval` sees nothing else; every diagnostic goes
# to stderr.
#
# Settings (environment): KINORA_S3_SERVER_PORT (default 9000), KINORA_TEST_S3_BUCKET
# (default kinora-test), PYTHON (default python3).

_kinora_s3_server() (
  set -euo pipefail
  # fd 3 is the real stdout, reserved for the export lines.
  exec 3>&1 1>&2

  local python="${PYTHON:-python3}"
  local host=127.0.0.1
  local port="${KINORA_S3_SERVER_PORT:-9000}"
  local bucket="${KINORA_TEST_S3_BUCKET:-kinora-test}"
  local endpoint="http://${host}:${port}"
  local tmp="${TMPDIR:-/tmp}"
  local log="${tmp}/kinora-s3-server-${port}.log"
  local started_pid=""

  say() { echo "s3-server: $*" >&2; }
  die() {
    say "error: $*"
    exit 1
  }

  command -v "$python" >/dev/null || die "$python not found; install python3"

  # --- moto ------------------------------------------------------------------------------
  if ! "$python" -c 'import moto.server' 2>/dev/null; then
    say "installing moto[server] with pip"
    if ! "$python" -m pip --version >/dev/null 2>&1; then
      # Debian ships python3 without pip (and disables ensurepip).
      command -v apt-get >/dev/null || die "pip is missing and apt-get is not available"
      local sudo=""
      if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null || die "pip is missing; install python3-pip (needs root)"
        sudo="sudo -n"
      fi
      say "installing python3-pip with apt-get"
      $sudo apt-get update -qq
      DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends python3-pip
    fi
    # Debian 12 marks its system python as externally managed (PEP 668); pip then refuses
    # unless told to go ahead.
    if ! "$python" -m pip install --quiet 'moto[server]'; then
      say "retrying with --break-system-packages"
      "$python" -m pip install --quiet --break-system-packages 'moto[server]'
    fi
    "$python" -c 'import moto.server' || die "moto[server] is still not importable"
  fi

  # Exits 0 once something answers HTTP on the endpoint (any status counts).
  answers() {
    "$python" - "$endpoint" <<'PY'
import sys, urllib.request, urllib.error
try:
    urllib.request.urlopen(sys.argv[1] + "/", timeout=1)
except urllib.error.HTTPError:
    pass
except Exception:
    sys.exit(1)
PY
  }

  # --- server ----------------------------------------------------------------------------
  if answers; then
    say "something already answers on ${endpoint}; reusing it"
  else
    say "starting moto on ${endpoint}, log: ${log}"
    # The server must not hold this script's stdout (fd 1 or 3), or `$(...)` would wait for
    # it forever.
    nohup "$python" -m moto.server -H "$host" -p "$port" </dev/null >"$log" 2>&1 3>&- &
    started_pid=$!
    local deadline=$((SECONDS + 30))
    until answers; do
      if ! kill -0 "$started_pid" 2>/dev/null; then
        tail -n 20 "$log" >&2 || true
        die "moto exited during startup"
      fi
      if [ "$SECONDS" -ge "$deadline" ]; then
        tail -n 20 "$log" >&2 || true
        kill "$started_pid" 2>/dev/null || true
        die "moto did not answer on ${endpoint} within 30s"
      fi
      sleep 0.5
    done
    say "moto is up (pid ${started_pid})"
  fi

  # --- bucket ----------------------------------------------------------------------------
  "$python" - "$endpoint" "$bucket" <<'PY' || die "could not create bucket ${bucket}"
import sys
import boto3
from botocore.exceptions import ClientError

endpoint, bucket = sys.argv[1], sys.argv[2]
s3 = boto3.client(
    "s3",
    endpoint_url=endpoint,
    region_name="us-east-1",
    aws_access_key_id="test",
    aws_secret_access_key="test",
)
try:
    s3.create_bucket(Bucket=bucket)
except ClientError as e:
    if e.response.get("Error", {}).get("Code") not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
        raise
print(f"s3-server: bucket {bucket} ready", file=sys.stderr)
PY

  {
    printf 'export %s=%q\n' KINORA_TEST_S3_ENDPOINT "$endpoint"
    printf 'export %s=%q\n' KINORA_TEST_S3_BUCKET "$bucket"
    printf 'export %s=%q\n' KINORA_TEST_S3_ACCESS_KEY_ID test
    printf 'export %s=%q\n' KINORA_TEST_S3_SECRET_ACCESS_KEY test
    if [ -n "$started_pid" ]; then
      printf 'export %s=%q\n' KINORA_TEST_S3_SERVER_PID "$started_pid"
    fi
  } >&3
)

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  set -euo pipefail
  _kinora_s3_server
else
  # Sourced: apply the exports here without changing the caller's shell options.
  if _kinora_s3_exports="$(_kinora_s3_server)"; then
    eval "$_kinora_s3_exports"
    unset _kinora_s3_exports
    unset -f _kinora_s3_server
  else
    unset _kinora_s3_exports
    unset -f _kinora_s3_server
    return 1
  fi
fi
