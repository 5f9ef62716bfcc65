#!/usr/bin/env bash
# Regenerates the user guide's screenshots (docs/images/app-*.png): runs the desktop app's
# screenshot tour with the bundled model under a virtual X server (Xvfb), where the app grabs its
# own window with QWidget::grab(). Usage: tools/screenshots.sh [BUILD_DIR] [OUT_DIR]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${1:-$root/build}"
out="${2:-$root/docs/images}"
app="$build/bin/strand-app"
[[ -x "$app" ]] || { echo "no $app: build the desktop app first (./strand test or cmake --build)" >&2; exit 1; }
command -v xvfb-run >/dev/null || { echo "xvfb-run is missing (apt-get install xvfb)" >&2; exit 1; }
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" OPENBLAS_NUM_THREADS=1
# A throwaway settings/data location, so the tour never touches the user's Recent list or autosaves.
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
export XDG_CONFIG_HOME="$tmp/config" XDG_DATA_HOME="$tmp/data" XDG_RUNTIME_DIR="$tmp/run"
mkdir -p "$XDG_RUNTIME_DIR"; chmod 700 "$XDG_RUNTIME_DIR"
timeout 300 xvfb-run -a -s "-screen 0 1280x800x24" \
  "$app" --model "$root/resources/models/strand-world-v1.safetensors" --seed 7 --screenshots "$out"
ls -l "$out"/app-*.png
