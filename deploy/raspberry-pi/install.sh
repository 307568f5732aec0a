#!/usr/bin/env bash
# Installs pianoedge as a service on a Raspberry Pi with Raspberry Pi OS 64-bit (bookworm): see
# --help and docs/deploy.md. Try it first with --dry-run, which changes nothing.
#   sudo deploy/raspberry-pi/install.sh [--dry-run] [--bundle FILE.tar.gz] [--no-gadget] [--no-start]
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
# shellcheck source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

PE_BOARD=raspberry-pi
PE_BOARD_NAME="Raspberry Pi"
PE_BOARD_OS="Raspberry Pi OS 64-bit, bookworm"
PE_ASSUMED_MODEL="Raspberry Pi 4 or 5 with Raspberry Pi OS 64-bit bookworm (boot files in /boot/firmware)"
PE_SCRIPT=deploy/raspberry-pi/install.sh

OVERLAY="dtoverlay=dwc2,dr_mode=peripheral"  # USB device mode on the USB-C (Pi 4/5) or OTG (Zero) port
MODULES_CONF=/etc/modules-load.d/pianoedge-gadget.conf
BOOT_FIRMWARE=/boot/firmware  # bookworm's boot partition (config.txt, cmdline.txt)
BOOT_LEGACY=/boot             # where they were before bookworm

board_preflight() {
    local arch
    arch=$(uname -m)
    if [ "$PE_ASSUMED" = 0 ] && [ "$arch" != aarch64 ]; then
        local msg="this is a $arch system: pianoedge needs the 64-bit Raspberry Pi OS (aarch64; ONNX Runtime has no 32-bit ARM wheels)"
        if [ "$PE_DRY_RUN" = 1 ]; then pe_warn "$msg"; else pe_die "$msg"; fi
    fi
    if [ -r /etc/os-release ] && [ "$PE_ASSUMED" = 0 ]; then
        local codename
        codename=$(. /etc/os-release && printf '%s' "${VERSION_CODENAME:-}")
        if [ "$codename" != bookworm ]; then
            pe_warn "made for Raspberry Pi OS bookworm; this is '${codename:-unknown}': going on, but check the result"
        fi
    fi
}

board_packages() {
    # picamera2 (libcamera) only comes as a system package; OpenCV comes from pip (opencv-python-headless)
    PE_PACKAGES=(python3-venv python3-picamera2 fluidsynth timgm6mb-soundfont ffmpeg v4l-utils)
}

board_python_hint() {
    printf '%s' "Raspberry Pi OS bookworm ships Python 3.11: use it (--python /usr/bin/python3)."
}

board_pip_install() {
    # the rpi extra (picamera2) is met by the system python3-picamera2, visible through --system-site-packages
    pe_pip "$1[rpi]"
}

board_install_config() {
    local src=$1 dest=$2
    pe_install_file "$src" "$dest" 0644
    pe_run sed -i 's|^source = "csi://0"|source = "picam://0"|' "$dest"  # the Raspberry Pi camera
}

# Boards with a USB port that can be a device: Zero, Zero W, Zero 2 W (OTG micro-USB), 4, 400, 5, 500
# and the compute modules 4 and 5 (USB-C / OTG). A Pi 3 or older only has host ports.
pi_can_be_device() {
    if [ "$PE_ASSUMED" = 1 ]; then return 0; fi
    case $PE_MODEL in
        *"Pi Zero"*|*"Pi 4"*|*"Pi 5"*|*"Compute Module 4"*|*"Compute Module 5"*) return 0 ;;  # "Pi 4" covers the 400
    esac
    return 1
}

boot_file() {  # boot_file NAME: config.txt or cmdline.txt where this release keeps it
    if [ -f "$BOOT_FIRMWARE/$1" ]; then
        printf '%s' "$BOOT_FIRMWARE/$1"
    elif [ -f "$BOOT_LEGACY/$1" ]; then
        printf '%s' "$BOOT_LEGACY/$1"
    else
        printf '%s' "$BOOT_FIRMWARE/$1"
    fi
}

board_gadget_prepare() {
    if ! pi_can_be_device; then
        pe_warn "this ${PE_MODEL:-board} has no USB port that can be a device (a Raspberry Pi 3 or older):" \
                "no USB MIDI gadget. Send the notes to a USB MIDI interface (midi_out = [\"usb\"] picks it)" \
                "or over the network (midi_out = [\"rtp://HOST:5004\"]) instead."
        PE_GADGET=0
        return 0
    fi
    local config
    config=$(boot_file config.txt)
    # dtoverlay=dwc2 (dr_mode otg by default, or peripheral) puts the port in device mode; dr_mode=host does not
    if [ -f "$config" ] && grep -Eq '^[[:space:]]*dtoverlay=dwc2([,:]|[[:space:]]*$)' "$config"; then
        local line
        line=$(grep -E '^[[:space:]]*dtoverlay=dwc2([,:]|[[:space:]]*$)' "$config" | tail -n 1)
        if [[ $line == *dr_mode=host* ]]; then
            pe_warn "$config has '$line': that keeps the port a host; change it to $OVERLAY and reboot"
        else
            pe_ok "$config has '$line'"
        fi
    else
        if [ -f "$config" ] || [ "$PE_DRY_RUN" = 1 ]; then
            pe_append "# pianoedge: USB device mode for the MIDI gadget (deploy/raspberry-pi/install.sh)" "$config"
            pe_append "[all]" "$config"
            pe_append "$OVERLAY" "$config"
            PE_REBOOT=1
        else
            pe_die "no $config: is this Raspberry Pi OS? (the boot partition must be mounted at /boot/firmware)"
        fi
    fi
    # The dwc2 and libcomposite modules at boot, through systemd-modules-load (the same as modules-load=dwc2
    # on the kernel command line, without editing the one-line cmdline.txt, where a mistake stops the boot).
    local modules=$'# pianoedge: USB device controller and gadget framework for pianoedge-gadget.service\ndwc2\nlibcomposite'
    if [ -f "$MODULES_CONF" ] && [ "$(cat "$MODULES_CONF")" = "$modules" ]; then
        pe_ok "$MODULES_CONF"
    else
        if [ -e "$MODULES_CONF" ]; then pe_run rm -f "$MODULES_CONF"; fi
        while IFS= read -r line; do pe_append "$line" "$MODULES_CONF"; done <<<"$modules"
    fi
    local cmdline
    cmdline=$(boot_file cmdline.txt)
    if [ -f "$cmdline" ] && grep -Eq 'modules-load=[^ ]*g_(ether|serial|midi|multi|cdc|hid|mass_storage)' "$cmdline"; then
        pe_warn "$cmdline loads a legacy gadget (modules-load=...g_*): it takes the USB port before ours;" \
                "remove that g_* module from modules-load= (keep dwc2) and reboot"
    fi
}

board_notes() {
    if [ "$PE_GADGET" = 1 ]; then
        pe_say "USB MIDI: plug the board's USB-C (Pi 4/5) or USB data port (Zero) into the computer; it shows up"
        pe_say "          as \"pianoedge MIDI\". A Pi 4/5 powered from that port needs a port that gives enough"
        pe_say "          current (or power it through the GPIO header); see docs/deploy.md."
    fi
    pe_say "camera:   rpicam-hello --list-cameras (libcamera) lists the Raspberry Pi camera"
}

# Run unless sourced (tests source the script to exercise single steps).
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    pe_main "$@"
fi
