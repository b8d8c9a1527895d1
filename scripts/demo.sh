#!/usr/bin/env bash
# Install phigate, make a small sample set with planted PHI, de-identify it with the
# embedded defaults and show the result. This is the README's first command.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
# shellcheck disable=SC1091
source .venv/bin/activate
python -m pip install --quiet --upgrade pip
python -m pip install --quiet -e .
export PHIGATE_HOME="${PHIGATE_HOME:-$PWD/phigate-data}"
phigate init
phigate demo "$@"
