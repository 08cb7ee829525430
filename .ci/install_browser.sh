#!/usr/bin/env bash
# Install what the browser tests (pytest -m browser) need: Debian's chromium and
# its chromedriver from apt, and selenium into the project's virtual environment.
#
#   .ci/install_browser.sh [VENV]     (VENV defaults to .venv)
#
# Idempotent: apt runs only when a binary is missing, pip only when selenium is
# missing, so calling it on every CI run costs a second once installed. Browser
# builds are never downloaded from anywhere but the Debian archive (playwright's
# `playwright install` and selenium-manager downloads are not used: the driver
# path is given explicitly by the tests).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${1:-.venv}"

if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -q
    $SUDO apt-get install -y -q --no-install-recommends chromium chromium-driver
fi

if ! "$VENV/bin/python" -c "import selenium" >/dev/null 2>&1; then
    "$VENV/bin/python" -m pip install -q "selenium>=4.10"
fi

echo "browser test dependencies: $(chromium --version 2>/dev/null | head -n1); $(chromedriver --version 2>/dev/null | head -n1); selenium $("$VENV/bin/python" -c 'import selenium; print(selenium.__version__)')"
