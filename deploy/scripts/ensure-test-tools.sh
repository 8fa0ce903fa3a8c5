#!/usr/bin/env bash
# Installs what the deploy tests drive for real, from Debian's packages, when missing:
#   chromium + chromium-driver (the headless browser test) and nginx-light (the auth-proxy test).
# Idempotent and quiet when everything is there. Needs root (or sudo) and apt-get.
set -euo pipefail
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
if [ ${#need[@]} -eq 0 ]; then
  echo "test tools: chromium, chromedriver and nginx are installed"
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "test tools: missing ${need[*]} and no apt-get here; install them with your package manager" >&2
  exit 1
fi
sudo=""
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null 2>&1; then sudo="sudo -n"; else
    echo "test tools: missing ${need[*]}; run as root: apt-get install -y ${need[*]}" >&2
    exit 1
  fi
fi
echo "test tools: installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
echo "test tools: installed ${need[*]}"
