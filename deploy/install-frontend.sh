#!/usr/bin/env bash
# Installs the admin's front-end packages (package.json, pinned by package-lock.json) from the npm registry
# and copies the files the admin serves into catalog/static/catalog/vendor/ (git-ignored; no CDN at run time).
# Idempotent: does nothing when the installed copy already matches the lock file.
set -euo pipefail
cd "$(dirname "$0")/.."
vendor=catalog/static/catalog/vendor/model-viewer
stamp="$vendor/.package-lock.sha256"
lock_hash=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ -f "$vendor/model-viewer.min.js" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$lock_hash" ]; then
    echo "Front-end packages are up to date ($vendor)."
    exit 0
fi
if ! command -v npm >/dev/null; then
    echo "npm not found: the admin's 3D preview stays off until Node.js/npm is installed and 'make frontend' is run." >&2
    exit 0
fi
# model-viewer.min.js bundles three.js, so its peer dependency is not installed; no install scripts are run.
npm ci --omit=peer --ignore-scripts --no-audit --no-fund --loglevel=error
mkdir -p "$vendor"
cp node_modules/@google/model-viewer/dist/model-viewer.min.js "$vendor/"
cp node_modules/@google/model-viewer/LICENSE "$vendor/LICENSE"
version=$(node -p "require('./node_modules/@google/model-viewer/package.json').version")
echo "$lock_hash" > "$stamp"
echo "Installed @google/model-viewer $version into $vendor."
