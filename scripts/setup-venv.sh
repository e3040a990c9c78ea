#!/usr/bin/env bash
# Create the project's Python venv with the real Portage, used as the reference
# implementation by the differential tests, property tests and benchmarks.
# Idempotent: re-running it on a ready venv does nothing.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
venv="${VARTREE_VENV:-$here/.venv}"
want="3.0.83"
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "import portage, sys; sys.exit(portage.VERSION != '$want')" 2>/dev/null; then
    exit 0
fi
echo ">>> creating $venv with portage $want" >&2
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check "portage==$want"
"$venv/bin/python" -c "import portage; print('portage', portage.VERSION)" >&2
