#!/usr/bin/env bash
# The stack without Docker: installs Prometheus, Alertmanager and the Pushgateway
# from Debian where missing, then runs them with the repository's config files and
# the demo workload on 127.0.0.1 (`dpagent stack --help` for the options). Ctrl-C
# stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install-deps.sh test >&2
exec python3 -m dpagent.stack "$@"
