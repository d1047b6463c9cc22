#!/usr/bin/env bash
# A short demo of @cache on the in-process L1 store: installs what is
# missing, builds cachekit, and runs examples/demo.py.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh .
python3 examples/demo.py
