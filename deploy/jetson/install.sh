#!/usr/bin/env bash
# Installs pianoedge as a service on an NVIDIA Jetson with JetPack 6.x (Ubuntu 22.04, aarch64) or 5.x
# (Ubuntu 20.04; see the Python note in docs/deploy.md): see --help and docs/deploy.md. Try it first
# with --dry-run, which changes nothing.
#   sudo deploy/jetson/install.sh [--dry-run] [--bundle FILE.tar.gz] [--python PATH] [--no-gadget] [--no-start]
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
# shellcheck source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

PE_BOARD=jetson
PE_BOARD_NAME="Jetson"
PE_BOARD_OS="JetPack 5.x/6.x, Ubuntu 20.04/22.04, aarch64"
PE_ASSUMED_MODEL="Jetson with JetPack 6 (L4T R36, Ubuntu 22.04, Python 3.10)"
PE_SCRIPT=deploy/jetson/install.sh

# The runtime's dependencies (pyproject.toml [project] dependencies) except opencv-python-headless:
# on a Jetson OpenCV comes from JetPack (built with GStreamer, which csi:// cameras need), and a pip
# OpenCV in the venv would hide it. Keep this list in step with pyproject.toml (tests/test_deploy.py checks).
JETSON_PIP_DEPS=("numpy>=1.24" "onnxruntime>=1.17" "mido>=1.3")
L4T_GADGET_DIR=/opt/nvidia/l4t-usb-device-mode

board_preflight() {
    local arch
    arch=$(uname -m)
    if [ "$PE_ASSUMED" = 0 ] && [ "$arch" != aarch64 ]; then
        pe_die "this is a $arch system, not a Jetson's aarch64"
    fi
    if [ "$PE_ASSUMED" = 0 ] && [ -r "$PE_TEGRA_RELEASE" ]; then
        local release
        release=$(head -n 1 "$PE_TEGRA_RELEASE" | sed -E 's/^# *R([0-9]+)[^,]*, *REVISION: *([0-9.]+).*/\1.\2/')
        case $release in
            36.*) pe_ok "L4T R$release: JetPack 6" ;;
            35.*) pe_ok "L4T R$release: JetPack 5 (Ubuntu 20.04, Python 3.8: see the Python check below)" ;;
            *) pe_warn "L4T '$release' from $PE_TEGRA_RELEASE: made for JetPack 5/6 (L4T R35/R36); going on" ;;
        esac
    fi
}

# JetPack's OpenCV: keep the one the system Python already imports (JetPack's nvidia-opencv, with
# GStreamer); else JetPack's libopencv-python when NVIDIA's apt repository offers it; else Ubuntu's
# python3-opencv (also built with GStreamer). Never pip's opencv-python-headless (no GStreamer).
opencv_package() {
    if "$PE_PYTHON" -c 'import cv2' 2>/dev/null; then
        return 0
    fi
    if apt-cache show libopencv-python >/dev/null 2>&1; then
        printf '%s' libopencv-python
    else
        printf '%s' python3-opencv
    fi
}

board_packages() {
    # TensorRT's Python bindings come with JetPack (python3-libnvinfer), never from pip
    PE_PACKAGES=(python3-venv python3-libnvinfer fluidsynth timgm6mb-soundfont ffmpeg v4l-utils)
    local cv
    cv=$(opencv_package)
    if [ -n "$cv" ]; then
        PE_PACKAGES+=("$cv")
    else
        pe_ok "OpenCV: $PE_PYTHON already imports cv2 (JetPack's)"
    fi
}

board_python_hint() {
    printf '%s' "JetPack 5 (Ubuntu 20.04) ships Python 3.8: move to JetPack 6 (Python 3.10), or install a" \
        " Python 3.10 (e.g. from the deadsnakes PPA) and pass --python /usr/bin/python3.10; the venv then" \
        " cannot see JetPack's TensorRT and OpenCV bindings (built for 3.8), so it runs ONNX Runtime on the CPU" \
        " and needs a USB camera (v4l2://) instead of csi://."
}

board_pip_install() {
    # --no-deps: pip would otherwise add opencv-python-headless, which hides JetPack's OpenCV
    pe_pip --no-deps "$1"
    pe_pip "${JETSON_PIP_DEPS[@]}"
}

board_install_config() {
    pe_install_file "$1" "$2" 0644   # the example config is written for a Jetson CSI camera (csi://0)
}

board_gadget_prepare() {
    if [ -d "$L4T_GADGET_DIR" ] || pe_unit_enabled nv-l4t-usb-device-mode.service; then
        pe_note "L4T's USB device mode (nv-l4t-usb-device-mode.service: USB network and serial console) uses" \
                "the USB device port. pianoedge-gadget.service adds \"pianoedge MIDI\" as a separate gadget only" \
                "when that port's UDC is free; otherwise it fails with instructions (journalctl -u pianoedge-gadget):" \
                "either sudo systemctl disable nv-l4t-usb-device-mode.service, or add the MIDI function to" \
                "$L4T_GADGET_DIR/nv-l4t-usb-device-mode-start.sh (docs/deploy.md, Jetson)."
    fi
}

board_notes() {
    if [ "$PE_GADGET" = 1 ]; then
        pe_say "USB MIDI: plug the Jetson's USB device port (USB-C / micro-USB next to the power jack) into the"
        pe_say "          computer; it shows up as \"pianoedge MIDI\" (see the L4T note above if it does not)."
    fi
    pe_say "camera:   gst-launch-1.0 nvarguscamerasrc num-buffers=30 ! fakesink  checks the CSI camera"
    pe_say "speed:    sudo nvpmodel -m 0 && sudo jetson_clocks  for the lowest latency (more power)"
    if [ "$PE_DRY_RUN" = 0 ] && ! "$PE_VENV/bin/python" -c 'import tensorrt' 2>/dev/null; then
        pe_warn "the venv cannot import tensorrt: check that python3-libnvinfer is installed for $PE_PYTHON"
    fi
}

# Run unless sourced (tests source the script to exercise single steps).
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    pe_main "$@"
fi
