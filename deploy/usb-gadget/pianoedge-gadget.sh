#!/usr/bin/env bash
# pianoedge-gadget.sh: makes the board a USB MIDI device ("pianoedge MIDI") for the computer its USB
# device port is plugged into, through the kernel's configfs gadget interface and the f_midi function
# (Documentation/usb/gadget-testing.rst, "MIDI function"). pianoedge-gadget.service runs it at boot.
#
#   pianoedge-gadget.sh up     [--configfs DIR] [--udc NAME] [--udc-class DIR]
#   pianoedge-gadget.sh down   [--configfs DIR]
#   pianoedge-gadget.sh status [--configfs DIR]
#
# `up` builds this tree under DIR/usb_gadget/pianoedge (DIR: /sys/kernel/config) and binds it:
#
#   idVendor 0x1d6b  idProduct 0x0104  bcdDevice 0x0100  bcdUSB 0x0200      (Linux Foundation composite gadget)
#   strings/0x409/{manufacturer "pianoedge", product "pianoedge MIDI", serialnumber: /etc/machine-id or 0001}
#   configs/c.1/{MaxPower 250, strings/0x409/configuration "MIDI"}
#   functions/midi.usb0/{id pianoedge, in_ports 1, out_ports 1, buflen 512, qlen 32, index -1}
#   configs/c.1/midi.usb0 -> functions/midi.usb0                                  (symlink)
#   UDC: the first entry of /sys/class/udc (or --udc NAME)
#
# On the real configfs the kernel creates the attribute files (and configs/, functions/, strings/) by
# itself when the folders are made, and the script only writes values into them. When --configfs points
# at an ordinary folder (a scratch directory, for tests and for reading what it would do) the script
# creates those files by writing the same values, skips modprobe and the UDC checks against the
# kernel, and `down` deletes the files it wrote before removing the folders. Values are written without
# a trailing newline. The ALSA card of the function is called "pianoedge" (the id), which is how
# `pianoedge run --midi-out usb` finds it.
#
# `up` is idempotent: run twice it leaves the gadget as it is. `down` unbinds and removes everything
# in reverse order; it is a no-op when the gadget is not there. `status` prints the state and exits 0
# when the gadget is bound to a UDC, 3 otherwise.
set -euo pipefail

NAME=pianoedge
DEFAULT_CONFIGFS=/sys/kernel/config
CONFIGFS=$DEFAULT_CONFIGFS
UDC_CLASS=/sys/class/udc
UDC=""
ACTION=""

ID_VENDOR=0x1d6b      # Linux Foundation
ID_PRODUCT=0x0104     # Multifunction Composite Gadget
BCD_DEVICE=0x0100     # our device release 1.0
BCD_USB=0x0200        # USB 2.0
STR_LANG=0x409        # US English
MANUFACTURER=pianoedge
PRODUCT="pianoedge MIDI"
CONFIG=c.1
CONFIGURATION=MIDI
MAX_POWER=250         # mA drawn from the host
FUNC=midi.usb0
MIDI_ID=pianoedge     # the ALSA card id on the board
IN_PORTS=1            # MIDI ports host -> board (kernel docs: "number of MIDI input ports")
OUT_PORTS=1           # MIDI ports board -> host: the notes
BUFLEN=512            # f_midi's default MIDI buffer length
QLEN=32               # f_midi's default USB request queue length
INDEX=-1              # ALSA card index: -1 = the first free one
L4T_DIR=/opt/nvidia/l4t-usb-device-mode
UDC_WAIT_TRIES=10     # on the real configfs: wait up to 5 s for a UDC to appear

say() { printf 'pianoedge-gadget: %s\n' "$*"; }
die() { printf 'pianoedge-gadget: error: %s\n' "$*" >&2; exit 1; }

usage() {
    cat <<EOF
usage: pianoedge-gadget.sh {up|down|status} [--configfs DIR] [--udc NAME] [--udc-class DIR]

Creates (up), removes (down) or reports (status) the USB MIDI gadget "pianoedge MIDI" through configfs.

  --configfs DIR   configfs mount point (default $DEFAULT_CONFIGFS). An ordinary folder is a scratch
                   run: the attribute files the kernel would create are written as plain files, and
                   modprobe and the kernel's UDC checks are skipped.
  --udc NAME       the USB device controller to bind to (default: the first entry of the UDC class folder)
  --udc-class DIR  where the UDCs are listed (default $UDC_CLASS)
  -h, --help       this help
EOF
}

while [ $# -gt 0 ]; do
    case $1 in
        up|down|status) [ -z "$ACTION" ] || die "one action only (got $ACTION and $1)"; ACTION=$1 ;;
        --configfs) [ $# -ge 2 ] || die "--configfs needs a folder"; CONFIGFS=$2; shift ;;
        --configfs=*) CONFIGFS=${1#*=} ;;
        --udc) [ $# -ge 2 ] || die "--udc needs a name"; UDC=$2; shift ;;
        --udc=*) UDC=${1#*=} ;;
        --udc-class) [ $# -ge 2 ] || die "--udc-class needs a folder"; UDC_CLASS=$2; shift ;;
        --udc-class=*) UDC_CLASS=${1#*=} ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
    shift
done
[ -n "$ACTION" ] || { usage >&2; die "say up, down or status"; }

CONFIGFS=${CONFIGFS%/}
GADGETS=$CONFIGFS/usb_gadget
G=$GADGETS/$NAME

is_configfs() { [ "$(stat -f -c %T "$1" 2>/dev/null || true)" = configfs ]; }

# put FILE VALUE: write VALUE into a configfs attribute (in a scratch folder: into a plain file).
put() {
    { printf '%s' "$2" > "$1"; } 2>/dev/null || die "cannot write '$2' to $1${3:+ ($3)}"
}

# The gadget's own attribute files, which the kernel makes and a scratch run writes itself.
GADGET_FILES=(idVendor idProduct bcdDevice bcdUSB UDC)
STRING_FILES=(manufacturer product serialnumber)
FUNC_FILES=(id in_ports out_ports buflen qlen index)

REAL=1
if ! is_configfs "$CONFIGFS"; then
    if [ "$CONFIGFS" = "$DEFAULT_CONFIGFS" ] && [ "$ACTION" = up ]; then
        # systemd mounts configfs at boot (sys-kernel-config.mount); loading libcomposite or mounting helps otherwise
        modprobe libcomposite 2>/dev/null || true
        is_configfs "$CONFIGFS" || mount -t configfs none "$CONFIGFS" 2>/dev/null || true
        is_configfs "$CONFIGFS" || die "configfs is not mounted at $CONFIGFS and cannot be mounted: the kernel needs CONFIG_CONFIGFS_FS and CONFIG_USB_CONFIGFS"
    elif [ "$CONFIGFS" = "$DEFAULT_CONFIGFS" ]; then
        REAL=1
    else
        REAL=0
    fi
fi

bound_udc() {  # the UDC a gadget folder is bound to, or nothing
    if [ -f "$1/UDC" ]; then tr -d '\n' < "$1/UDC" 2>/dev/null || true; fi
}

gadget_down() {
    if [ ! -d "$G" ]; then
        say "gadget $NAME is not there: nothing to do"
        return 0
    fi
    local bound
    bound=$(bound_udc "$G")
    if [ -n "$bound" ]; then
        put "$G/UDC" $'\n' "unbinding from $bound"
        say "unbound from $bound"
    fi
    local c=$G/configs/$CONFIG f=$G/functions/$FUNC s=$G/strings/$STR_LANG
    if [ -L "$c/$FUNC" ]; then rm "$c/$FUNC"; fi
    if [ "$REAL" = 0 ]; then rm -f "$c/MaxPower" "$c/strings/$STR_LANG/configuration"; fi
    if [ -d "$c/strings/$STR_LANG" ]; then rmdir "$c/strings/$STR_LANG"; fi
    if [ "$REAL" = 0 ] && [ -d "$c/strings" ]; then rmdir "$c/strings"; fi
    if [ -d "$c" ]; then rmdir "$c"; fi
    if [ "$REAL" = 0 ]; then (cd "$G/functions/$FUNC" 2>/dev/null && rm -f "${FUNC_FILES[@]}") || true; fi
    if [ -d "$f" ]; then rmdir "$f"; fi
    if [ "$REAL" = 0 ]; then (cd "$s" 2>/dev/null && rm -f "${STRING_FILES[@]}") || true; fi
    if [ -d "$s" ]; then rmdir "$s"; fi
    if [ "$REAL" = 0 ]; then
        (cd "$G" && rm -f "${GADGET_FILES[@]}")
        local d
        for d in configs functions strings; do
            if [ -d "$G/$d" ]; then rmdir "$G/$d"; fi
        done
    fi
    rmdir "$G"
    say "gadget $NAME removed"
}

gadget_status() {
    if [ ! -d "$G" ]; then
        say "down (no gadget $NAME in $GADGETS)"
        return 3
    fi
    local bound
    bound=$(bound_udc "$G")
    if [ -n "$bound" ]; then
        say "up: \"$PRODUCT\" bound to UDC $bound"
        return 0
    fi
    say "configured in $G but not bound to a UDC"
    return 3
}

list_udcs() {
    local e
    if [ -d "$UDC_CLASS" ]; then
        for e in "$UDC_CLASS"/*; do
            if [ -e "$e" ] || [ -L "$e" ]; then printf '%s\n' "${e##*/}"; fi
        done
    fi
}

pick_udc() {
    local udcs tries=0
    udcs=$(list_udcs)
    # at boot the controller's driver (dwc2) may still be probing: give it a few seconds
    while [ -z "$udcs" ] && [ "$REAL" = 1 ] && [ "$tries" -lt "$UDC_WAIT_TRIES" ]; do
        sleep 0.5
        tries=$((tries + 1))
        udcs=$(list_udcs)
    done
    if [ -n "$UDC" ]; then
        if [ "$REAL" = 1 ] && ! grep -qxF -- "$UDC" <<<"$udcs"; then
            die "no USB device controller named $UDC in $UDC_CLASS (there: ${udcs:-none})"
        fi
        return 0
    fi
    if [ -z "$udcs" ]; then
        die "this board cannot be a USB device: no UDC in $UDC_CLASS; on a Raspberry Pi 4/5 or Zero enable" \
            "dtoverlay=dwc2,dr_mode=peripheral in /boot/firmware/config.txt (/boot/config.txt before bookworm) and" \
            "reboot (deploy/raspberry-pi/install.sh does this); a Raspberry Pi 3 or older has no USB device port:" \
            "use a USB MIDI interface (--midi-out usb picks it) or rtp://HOST:PORT instead"
    fi
    UDC=$(head -n 1 <<<"$udcs")
}

udc_taken() {  # udc_taken OTHER_GADGET
    local other=$1
    if [ "$other" = l4t ] || [ -d "$L4T_DIR" ]; then
        die "UDC $UDC is taken by the gadget '$other' (on a Jetson: L4T's USB device mode," \
            "nv-l4t-usb-device-mode.service, which gives the USB network and serial console). A UDC serves one" \
            "gadget, so ours is added as a separate gadget only when the UDC is free. Either free it:" \
            "sudo systemctl disable --now nv-l4t-usb-device-mode.service && sudo systemctl restart pianoedge-gadget.service;" \
            "or keep L4T's gadget and add the MIDI function to it: in $L4T_DIR/nv-l4t-usb-device-mode-start.sh," \
            "before the line that writes the UDC, add: mkdir -p functions/$FUNC; echo $MIDI_ID > functions/$FUNC/id;" \
            "ln -s functions/$FUNC configs/$CONFIG/ ; then reboot and disable pianoedge-gadget.service."
    fi
    die "UDC $UDC is taken by the gadget '$other' ($GADGETS/$other); a UDC serves one gadget: take that one" \
        "down first (echo '' > $GADGETS/$other/UDC) or pick another UDC with --udc"
}

gadget_up() {
    if [ "$REAL" = 1 ]; then
        local out
        if ! out=$(modprobe -a libcomposite usb_f_midi 2>&1); then
            die "this kernel has no USB MIDI gadget function: 'modprobe -a libcomposite usb_f_midi' failed" \
                "(${out:-no message}). It needs CONFIG_USB_LIBCOMPOSITE and CONFIG_USB_CONFIGFS_F_MIDI (usb_f_midi.ko):" \
                "Raspberry Pi OS kernels have both; on a Jetson, rebuild the L4T kernel with CONFIG_USB_CONFIGFS_F_MIDI=m"
        fi
        [ -d "$GADGETS" ] || die "$GADGETS is missing although libcomposite is loaded: is $CONFIGFS really configfs?"
    else
        say "scratch mode: $CONFIGFS is not configfs; writing the attribute files the kernel would create"
        mkdir -p "$GADGETS"
    fi

    pick_udc

    local bound
    bound=$(bound_udc "$G")
    if [ -n "$bound" ]; then
        if [ "$bound" = "$UDC" ]; then
            say "already up: \"$PRODUCT\" bound to UDC $UDC"
            return 0
        fi
        die "gadget $NAME is bound to UDC $bound, not $UDC: run 'pianoedge-gadget.sh down' first"
    fi

    local other
    for other in "$GADGETS"/*/; do
        other=${other%/}
        other=${other##*/}
        if [ "$other" = "$NAME" ] || [ "$other" = "*" ]; then continue; fi
        if [ "$(bound_udc "$GADGETS/$other")" = "$UDC" ]; then udc_taken "$other"; fi
    done

    local serial=0001
    if [ -s /etc/machine-id ]; then serial=$(tr -d '\n' < /etc/machine-id); fi

    mkdir -p "$G"
    put "$G/idVendor" "$ID_VENDOR"
    put "$G/idProduct" "$ID_PRODUCT"
    put "$G/bcdDevice" "$BCD_DEVICE"
    put "$G/bcdUSB" "$BCD_USB"

    mkdir -p "$G/strings/$STR_LANG"
    put "$G/strings/$STR_LANG/manufacturer" "$MANUFACTURER"
    put "$G/strings/$STR_LANG/product" "$PRODUCT"
    put "$G/strings/$STR_LANG/serialnumber" "$serial"

    local c=$G/configs/$CONFIG f=$G/functions/$FUNC
    mkdir -p "$c/strings/$STR_LANG"
    put "$c/strings/$STR_LANG/configuration" "$CONFIGURATION"
    put "$c/MaxPower" "$MAX_POWER"

    if [ ! -d "$f" ]; then
        mkdir -p "$G/functions"
        mkdir "$f" 2>/dev/null || die "cannot create $f: this kernel has no USB MIDI gadget function (usb_f_midi," \
            "CONFIG_USB_CONFIGFS_F_MIDI)"
    fi
    if [ ! -L "$c/$FUNC" ]; then
        # the kernel refuses changes to a function's attributes once it is linked into a configuration
        put "$f/id" "$MIDI_ID"
        put "$f/in_ports" "$IN_PORTS"
        put "$f/out_ports" "$OUT_PORTS"
        put "$f/buflen" "$BUFLEN"
        put "$f/qlen" "$QLEN"
        put "$f/index" "$INDEX"
        ln -s "$f" "$c/$FUNC"
    fi

    put "$G/UDC" "$UDC" "busy? another gadget (e.g. g_ether from modules-load= in the kernel command line) may hold it"
    say "up: \"$PRODUCT\" bound to UDC $UDC; plug this port into a computer and pick \"$PRODUCT\" as MIDI input"
}

case $ACTION in
    up) gadget_up ;;
    down) gadget_down ;;
    status) gadget_status ;;
esac
