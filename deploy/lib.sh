# shellcheck shell=bash
# deploy/lib.sh: what the board installers share (deploy/jetson/install.sh, deploy/raspberry-pi/install.sh).
#
# A board script sources this file, sets PE_BOARD (jetson | raspberry-pi), PE_BOARD_NAME, PE_BOARD_OS,
# PE_ASSUMED_MODEL and PE_SCRIPT, defines the hooks below and calls `pe_main "$@"`:
#
#   board_preflight         checks and facts about this board (architecture, OS release); may die
#   board_packages          fills PE_PACKAGES with the apt packages to have
#   board_python_hint       prints what to do when the system Python is older than 3.10
#   board_pip_install SRC   installs the runtime from SRC (a folder or a wheel) into the venv with pe_pip
#   board_gadget_prepare    board side of USB device mode; may set PE_GADGET=0 (no device port) or PE_REBOOT=1
#   board_install_config SRC DEST   writes the example config for this board
#   board_notes             last words
#
# Every change goes through pe_run / pe_install_file & co.: with --dry-run they print one
# "would run: COMMAND" line each and change nothing; otherwise they print "+ COMMAND" and run it.
# Everything checks before it changes, so running an installer twice changes nothing the second time
# (except that pip reinstalls the runtime and a running service is restarted to pick it up).

set -euo pipefail

PE_PREFIX=/opt/pianoedge
PE_VENV=$PE_PREFIX/venv
PE_BIN=$PE_PREFIX/bin
PE_ETC=/etc/pianoedge
PE_VAR=/var/lib/pianoedge
PE_USER=pianoedge
PE_GROUPS=(video audio)
PE_UNIT_DIR=/etc/systemd/system
PE_LINK=/usr/local/bin/pianoedge
# What tells the boards apart (overridable for tests of the board check).
PE_MODEL_FILE=${PIANOEDGE_MODEL_FILE:-/proc/device-tree/model}
PE_TEGRA_RELEASE=${PIANOEDGE_TEGRA_RELEASE:-/etc/nv_tegra_release}

PE_DEPLOY_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PE_REPO=$(dirname "$PE_DEPLOY_DIR")

# Set by the board script.
PE_BOARD=${PE_BOARD:-}
PE_BOARD_NAME=${PE_BOARD_NAME:-}
PE_BOARD_OS=${PE_BOARD_OS:-}
PE_ASSUMED_MODEL=${PE_ASSUMED_MODEL:-}
PE_SCRIPT=${PE_SCRIPT:-install.sh}

# Options and state.
PE_DRY_RUN=0
PE_BUNDLE=""
PE_PYTHON=/usr/bin/python3
PE_GADGET=1
PE_START=1
PE_ASSUMED=0          # 1: --dry-run on another machine, showing this board's steps
PE_MODEL=""           # the board's model string
PE_DETECTED=unknown   # jetson | raspberry-pi | unknown
PE_PACKAGES=()
PE_WORK=""            # temporary folder (bundle contents), removed on exit
PE_BUNDLE_DIR=""      # the verified bundle's files
PE_INSTALLED=0        # set by pe_install_file: 1 when it (would have) changed the file
PE_UNITS_CHANGED=0
PE_GADGET_CHANGED=0
PE_HAVE_LOCK=0
PE_REBOOT=0

pe_say() { printf '%s\n' "$*"; }
pe_ok() { printf 'ok: %s\n' "$*"; }
pe_note() { printf 'note: %s\n' "$*"; }
pe_warn() { printf 'warning: %s\n' "$*" >&2; }
pe_step() { printf '\n== %s\n' "$*"; }
pe_die() { printf 'pianoedge-install: error: %s\n' "$*" >&2; exit 1; }

# pe_quote ARG...: the arguments as one line a shell would split back into the same arguments.
pe_quote() {
    local out="" a q="'"
    for a in "$@"; do
        if [[ -n $a && $a =~ ^[A-Za-z0-9_@%+=:,./-]+$ ]]; then
            out+=" $a"
        else
            out+=" '${a//$q/$q\\$q$q}'"
        fi
    done
    printf '%s\n' "${out# }"
}

# pe_run CMD ARG...: run a command that changes the system (or, with --dry-run, say it would).
pe_run() {
    if [ "$PE_DRY_RUN" = 1 ]; then
        printf 'would run: %s\n' "$(pe_quote "$@")"
        return 0
    fi
    printf '+ %s\n' "$(pe_quote "$@")"
    "$@"
}

# pe_run_soft CMD ARG...: like pe_run, but a failure is a warning, not the end of the installation.
pe_run_soft() {
    if pe_run "$@"; then return 0; fi
    pe_warn "failed: $(pe_quote "$@")"
    return 0
}

# pe_append LINE FILE: add a line at the end of a file.
pe_append() {
    local line=$1 file=$2
    if [ "$PE_DRY_RUN" = 1 ]; then
        printf 'would run: %s >> %s\n' "$(pe_quote printf '%s\n' "$line")" "$(pe_quote "$file")"
        return 0
    fi
    printf '+ %s >> %s\n' "$(pe_quote printf '%s\n' "$line")" "$(pe_quote "$file")"
    if [ -s "$file" ] && [ -n "$(tail -c 1 "$file")" ]; then
        printf '\n' >> "$file"  # the file did not end with a newline: do not glue our line onto its last one
    fi
    printf '%s\n' "$line" >> "$file"
}

pe_usage() {
    cat <<EOF
usage: $PE_SCRIPT [--dry-run] [--bundle FILE.tar.gz] [--python PATH] [--no-gadget] [--no-start]

Installs the pianoedge runtime as a service on a $PE_BOARD_NAME ($PE_BOARD_OS):
system packages, the system user $PE_USER (groups ${PE_GROUPS[*]}), a virtualenv at $PE_VENV
(--system-site-packages), the runtime from this checkout ($PE_REPO) or a bundle's wheel,
$PE_ETC/config.toml (only if absent), the models and lock under $PE_VAR, the USB MIDI
gadget and pianoedge.service, enabled. Safe to run again: it only changes what differs.

  --dry-run         print every change, one "would run:" line per command, and make none; works on
                    any machine (on another board it says which board it assumed)
  --bundle FILE     take the models, lock.json and config.toml from a bundle made by
                    "pianoedge bundle -o FILE.tar.gz"; every file is checked against the sha256 in
                    its manifest.json first, and a bundle that does not match is refused
  --python PATH     the Python the virtualenv is made from (default /usr/bin/python3; 3.10 or newer)
  --no-gadget       leave out the USB MIDI gadget (pianoedge-gadget.service)
  --no-start        install and enable the services without starting them
  -h, --help        this help

See docs/deploy.md.
EOF
}

pe_parse_args() {
    while [ $# -gt 0 ]; do
        case $1 in
            --dry-run|-n) PE_DRY_RUN=1 ;;
            --bundle) [ $# -ge 2 ] || pe_die "--bundle needs a file"; PE_BUNDLE=$2; shift ;;
            --bundle=*) PE_BUNDLE=${1#*=} ;;
            --python) [ $# -ge 2 ] || pe_die "--python needs a path"; PE_PYTHON=$2; shift ;;
            --python=*) PE_PYTHON=${1#*=} ;;
            --no-gadget) PE_GADGET=0 ;;
            --no-start) PE_START=0 ;;
            -h|--help) pe_usage; exit 0 ;;
            *) pe_usage >&2; pe_die "unknown argument: $1" ;;
        esac
        shift
    done
}

pe_detect_board() {
    if [ -r "$PE_MODEL_FILE" ]; then
        PE_MODEL=$(tr -d '\0' < "$PE_MODEL_FILE" 2>/dev/null || true)
    fi
    if [ -e "$PE_TEGRA_RELEASE" ] || [[ $PE_MODEL == *Jetson* ]] || [[ $PE_MODEL == *NVIDIA* ]]; then
        PE_DETECTED=jetson
    elif [[ $PE_MODEL == *"Raspberry Pi"* ]]; then
        PE_DETECTED=raspberry-pi
    else
        PE_DETECTED=unknown
    fi
}

pe_check_board() {
    local desc
    case $PE_DETECTED in
        jetson) desc="a Jetson (${PE_MODEL:-$PE_TEGRA_RELEASE})" ;;
        raspberry-pi) desc="a $PE_MODEL" ;;
        *) desc="an unknown board (${PE_MODEL:-no $PE_MODEL_FILE}, no $PE_TEGRA_RELEASE)" ;;
    esac
    if [ "$PE_DETECTED" = "$PE_BOARD" ]; then
        pe_say "board: $desc"
        return 0
    fi
    if [ "$PE_DRY_RUN" = 1 ]; then
        PE_ASSUMED=1
        pe_say "board: this machine is $desc, not a $PE_BOARD_NAME; --dry-run: assuming a $PE_ASSUMED_MODEL" \
               "for the steps below"
        return 0
    fi
    local hint="this installer is for a $PE_BOARD_NAME only"
    if [ "$PE_DETECTED" != unknown ]; then
        hint="run deploy/$PE_DETECTED/install.sh instead"
    fi
    pe_die "this machine is $desc, not a $PE_BOARD_NAME: $hint (--dry-run shows the steps on any machine)"
}

pe_check_root() {
    if [ "$PE_DRY_RUN" = 1 ] || [ "$(id -u)" -eq 0 ]; then return 0; fi
    pe_die "run it as root: sudo $0 (or try --dry-run first)"
}

pe_check_python() {
    if "$PE_PYTHON" -c 'import sys; raise SystemExit(sys.version_info < (3, 10))' 2>/dev/null; then
        pe_ok "$PE_PYTHON is $("$PE_PYTHON" -c 'import platform; print(platform.python_version())')"
        return 0
    fi
    local have
    have=$("$PE_PYTHON" -c 'import platform; print(platform.python_version())' 2>/dev/null || echo "missing")
    local msg
    msg="pianoedge needs Python 3.10 or newer, and $PE_PYTHON is $have. $(board_python_hint)"
    if [ "$PE_DRY_RUN" = 1 ]; then pe_warn "$msg"; else pe_die "$msg"; fi
}

# --- bundles ---------------------------------------------------------------------------------------

# pe_bundle_tool verify|checklist FILE: checks a bundle (a .tar.gz with manifest.json =
# {"files": {"relative/path": "sha256hex", ...}, ...} at its top level) without extracting it:
# regular files only, no absolute or ../ paths, every listed file present and every file listed.
# verify: hashes every file and refuses on any mismatch; checklist: prints "sha256  path" lines for
# sha256sum --check.
pe_bundle_tool() {
    python3 - "$1" "$2" <<'PY'
import hashlib, json, posixpath, re, sys, tarfile

mode, path = sys.argv[1], sys.argv[2]


def refuse(msg):
    sys.stderr.write(f"pianoedge-install: error: bundle {path} refused: {msg}\n")
    sys.exit(1)


def clean(name):
    norm = posixpath.normpath(name)
    if norm.startswith("/") or norm == ".." or norm.startswith("../") or "\n" in norm or "\\" in norm:
        refuse(f"unsafe file name {name!r}")
    return norm


try:
    tar = tarfile.open(path, "r:gz")
    members = tar.getmembers()
except (OSError, EOFError, tarfile.TarError) as exc:
    refuse(f"not a readable .tar.gz ({exc})")
files = {}
for member in members:
    name = clean(member.name)
    if name == "." or member.isdir():
        continue
    if not member.isfile():
        refuse(f"{member.name} is a link or special file; a bundle holds regular files only")
    if name in files:
        refuse(f"{name} is in the archive twice")
    files[name] = member
if "manifest.json" not in files:
    refuse("no manifest.json at its top level")
try:
    manifest = json.load(tar.extractfile(files["manifest.json"]))
except ValueError as exc:
    refuse(f"manifest.json is not valid JSON ({exc})")
listed = manifest.get("files") if isinstance(manifest, dict) else None
if not isinstance(listed, dict) or not listed:
    refuse('manifest.json has no "files" table')
want = {}
for name, digest in listed.items():
    if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-fA-F]{64}", digest):
        refuse(f"manifest.json: {name}: {digest!r} is not a sha256")
    want[clean(name)] = digest.lower()
want.pop("manifest.json", None)
missing = sorted(set(want) - set(files))
if missing:
    refuse(f"listed in manifest.json but not in the archive: {', '.join(missing)}")
extra = sorted(set(files) - set(want) - {"manifest.json"})
if extra:
    refuse(f"in the archive but not in manifest.json: {', '.join(extra)}")
if mode == "checklist":
    for name, digest in sorted(want.items()):
        print(f"{digest}  {name}")
    sys.exit(0)
bad = []
for name, digest in sorted(want.items()):
    h = hashlib.sha256()
    f = tar.extractfile(files[name])
    for block in iter(lambda: f.read(1 << 20), b""):
        h.update(block)
    if h.hexdigest() != digest:
        bad.append(name)
if bad:
    refuse(f"sha256 mismatch (corrupt or tampered): {', '.join(bad)}; copy it again or make a new one with pianoedge bundle")
print(f"bundle {path}: {len(want)} files, each matches its sha256 in manifest.json")
PY
}

pe_cleanup() {
    if [ -n "$PE_WORK" ] && [ -d "$PE_WORK" ]; then rm -rf "$PE_WORK"; fi
}

# pe_verify_bundle FILE: refuse a bundle that does not match its manifest, else extract it into a
# temporary folder (also with --dry-run: that changes nothing on the system and shows what it holds)
# and check the extracted files again with sha256sum --check.
pe_verify_bundle() {
    local bundle=$1
    [ -f "$bundle" ] || pe_die "bundle not found: $bundle"
    pe_bundle_tool verify "$bundle" || exit 1
    PE_WORK=$(mktemp -d "${TMPDIR:-/tmp}/pianoedge-bundle.XXXXXX")
    trap pe_cleanup EXIT
    PE_BUNDLE_DIR=$PE_WORK/bundle
    mkdir "$PE_BUNDLE_DIR"
    tar -xzf "$bundle" -C "$PE_BUNDLE_DIR" --no-same-owner --no-same-permissions
    pe_bundle_tool checklist "$bundle" > "$PE_WORK/manifest.sha256"
    if ! (cd "$PE_BUNDLE_DIR" && sha256sum --check --strict --quiet "$PE_WORK/manifest.sha256"); then
        pe_die "bundle $bundle refused: the extracted files do not match manifest.json"
    fi
    pe_ok "bundle extracted to $PE_BUNDLE_DIR (temporary, removed on exit): $(cd "$PE_BUNDLE_DIR" && find . -type f | sed 's|^\./||' | sort | tr '\n' ' ')"
}

# --- steps -----------------------------------------------------------------------------------------

pe_pkg_installed() {
    dpkg-query -W -f='${db:Status-Abbrev}' "$1" 2>/dev/null | grep -q '^ii'
}

pe_ensure_packages() {
    local missing=() p
    pe_say "packages: ${PE_PACKAGES[*]}"
    for p in "${PE_PACKAGES[@]}"; do
        if pe_pkg_installed "$p"; then pe_ok "$p is installed"; else missing+=("$p"); fi
    done
    if [ "${#missing[@]}" -eq 0 ]; then return 0; fi
    pe_run apt-get update
    pe_run apt-get install -y --no-install-recommends "${missing[@]}"
}

pe_ensure_user() {
    local g
    for g in "${PE_GROUPS[@]}"; do
        getent group "$g" >/dev/null || pe_run groupadd --system "$g"
    done
    if id -u "$PE_USER" >/dev/null 2>&1; then
        pe_ok "user $PE_USER exists"
        local have
        have=" $(id -nG "$PE_USER") "
        for g in "${PE_GROUPS[@]}"; do
            if [[ $have != *" $g "* ]]; then pe_run usermod -aG "$g" "$PE_USER"; fi
        done
        return 0
    fi
    local groups
    groups=$(IFS=,; printf '%s' "${PE_GROUPS[*]}")
    pe_run useradd --system --user-group --home-dir "$PE_VAR" --no-create-home --shell /usr/sbin/nologin \
        --comment "pianoedge runtime" --groups "$groups" "$PE_USER"
}

# pe_ensure_dir DIR MODE OWNER GROUP
pe_ensure_dir() {
    local dir=$1 mode=$2 owner=$3 group=$4
    if [ ! -d "$dir" ]; then
        pe_run install -d -m "$mode" -o "$owner" -g "$group" "$dir"
        return 0
    fi
    if [ "$(stat -c '%a %U %G' "$dir")" = "${mode#0} $owner $group" ]; then
        pe_ok "$dir"
        return 0
    fi
    pe_run chown "$owner:$group" "$dir"
    pe_run chmod "$mode" "$dir"
}

# pe_install_file SRC DEST MODE [OWNER GROUP]: copy SRC to DEST unless DEST already has its content.
pe_install_file() {
    local src=$1 dest=$2 mode=$3 owner=${4:-root} group=${5:-root}
    PE_INSTALLED=0
    [ -f "$src" ] || pe_die "missing from the checkout/bundle: $src"
    if [ -f "$dest" ] && cmp -s "$src" "$dest"; then
        pe_ok "$dest is up to date"
        return 0
    fi
    pe_run install -D -m "$mode" -o "$owner" -g "$group" "$src" "$dest"
    PE_INSTALLED=1
}

pe_ensure_venv() {
    local cfg=$PE_VENV/pyvenv.cfg
    if [ -x "$PE_VENV/bin/python" ] && grep -Eq '^include-system-site-packages *= *true' "$cfg" 2>/dev/null; then
        pe_ok "virtualenv $PE_VENV (with the system site-packages)"
    elif [ -x "$PE_VENV/bin/python" ]; then
        pe_note "$PE_VENV does not see the system site-packages: making it again"
        pe_run "$PE_PYTHON" -m venv --clear --system-site-packages "$PE_VENV"
    else
        pe_run "$PE_PYTHON" -m venv --system-site-packages "$PE_VENV"
    fi
}

# pe_pip ARG...: pip install into the venv, under deploy/constraints.txt.
pe_pip() {
    pe_run "$PE_VENV/bin/python" -m pip install --constraint "$PE_DEPLOY_DIR/constraints.txt" "$@"
}

pe_install_runtime() {
    local src=$PE_REPO wheel
    if [ -n "$PE_BUNDLE_DIR" ]; then
        for wheel in "$PE_BUNDLE_DIR"/wheels/pianoedge-*.whl; do
            if [ -f "$wheel" ]; then src=$wheel; break; fi
        done
    fi
    if [ "$src" = "$PE_REPO" ] && [ ! -f "$PE_REPO/pyproject.toml" ]; then
        pe_die "no pyproject.toml in $PE_REPO: run the installer from a pianoedge checkout (or give a bundle with wheels/)"
    fi
    pe_say "runtime from: $src"
    board_pip_install "$src"
    if [ "$PE_DRY_RUN" = 0 ] && [ ! -x "$PE_VENV/bin/pianoedge" ]; then
        pe_die "pip did not install $PE_VENV/bin/pianoedge"
    fi
    if [ -L "$PE_LINK" ] && [ "$(readlink "$PE_LINK")" = "$PE_VENV/bin/pianoedge" ]; then
        pe_ok "$PE_LINK -> $PE_VENV/bin/pianoedge"
    elif [ -e "$PE_LINK" ] || [ -L "$PE_LINK" ]; then
        pe_warn "$PE_LINK exists and is not ours: left alone (use $PE_VENV/bin/pianoedge)"
    else
        pe_run ln -s "$PE_VENV/bin/pianoedge" "$PE_LINK"
    fi
}

pe_install_config() {
    local dest=$PE_ETC/config.toml
    if [ -e "$dest" ]; then
        pe_ok "$dest exists: kept as it is (your settings; the example is $PE_DEPLOY_DIR/config.toml)"
        return 0
    fi
    if [ -n "$PE_BUNDLE_DIR" ] && [ -f "$PE_BUNDLE_DIR/config.toml" ]; then
        pe_install_file "$PE_BUNDLE_DIR/config.toml" "$dest" 0644
    else
        board_install_config "$PE_DEPLOY_DIR/config.toml" "$dest"
    fi
}

# pe_model_files MANIFEST: the models manifest and every file it lists (relative paths, one a line),
# after checking each file's sha256 against it.
pe_model_files() {
    python3 - "$1" <<'PY'
import hashlib, json, os, posixpath, sys

path = sys.argv[1]
root = os.path.dirname(path)


def fail(msg):
    sys.stderr.write(f"pianoedge-install: error: models: {msg}\n")
    sys.exit(1)


try:
    with open(path) as f:
        manifest = json.load(f)
except (OSError, ValueError) as exc:
    fail(f"cannot read {path} ({exc})")
artifacts = manifest.get("artifacts") if isinstance(manifest, dict) else None
if not isinstance(artifacts, dict) or not artifacts:
    fail(f"{path} lists no model artifacts")
out = ["manifest.json"]
for name, artifact in artifacts.items():
    for graph, spec in (artifact.get("files") or {}).items():
        rel = posixpath.normpath(spec["path"])
        if rel.startswith("/") or rel.startswith(".."):
            fail(f"{path}: {name}/{graph}: unsafe path {spec['path']!r}")
        file = os.path.join(root, rel)
        if not os.path.isfile(file):
            fail(f"{file} is missing ({name}/{graph} in {path})")
        h = hashlib.sha256()
        with open(file, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        if h.hexdigest() != spec.get("sha256"):
            fail(f"{file} does not match its sha256 in {path} (corrupt or tampered): restore it first")
        out.append(rel)
print("\n".join(dict.fromkeys(out)))
PY
}

pe_install_models() {
    local manifest=$PE_REPO/models/manifest.json rel list
    if [ -n "$PE_BUNDLE_DIR" ] && [ -f "$PE_BUNDLE_DIR/models/manifest.json" ]; then
        manifest=$PE_BUNDLE_DIR/models/manifest.json
    fi
    pe_say "models from: $manifest"
    list=$(pe_model_files "$manifest") || exit 1
    pe_ensure_dir "$PE_VAR/models" 0755 root root
    while IFS= read -r rel; do
        pe_install_file "$(dirname "$manifest")/$rel" "$PE_VAR/models/$rel" 0644
    done <<<"$list"
}

pe_install_lock() {
    local dest=$PE_VAR/lock.json
    if [ -n "$PE_BUNDLE_DIR" ] && [ -f "$PE_BUNDLE_DIR/lock.json" ]; then
        if [ ! -e "$dest" ]; then
            pe_install_file "$PE_BUNDLE_DIR/lock.json" "$dest" 0644 "$PE_USER" "$PE_USER"
        elif cmp -s "$PE_BUNDLE_DIR/lock.json" "$dest"; then
            pe_ok "$dest is the bundle's lock"
        else
            pe_note "kept the lock already in $dest (made for this camera); to use the bundle's instead:" \
                    "tar -xzf $PE_BUNDLE lock.json -O | sudo tee $dest >/dev/null"
        fi
        PE_HAVE_LOCK=1
    elif [ -e "$dest" ]; then
        pe_ok "keyboard lock $dest"
        PE_HAVE_LOCK=1
    else
        pe_note "no keyboard lock yet ($dest): make one from this camera (docs/deploy.md, \"Lock onto the keyboard\")"
    fi
}

pe_install_gadget() {
    if [ "$PE_GADGET" = 0 ]; then
        pe_note "USB MIDI gadget left out (--no-gadget)"
        return 0
    fi
    board_gadget_prepare
    if [ "$PE_GADGET" = 0 ]; then return 0; fi
    pe_ensure_dir "$PE_BIN" 0755 root root
    pe_install_file "$PE_DEPLOY_DIR/usb-gadget/pianoedge-gadget.sh" "$PE_BIN/pianoedge-gadget.sh" 0755
    if [ "$PE_INSTALLED" = 1 ]; then PE_GADGET_CHANGED=1; fi
    pe_install_file "$PE_DEPLOY_DIR/systemd/pianoedge-gadget.service" "$PE_UNIT_DIR/pianoedge-gadget.service" 0644
    if [ "$PE_INSTALLED" = 1 ]; then PE_GADGET_CHANGED=1; PE_UNITS_CHANGED=1; fi
}

pe_unit_enabled() { systemctl is-enabled --quiet "$1" 2>/dev/null; }
pe_unit_active() { systemctl is-active --quiet "$1" 2>/dev/null; }

pe_install_service() {
    pe_install_file "$PE_DEPLOY_DIR/systemd/pianoedge.service" "$PE_UNIT_DIR/pianoedge.service" 0644
    if [ "$PE_INSTALLED" = 1 ]; then PE_UNITS_CHANGED=1; fi
    if [ "$PE_UNITS_CHANGED" = 1 ]; then pe_run systemctl daemon-reload; fi
    local units=(pianoedge.service) unit
    if [ "$PE_GADGET" = 1 ]; then units=(pianoedge-gadget.service pianoedge.service); fi
    for unit in "${units[@]}"; do
        if pe_unit_enabled "$unit"; then pe_ok "$unit is enabled"; else pe_run systemctl enable "$unit"; fi
    done
}

pe_start_services() {
    if [ "$PE_START" = 0 ]; then
        pe_note "not started (--no-start): sudo systemctl start pianoedge"
        return 0
    fi
    if [ "$PE_REBOOT" = 1 ]; then
        pe_note "USB device mode needs a reboot: sudo reboot (both services start by themselves after it)"
        return 0
    fi
    if [ "$PE_GADGET" = 1 ]; then
        if ! pe_unit_active pianoedge-gadget.service; then
            pe_run_soft systemctl start pianoedge-gadget.service
        elif [ "$PE_GADGET_CHANGED" = 1 ]; then
            pe_run_soft systemctl restart pianoedge-gadget.service
        else
            pe_ok "pianoedge-gadget.service is active"
        fi
    fi
    if pe_unit_active pianoedge.service; then
        pe_run_soft systemctl restart pianoedge.service  # pick up the runtime pip just installed
    elif [ "$PE_HAVE_LOCK" = 1 ]; then
        pe_run_soft systemctl start pianoedge.service
    else
        pe_note "pianoedge.service is enabled but not started until the keyboard is locked;" \
                "then: sudo systemctl start pianoedge"
    fi
}

pe_main() {
    pe_parse_args "$@"
    if [ "$PE_DRY_RUN" = 1 ]; then
        pe_say "dry run: nothing is changed; every change is shown as \"would run: COMMAND\""
    fi
    pe_detect_board
    pe_check_board
    pe_check_root
    export DEBIAN_FRONTEND=noninteractive
    board_preflight
    pe_check_python

    if [ -n "$PE_BUNDLE" ]; then
        pe_step "bundle"
        pe_verify_bundle "$PE_BUNDLE"
    fi

    pe_step "system packages"
    board_packages
    pe_ensure_packages

    pe_step "user $PE_USER"
    pe_ensure_user

    pe_step "folders"
    pe_ensure_dir "$PE_PREFIX" 0755 root root
    pe_ensure_dir "$PE_ETC" 0755 root root
    pe_ensure_dir "$PE_VAR" 0755 "$PE_USER" "$PE_USER"

    pe_step "virtualenv and runtime"
    pe_ensure_venv
    pe_install_runtime

    pe_step "config, models, lock"
    pe_install_config
    pe_install_models
    pe_install_lock

    pe_step "USB MIDI gadget"
    pe_install_gadget

    pe_step "service"
    pe_install_service
    pe_start_services

    pe_step "next"
    board_notes
    pe_say "check everything:  sudo -u $PE_USER $PE_VENV/bin/pianoedge doctor"
    pe_say "follow the logs:   journalctl -u pianoedge -f"
    if [ "$PE_DRY_RUN" = 1 ] && [ "$PE_ASSUMED" = 1 ]; then
        pe_say "dry run finished: nothing was changed (steps shown for a $PE_ASSUMED_MODEL)"
    elif [ "$PE_DRY_RUN" = 1 ]; then
        pe_say "dry run finished: nothing was changed"
    else
        pe_say "pianoedge is installed"
    fi
}
