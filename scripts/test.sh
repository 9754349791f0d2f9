#!/usr/bin/env bash
# Every test, on a fresh machine: installs what the tests need (see
# install-deps.sh), then lint, types and the whole pytest suite against the real
# Prometheus, Alertmanager and Pushgateway. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install-deps.sh test
ruff check .
ruff format --check .
mypy
python3 -m pytest -q "$@"
