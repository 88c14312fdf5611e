#!/usr/bin/env bash
# regedu's two commands, each of which sets up everything it needs first:
#
#   bash run.sh course   # install into ./.venv and open the course in JupyterLab
#   bash run.sh test     # install into ./.venv (with test tools) and run lint + the whole test suite
#   bash run.sh html     # install into ./.venv, run the whole course in full mode, render it to course_html/
#
# Set-up is idempotent: a second run reuses ./.venv and reinstalls only when pyproject.toml changed.
# PYTHON=python3.12 picks the interpreter; REGEDU_TORCH="..." picks the torch build (see scripts/install_torch.sh).
set -euo pipefail
cd "$(dirname "$0")"
task="${1:-}"
shift || true
venv=".venv"
python="${PYTHON:-python3}"

setup() {
    local extras="$1"
    if [ ! -x "$venv/bin/python" ]; then
        "$python" -c 'import sys; assert sys.version_info >= (3, 10), "regedu needs Python >= 3.10"' \
            || { echo "[regedu] $python is older than 3.10: set PYTHON=python3.11 (or newer)"; exit 1; }
        echo "[regedu] creating $venv with $("$python" --version)"
        "$python" -m venv "$venv"
        "$venv/bin/python" -m pip install --quiet --upgrade pip
    fi
    bash scripts/install_torch.sh "$venv/bin/python"
    local stamp="$venv/.regedu-installed-$extras"
    local wanted
    wanted=$(cat pyproject.toml | cksum)
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$wanted" ]; then
        echo "[regedu] installing regedu${extras:+[$extras]} and its dependencies (first time: a few minutes)"
        "$venv/bin/python" -m pip install --quiet -e ".${extras:+[$extras]}"
        echo "$wanted" > "$stamp"
    fi
}

# The browser test (tests/test_browser.py) drives the system's Chromium with Playwright, never a browser
# download of its own: install Debian's chromium where we can (as root, with apt-get), else it is skipped.
have_chromium() { command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; }

install_chromium() {
    have_chromium && return 0
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "[regedu] installing Debian's chromium for the browser test (apt-get, once)"
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -qq --no-install-recommends chromium; } >/dev/null 2>&1 || true
    fi
    have_chromium || echo "[regedu] no chromium (apt-get install chromium, as root): browser test skipped"
}

case "$task" in
    course)
        setup ""
        echo "[regedu] opening the course: start with notebooks/00_start_here.ipynb"
        as_root=()
        [ "$(id -u)" = 0 ] && as_root=(--allow-root)  # containers and cloud notebooks often run as root
        exec "$venv/bin/jupyter" lab notebooks/ "${as_root[@]}" "$@"
        ;;
    test)
        setup "test"
        install_chromium
        echo "[regedu] lint (ruff)"
        "$venv/bin/ruff" check .
        echo "[regedu] tests (unit, oracle, notebooks) with REGEDU_FAST=1"
        REGEDU_FAST=1 MPLBACKEND=Agg exec "$venv/bin/python" -m pytest -n "${REGEDU_TEST_WORKERS:-2}" --dist loadfile --durations=25 "$@"
        ;;
    html)
        setup ""
        echo "[regedu] executing every notebook in full mode and rendering it to course_html/"
        exec "$venv/bin/python" scripts/render_course.py "$@"
        ;;
    *)
        echo "usage: bash run.sh course | test | html   (see README.md)"
        exit 2
        ;;
esac
