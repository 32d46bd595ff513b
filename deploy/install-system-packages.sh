#!/usr/bin/env bash
# Debian packages Assay needs beyond Python: EGL/Mesa for headless rendering, assimp for FBX.
# Idempotent: installs only what is missing; needs root (or sudo) the first time.
set -euo pipefail
packages=(libegl1 libgl1-mesa-dri libegl-mesa0 libusb-1.0-0 assimp-utils blender python3-numpy tesseract-ocr)
missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
if ! command -v apt-get >/dev/null; then
    echo "Assay needs these system packages (install them with your package manager): ${missing[*]}" >&2
    exit 1
fi
sudo_cmd=()
[ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
echo "Installing system packages: ${missing[*]}"
"${sudo_cmd[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
