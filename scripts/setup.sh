#!/usr/bin/env bash
# Set up labkit on a fresh machine, in the current Python environment (activate a venv first if
# you want one). Usage:  bash scripts/setup.sh          # the library, apps and notebooks
#                        bash scripts/setup.sh --test   # + test tools, Debian's chromium and
#                                                         #   PostgreSQL server (for the round log)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

# torch first, pinned: the CPU wheel of 2.13.0 lies in pip's find-links. Any later range that
# 2.13 satisfies then installs nothing more, so no dependency can pull a multi-GB CUDA torch.
"$PY" -m pip install --quiet torch==2.13.0

if [[ "${1:-}" == "--test" ]]; then
    "$PY" -m pip install --quiet -e ".[dev]"
    # Browser tests drive Debian's chromium through Playwright (never `playwright install`).
    # The round log's PostgreSQL tests start a throwaway server from Debian's binaries, which
    # live in /usr/lib/postgresql/<version>/bin rather than on PATH (tests/_postgres.py looks in
    # both); as root they run it as the package's `postgres` user. They never touch the cluster
    # the package itself may create.
    APT=()
    command -v chromium >/dev/null 2>&1 || APT+=(chromium)
    if ! { command -v initdb && command -v pg_ctl; } >/dev/null 2>&1 \
        && ! compgen -G "/usr/lib/postgresql/*/bin/pg_ctl" >/dev/null; then
        APT+=(postgresql)
    fi
    if (( ${#APT[@]} )); then
        SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
        $SUDO apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${APT[@]}" >/dev/null
    fi
else
    "$PY" -m pip install --quiet -e ".[control]"
fi
"$PY" -c "import torch, labkit; print('labkit', labkit.__version__, 'with torch', torch.__version__)"
