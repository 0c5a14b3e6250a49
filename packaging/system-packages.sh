#!/usr/bin/env bash
# Debian packages that Qt needs (offscreen and on a desktop), Xvfb for screenshots, and documentation
# packages whose English prose the demo corpus mixes with the stdlib's code.
# Installs what is missing when run as root; otherwise says what to install and goes on.
set -euo pipefail
pkgs=(libegl1 libgl1 libxkbcommon0 libxkbcommon-x11-0 libfontconfig1 libdbus-1-3 libglib2.0-0
      xvfb xauth libxcb-icccm4 libxcb-keysyms1 libxcb-image0 libxcb-render-util0 libxcb-cursor0
      libxcb-shape0 libxcb-xinerama0 libxcb-randr0 fonts-dejavu-core
      python3-doc jargon-text fortunes-min)  # the last three: English prose for the demo corpus (~80% prose)
command -v dpkg-query >/dev/null || { echo "system-packages: not a Debian system; install Qt's runtime libraries yourself"; exit 0; }
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ]; then
  echo "system-packages: installing ${missing[*]}"
  # the prose packages are optional: without them (no package mirror) the demo corpus is the stdlib's code alone
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" \
    >/dev/null || echo "system-packages: could not install ${missing[*]}; Qt may need them, the demo's prose is optional"
else
  echo "system-packages: missing Debian packages: ${missing[*]}"
  echo "  run: sudo apt-get install -y ${missing[*]}   (the offscreen tests may work without them)"
fi
