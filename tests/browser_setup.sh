#!/bin/sh
# Installs Debian's Chromium for tests/test_report_browser.py when it is missing (the test skips without it).
# Run as root or with sudo; safe to run again. Usage: sh tests/browser_setup.sh
set -e
if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "browser_setup: no apt-get here; install Chromium yourself (the browser test will skip)" >&2
    exit 0
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo -n"; else
        echo "browser_setup: not root and no sudo; the browser test will skip" >&2
        exit 0
    fi
fi
$SUDO apt-get update -qq >/dev/null
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null \
    || echo "browser_setup: could not install chromium; the browser test will skip" >&2
exit 0
