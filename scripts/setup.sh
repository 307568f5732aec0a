#!/usr/bin/env bash
# Sets up a development/host machine from this repository's own files: system packages (when run as
# root on Debian/Ubuntu), a virtual environment in .venv with the CPU build of torch, and pianoedge
# with its host and dev extras, at the versions in constraints.txt. Safe to run again: it only adds what is
# missing and moves a package that differs from constraints.txt to its pinned version.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(ffmpeg fluidsynth timgm6mb-soundfont shellcheck systemd)  # video, audio rendering, a GM SoundFont; deploy checks
TORCH_PIN="torch==2.13.0"  # the CPU build; a bare "torch" would pull a multi-GB CUDA build

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${missing[@]}"
    else
        echo "setup: missing system packages: ${missing[*]} (install them with apt-get as root;" \
             "pianoedge falls back to imageio-ffmpeg's ffmpeg)" >&2
    fi
fi

python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "$TORCH_PIN"
.venv/bin/python -m pip install -q -c constraints.txt -e ".[host,dev]"  # the versions the suite passed with
echo "setup: ready (.venv/bin/pianoedge)"
