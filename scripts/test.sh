#!/usr/bin/env bash
# Install what the tests need (Debian packages, PyPI packages) and run every check.
# This is the README's test command; .ci/run calls it. Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_packages=(postgresql-15 tesseract-ocr)
missing=()
for package in "${apt_packages[@]}"; do
  dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi

python3 -m venv .venv
# shellcheck disable=SC1091
source .venv/bin/activate
python -m pip install --quiet --upgrade pip
python -m pip install --quiet -e '.[test]'

echo "== ruff"
ruff check src tests benchmarks
echo "== mypy"
mypy
echo "== pytest"
pytest -n 2 --dist loadfile "$@"
