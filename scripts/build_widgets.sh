#!/usr/bin/env bash
# Build labkit's widget front ends (widgets/src) into labkit/widgets/static/.
#
#   scripts/build_widgets.sh           install the locked npm packages, build, write the bundle
#   scripts/build_widgets.sh --check   build into a temporary folder and fail if the result
#                                      differs from the committed bundle (CI runs this)
#
# The bundle is committed so that `pip install labkit` needs no Node. The build is deterministic:
# package-lock.json pins esbuild and sortablejs, and widgets/build.mjs writes no timestamps or
# absolute paths, so the same sources give the same bytes.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
static="$root/labkit/widgets/static"
outputs=(ranker.js ranker.css)

mode="build"
case "${1:-}" in
  "") ;;
  --check) mode="check" ;;
  -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
  *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac

command -v npm >/dev/null || { echo "build_widgets: npm (Node >= 18) is required" >&2; exit 2; }

cd "$root/widgets"
# Exactly the locked versions; no install scripts are needed (esbuild's binary comes from its
# platform package).
npm ci --prefer-offline --ignore-scripts --no-audit --no-fund --loglevel=error
node --test --test-reporter=dot test/

if [[ "$mode" == "build" ]]; then
  node build.mjs "$static"
  echo "build_widgets: wrote ${outputs[*]} to ${static#"$root"/}"
  exit 0
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
node build.mjs "$tmp"
stale=0
for f in "${outputs[@]}"; do
  if ! cmp -s "$tmp/$f" "$static/$f"; then
    echo "build_widgets --check: labkit/widgets/static/$f differs from a fresh build of widgets/src" >&2
    stale=1
  fi
done
if [[ "$stale" -ne 0 ]]; then
  echo "run scripts/build_widgets.sh and commit labkit/widgets/static/" >&2
  exit 1
fi
echo "build_widgets --check: committed bundle matches the sources"
