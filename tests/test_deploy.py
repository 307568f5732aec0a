"""Board deployment (issue 9): installers, USB MIDI gadget, systemd units, example config, bundles.

No board, UDC, camera or configfs is needed: the gadget script writes into a scratch folder, the
installers run with --dry-run (with the commands that change a system replaced by stubs that log),
the units are checked by systemd-analyze verify in a scratch root, and shellcheck lints every script.
"""
from __future__ import annotations

import grp
import hashlib
import io
import json
import os
import pwd
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = None

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
GADGET = DEPLOY / "usb-gadget" / "pianoedge-gadget.sh"
INSTALLERS = {"jetson": DEPLOY / "jetson" / "install.sh", "raspberry-pi": DEPLOY / "raspberry-pi" / "install.sh"}
UNITS = {name: DEPLOY / "systemd" / name for name in ("pianoedge.service", "pianoedge-gadget.service")}
SCRIPTS = sorted(DEPLOY.rglob("*.sh"))
TIMEOUT = 60

# Commands that change a system: on PATH during installer runs, each only logs its call and fails.
STUBBED = ("apt-get", "useradd", "usermod", "groupadd", "systemctl", "install", "ln", "chown", "chmod",
           "modprobe", "mount")
READ_ONLY = re.compile(r"^systemctl is-(enabled|active) ")
# What an installation touches on this machine; a dry run must leave all of it as it was.
WATCHED = ("/etc/pianoedge", "/opt/pianoedge", "/var/lib/pianoedge", "/etc/systemd/system/pianoedge.service",
           "/etc/systemd/system/pianoedge-gadget.service", "/usr/local/bin/pianoedge",
           "/etc/modules-load.d/pianoedge-gadget.conf", "/boot/firmware/config.txt", "/boot/config.txt")


# --- helpers ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def stubs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("stubs")
    for name in STUBBED:
        stub = folder / name
        stub.write_text(f'#!/bin/sh\necho "{name} $*" >> "${{STUB_LOG:-/dev/null}}"\nexit 1\n')
        stub.chmod(0o755)
    return folder


def run_installer(board: str, *args: str, stubs: Path, log: Path, env: dict | None = None):
    full = dict(os.environ, PATH=f"{stubs}:{os.environ['PATH']}", STUB_LOG=str(log), **(env or {}))
    return subprocess.run(["bash", str(INSTALLERS[board]), *args], check=False, capture_output=True, text=True, timeout=TIMEOUT,
                          env=full, cwd=REPO)


def stub_calls(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def system_state() -> dict:
    state = {}
    for path in WATCHED:
        p = Path(path)
        if p.is_file():
            state[path] = hashlib.sha256(p.read_bytes()).hexdigest()
        elif p.is_dir():
            state[path] = sorted(str(q) for q in p.rglob("*"))
        else:
            state[path] = p.is_symlink()
    try:
        pwd.getpwnam("pianoedge")
        state["user pianoedge"] = True
    except KeyError:
        state["user pianoedge"] = False
    return state


def would_run(output: str) -> list[str]:
    return [line[len("would run: "):] for line in output.splitlines() if line.startswith("would run: ")]


def bash_lib(script: str, *, cwd: Path = REPO, env: dict | None = None) -> subprocess.CompletedProcess:
    """Runs bash code with deploy/lib.sh sourced."""
    return subprocess.run(["bash", "-c", f'set -euo pipefail; source "{DEPLOY / "lib.sh"}"\n{script}'], check=False,
                          capture_output=True, text=True, timeout=TIMEOUT, cwd=cwd, env=dict(os.environ, **(env or {})))


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tiny_models() -> dict[str, bytes]:
    graph = b"not really onnx, but hashed like it"
    manifest = {"model": "pianonet", "default": "ort",
                "artifacts": {"ort": {"backend": "ort", "files": {"features": {"path": "onnx/f.onnx", "sha256": sha(graph)}}}}}
    return {"models/manifest.json": json.dumps(manifest).encode(), "models/onnx/f.onnx": graph}


def make_bundle(path: Path, files: dict[str, bytes], *, listed: dict[str, str] | None = None,
                tamper: str | None = None, extra: list[tarfile.TarInfo] = ()) -> Path:
    """A bundle as `pianoedge bundle` makes it: manifest.json {"files": {path: sha256}} + the files, at the top."""
    manifest = {"files": listed if listed is not None else {name: sha(data) for name, data in files.items()},
                "version": "0.1.0"}
    with tarfile.open(path, "w:gz") as tar:
        for name, data in [("manifest.json", json.dumps(manifest).encode()), *files.items()]:
            if name == tamper:
                data = data + b" tampered"
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for info in extra:
            tar.addfile(info, io.BytesIO(b"x" * info.size) if info.isfile() else None)
    return path


def bundle_files() -> dict[str, bytes]:
    return {**tiny_models(), "lock.json": b'{"corners": [[0, 0], [1, 0], [1, 1], [0, 1]]}',
            "config.toml": b'source = "csi://1"\nmidi_out = ["usb"]\n'}


# --- shell scripts ----------------------------------------------------------------------------------

def test_scripts_are_there():
    names = {p.relative_to(DEPLOY).as_posix() for p in SCRIPTS}
    assert {"lib.sh", "jetson/install.sh", "raspberry-pi/install.sh", "usb-gadget/pianoedge-gadget.sh"} <= names


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.relative_to(DEPLOY).as_posix())
def test_shellcheck(script):
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed (apt-get install shellcheck)")
    result = subprocess.run(["shellcheck", "-x", str(script)], check=False, capture_output=True, text=True, timeout=TIMEOUT,
                            cwd=script.parent)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("script", [s for s in SCRIPTS if s.name != "lib.sh"], ids=lambda p: p.relative_to(DEPLOY).as_posix())
def test_scripts_are_strict_and_have_help(script):
    text = script.read_text()
    assert text.startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in text
    assert os.access(script, os.X_OK), f"{script} is not executable"
    result = subprocess.run([str(script), "--help"], check=False, capture_output=True, text=True, timeout=TIMEOUT)
    assert result.returncode == 0 and "usage:" in result.stdout, result.stdout + result.stderr
    bad = subprocess.run([str(script), "--no-such-option"], check=False, capture_output=True, text=True, timeout=TIMEOUT)
    assert bad.returncode != 0 and "unknown argument" in bad.stderr


# --- systemd units ----------------------------------------------------------------------------------

def unit_settings(text: str) -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    section = ""
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        settings.setdefault(f"{section}.{key.strip()}", []).append(value.strip())
    return settings


@pytest.fixture(scope="module")
def unit_root(tmp_path_factory):
    """A scratch root for systemd-analyze verify --root: the system's own units (targets, mounts) and
    stand-ins for the programs our units start, which do not exist on this machine."""
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed (apt-get install systemd)")
    system = next((Path(p) for p in ("/usr/lib/systemd/system", "/lib/systemd/system") if Path(p, "sysinit.target").exists()), None)
    if system is None:
        pytest.skip("no systemd unit folder with sysinit.target on this machine")
    root = tmp_path_factory.mktemp("unitroot")
    shutil.copytree(system, root / "usr/lib/systemd/system", symlinks=True)
    (root / "etc/systemd/system").mkdir(parents=True)
    for unit in UNITS.values():
        for values in (v for k, v in unit_settings(unit.read_text()).items() if k.startswith("Service.Exec")):
            for value in values:
                program = root / value.split()[0].lstrip("-@:+!").lstrip("/")
                program.parent.mkdir(parents=True, exist_ok=True)
                program.write_text("#!/bin/sh\n")
                program.chmod(0o755)
    control = "[Unit]\nDescription=control\n[Service]\nType=oneshot\nExecStart=/bin/true\n"
    (root / "etc/systemd/system/control.service").write_text(control)
    (root / "bin").mkdir(exist_ok=True)
    (root / "bin/true").write_text("#!/bin/sh\n")
    (root / "bin/true").chmod(0o755)
    result = verify(root, "control.service")
    if result[0] != 0 or result[1]:
        pytest.skip(f"systemd-analyze verify cannot check units in this container: {result[1][:300]}")
    return root


def verify(root: Path, *names: str) -> tuple[int, str]:
    result = subprocess.run(["systemd-analyze", "verify", f"--root={root}", *names], check=False, capture_output=True, text=True,
                            timeout=TIMEOUT)
    return result.returncode, (result.stdout + result.stderr).strip()


def test_units_verify(unit_root):
    for name, unit in UNITS.items():
        shutil.copy(unit, unit_root / "etc/systemd/system" / name)
    code, output = verify(unit_root, *UNITS)
    # any message (unknown key, bad value, missing program) fails, not only the errors that set the exit code
    assert code == 0 and output == "", output


@pytest.mark.parametrize("breakage", ["Type=notfy", "Restart=sometimes", "Wombat=yes", "ExecStart=/opt/pianoedge/venv/bin/nope run"])
def test_unit_verification_catches_broken_units(unit_root, breakage):
    """The check above is real: the same unit with one broken line does not pass it."""
    key = breakage.split("=")[0]
    lines = UNITS["pianoedge.service"].read_text().splitlines()
    lines = [line for line in lines if not line.startswith(f"{key}=")]
    lines.insert(lines.index("[Service]") + 1, breakage)
    (unit_root / "etc/systemd/system/broken.service").write_text("\n".join(lines) + "\n")
    code, output = verify(unit_root, "broken.service")
    assert code != 0 or output != ""


def test_service_unit_settings():
    s = unit_settings(UNITS["pianoedge.service"].read_text())
    expect = {
        "Service.ExecStart": ["/opt/pianoedge/venv/bin/pianoedge run --config /etc/pianoedge/config.toml"],
        "Service.Type": ["notify"], "Service.NotifyAccess": ["main"], "Service.WatchdogSec": ["10"],
        "Service.Restart": ["on-failure"], "Service.RestartSec": ["2"],
        "Service.KillSignal": ["SIGTERM"], "Service.TimeoutStopSec": ["5"],
        "Service.User": ["pianoedge"], "Service.SupplementaryGroups": ["video audio"],
        "Service.StandardOutput": ["journal"], "Service.StandardError": ["journal"],
        "Service.NoNewPrivileges": ["yes"], "Service.ProtectSystem": ["strict"],
        "Service.ReadWritePaths": ["/var/lib/pianoedge"], "Service.ProtectHome": ["yes"], "Service.PrivateTmp": ["yes"],
        "Unit.After": ["pianoedge-gadget.service network.target"], "Unit.Wants": ["pianoedge-gadget.service"],
        "Install.WantedBy": ["multi-user.target"],
    }
    for key, value in expect.items():
        assert s.get(key) == value, key
    assert "Service.PrivateDevices" not in s and "Service.DeviceAllow" not in s  # cameras, ALSA, the GPU stay reachable
    assert "Service.StateDirectory" not in s


def test_gadget_unit_settings():
    s = unit_settings(UNITS["pianoedge-gadget.service"].read_text())
    assert s["Service.Type"] == ["oneshot"] and s["Service.RemainAfterExit"] == ["yes"]
    assert s["Service.ExecStart"] == ["/opt/pianoedge/bin/pianoedge-gadget.sh up"]
    assert s["Service.ExecStop"] == ["/opt/pianoedge/bin/pianoedge-gadget.sh down"]
    assert s["Unit.Before"] == ["pianoedge.service"]
    assert s["Install.WantedBy"] == ["multi-user.target"]


# --- USB MIDI gadget --------------------------------------------------------------------------------

def gadget(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(GADGET), *args], check=False, capture_output=True, text=True, timeout=TIMEOUT)


def tree(root: Path) -> dict[str, str]:
    """Every path under root: file -> content, symlink -> '-> resolved target', folder -> '/'."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_symlink():
            out[rel] = "-> " + Path(os.path.realpath(p)).relative_to(root.resolve()).as_posix()
        elif p.is_dir():
            out[rel] = "/"
        else:
            out[rel] = p.read_text()
    return out


def serial_number() -> str:
    machine_id = Path("/etc/machine-id")
    if machine_id.is_file() and machine_id.stat().st_size > 0:
        return machine_id.read_text().replace("\n", "")
    return "0001"


G = "usb_gadget/pianoedge"
EXPECTED_TREE = {
    "usb_gadget": "/",
    G: "/",
    f"{G}/idVendor": "0x1d6b",
    f"{G}/idProduct": "0x0104",
    f"{G}/bcdDevice": "0x0100",
    f"{G}/bcdUSB": "0x0200",
    f"{G}/UDC": "dummy_udc.0",
    f"{G}/strings": "/",
    f"{G}/strings/0x409": "/",
    f"{G}/strings/0x409/manufacturer": "pianoedge",
    f"{G}/strings/0x409/product": "pianoedge MIDI",
    f"{G}/strings/0x409/serialnumber": None,  # /etc/machine-id or 0001
    f"{G}/configs": "/",
    f"{G}/configs/c.1": "/",
    f"{G}/configs/c.1/MaxPower": "250",
    f"{G}/configs/c.1/strings": "/",
    f"{G}/configs/c.1/strings/0x409": "/",
    f"{G}/configs/c.1/strings/0x409/configuration": "MIDI",
    f"{G}/configs/c.1/midi.usb0": f"-> {G}/functions/midi.usb0",
    f"{G}/functions": "/",
    f"{G}/functions/midi.usb0": "/",
    f"{G}/functions/midi.usb0/id": "pianoedge",
    f"{G}/functions/midi.usb0/in_ports": "1",
    f"{G}/functions/midi.usb0/out_ports": "1",
    f"{G}/functions/midi.usb0/buflen": "512",
    f"{G}/functions/midi.usb0/qlen": "32",
    f"{G}/functions/midi.usb0/index": "-1",
}


def test_gadget_up_writes_the_documented_tree(tmp_path):
    result = gadget("up", "--configfs", str(tmp_path), "--udc", "dummy_udc.0")
    assert result.returncode == 0, result.stderr
    assert "scratch mode" in result.stdout
    expected = dict(EXPECTED_TREE, **{f"{G}/strings/0x409/serialnumber": serial_number()})
    assert tree(tmp_path) == expected
    assert (tmp_path / G / "configs/c.1/midi.usb0").is_symlink()
    status = gadget("status", "--configfs", str(tmp_path))
    assert status.returncode == 0 and "bound to UDC dummy_udc.0" in status.stdout


def test_gadget_up_twice_is_idempotent_and_down_removes_it(tmp_path):
    assert gadget("up", "--configfs", str(tmp_path), "--udc", "dummy_udc.0").returncode == 0
    first = tree(tmp_path)
    again = gadget("up", "--configfs", str(tmp_path), "--udc", "dummy_udc.0")
    assert again.returncode == 0 and "already up" in again.stdout
    assert tree(tmp_path) == first
    down = gadget("down", "--configfs", str(tmp_path))
    assert down.returncode == 0, down.stderr
    assert tree(tmp_path) == {"usb_gadget": "/"}
    assert gadget("down", "--configfs", str(tmp_path)).returncode == 0  # nothing left to remove: fine
    assert gadget("status", "--configfs", str(tmp_path)).returncode == 3


def test_gadget_up_completes_a_half_made_gadget(tmp_path):
    """A gadget left unbound (a failed earlier start) is completed and bound, not duplicated."""
    assert gadget("up", "--configfs", str(tmp_path), "--udc", "dummy_udc.0").returncode == 0
    (tmp_path / G / "UDC").write_text("")
    assert gadget("up", "--configfs", str(tmp_path), "--udc", "dummy_udc.0").returncode == 0
    assert tree(tmp_path) == dict(EXPECTED_TREE, **{f"{G}/strings/0x409/serialnumber": serial_number()})


def test_gadget_binds_the_first_udc(tmp_path):
    udcs = tmp_path / "udc"
    udcs.mkdir()
    for name in ("fe980000.usb", "3550000.usb"):
        (udcs / name).mkdir()
    configfs = tmp_path / "cfg"
    configfs.mkdir()
    result = gadget("up", "--configfs", str(configfs), "--udc-class", str(udcs))
    assert result.returncode == 0, result.stderr
    assert (configfs / G / "UDC").read_text() == "3550000.usb"


def test_gadget_without_udc_says_why(tmp_path):
    empty = tmp_path / "udc"
    empty.mkdir()
    configfs = tmp_path / "cfg"
    configfs.mkdir()
    result = gadget("up", "--configfs", str(configfs), "--udc-class", str(empty))
    assert result.returncode != 0
    assert "this board cannot be a USB device: no UDC in" in result.stderr
    assert "dtoverlay=dwc2" in result.stderr and "Raspberry Pi 3" in result.stderr
    assert not (configfs / G).exists()  # nothing half-made


def test_gadget_leaves_a_taken_udc_alone(tmp_path):
    """On a Jetson L4T's own gadget holds the UDC: ours is not added, and the message says what to do."""
    l4t = tmp_path / "usb_gadget/l4t"
    l4t.mkdir(parents=True)
    (l4t / "UDC").write_text("3550000.usb\n")
    result = gadget("up", "--configfs", str(tmp_path), "--udc", "3550000.usb")
    assert result.returncode != 0
    assert "taken by the gadget 'l4t'" in result.stderr
    assert "nv-l4t-usb-device-mode-start.sh" in result.stderr and "functions/midi.usb0" in result.stderr
    assert not (tmp_path / G).exists()
    other = gadget("up", "--configfs", str(tmp_path), "--udc", "another.usb")  # a free UDC is fine
    assert other.returncode == 0, other.stderr


# --- installers -------------------------------------------------------------------------------------

@pytest.mark.parametrize("board", sorted(INSTALLERS))
def test_dry_run_changes_nothing_and_shows_every_step(board, stubs, tmp_path):
    log = tmp_path / "calls.log"
    before = system_state()
    result = run_installer(board, "--dry-run", stubs=stubs, log=log)
    assert result.returncode == 0, result.stdout + result.stderr
    assert system_state() == before
    calls = stub_calls(log)
    assert all(READ_ONLY.match(call) for call in calls), calls  # nothing but queries reached the system
    out = result.stdout
    assert not [line for line in out.splitlines() if line.startswith("+ ")]  # nothing ran for real
    assert "dry run finished: nothing was changed" in out
    name = {"jetson": "Jetson", "raspberry-pi": "Raspberry Pi"}[board]
    assert re.search(rf"^board: .*not a {name}; --dry-run: assuming a {name}", out, re.MULTILINE), out
    cmds = would_run(out)
    packages = re.search(r"^packages: (.*)$", out, re.MULTILINE).group(1).split()
    common = {"python3-venv", "fluidsynth", "timgm6mb-soundfont", "ffmpeg", "v4l-utils"}
    assert common <= set(packages)
    # every missing package is installed by apt-get, the others were found
    for package in packages:
        assert f"ok: {package} is installed" in out or any(
            c.startswith("apt-get install -y --no-install-recommends") and package in c.split() for c in cmds), package
    assert "pianoedge" in {p.pw_name for p in pwd.getpwall()} or any(
        c.startswith("useradd --system") and "--groups video,audio" in c and c.endswith(" pianoedge") for c in cmds)
    assert "/usr/bin/python3 -m venv --system-site-packages /opt/pianoedge/venv" in cmds
    pips = [c for c in cmds if " -m pip install " in c]
    assert pips and all(c.startswith("/opt/pianoedge/venv/bin/python -m pip install --constraint ") for c in pips)
    assert not [c for c in pips if re.search(r"torch|tensorrt|\[host|\[jetson", c)]  # never torch or pip TensorRT on a board
    assert f"install -D -m 0644 -o root -g root {REPO}/deploy/config.toml /etc/pianoedge/config.toml" in cmds
    assert f"install -D -m 0644 -o root -g root {REPO}/models/manifest.json /var/lib/pianoedge/models/manifest.json" in cmds
    # the gadget script goes where the gadget unit starts it from, and both units get enabled
    gadget_exec = unit_settings(UNITS["pianoedge-gadget.service"].read_text())["Service.ExecStart"][0].split()[0]
    assert f"install -D -m 0755 -o root -g root {GADGET} {gadget_exec}" in cmds
    for unit in UNITS:
        assert f"install -D -m 0644 -o root -g root {DEPLOY}/systemd/{unit} /etc/systemd/system/{unit}" in cmds
        assert f"systemctl enable {unit}" in cmds
    assert "systemctl daemon-reload" in cmds
    if board == "jetson":
        assert "python3-libnvinfer" in packages
        assert {"python3-opencv", "libopencv-python"} & set(packages) or "already imports cv2" in out
        assert pips[0].endswith(f"--no-deps {REPO}")  # no pip OpenCV to hide JetPack's
        assert not [c for c in pips if "opencv" in c]
    else:
        assert "python3-picamera2" in packages
        assert pips == [f"/opt/pianoedge/venv/bin/python -m pip install --constraint {REPO}/deploy/constraints.txt '{REPO}[rpi]'"]
        assert "printf '%s\\n' dtoverlay=dwc2,dr_mode=peripheral >> /boot/firmware/config.txt" in cmds
        assert "printf '%s\\n' dwc2 >> /etc/modules-load.d/pianoedge-gadget.conf" in cmds
        assert """sed -i 's|^source = "csi://0"|source = "picam://0"|' /etc/pianoedge/config.toml""" in cmds
        assert "needs a reboot" in out


@pytest.mark.parametrize("board,model,other", [
    ("raspberry-pi", "NVIDIA Jetson Orin Nano Developer Kit", "deploy/jetson/install.sh"),
    ("jetson", "Raspberry Pi 4 Model B Rev 1.4", "deploy/raspberry-pi/install.sh"),
    ("jetson", None, None),  # this machine: neither board
])
def test_wrong_board_is_refused_before_any_change(board, model, other, stubs, tmp_path):
    env = {"PIANOEDGE_TEGRA_RELEASE": str(tmp_path / "no-tegra-release")}
    if model is not None:
        (tmp_path / "model").write_bytes(model.encode() + b"\0")
        env["PIANOEDGE_MODEL_FILE"] = str(tmp_path / "model")
    else:
        env["PIANOEDGE_MODEL_FILE"] = str(tmp_path / "no-model")
    log = tmp_path / "calls.log"
    before = system_state()
    result = run_installer(board, stubs=stubs, log=log, env=env)
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("pianoedge-install: error: this machine is"), result.stderr
    name = {"jetson": "Jetson", "raspberry-pi": "Raspberry Pi"}[board]
    assert f"not a {name}" in lines[0] and (other is None or other in lines[0])
    assert stub_calls(log) == [] and system_state() == before
    assert "would run" not in result.stdout


def test_dry_run_on_the_right_board_assumes_nothing(stubs, tmp_path):
    (tmp_path / "model").write_bytes(b"Raspberry Pi Zero 2 W Rev 1.0\0")
    env = {"PIANOEDGE_MODEL_FILE": str(tmp_path / "model"), "PIANOEDGE_TEGRA_RELEASE": str(tmp_path / "none")}
    result = run_installer("raspberry-pi", "--dry-run", stubs=stubs, log=tmp_path / "log", env=env)
    assert result.returncode == 0, result.stderr
    assert "board: a Raspberry Pi Zero 2 W Rev 1.0\n" in result.stdout and "assuming" not in result.stdout


def test_pi_without_device_port_skips_the_gadget(stubs, tmp_path):
    (tmp_path / "model").write_bytes(b"Raspberry Pi 3 Model B Plus Rev 1.3\0")
    env = {"PIANOEDGE_MODEL_FILE": str(tmp_path / "model"), "PIANOEDGE_TEGRA_RELEASE": str(tmp_path / "none")}
    result = run_installer("raspberry-pi", "--dry-run", stubs=stubs, log=tmp_path / "log", env=env)
    assert result.returncode == 0, result.stderr
    assert "no USB port that can be a device" in result.stderr
    cmds = would_run(result.stdout)
    assert not [c for c in cmds if "gadget" in c or "dwc2" in c]
    assert "systemctl enable pianoedge.service" in cmds


def test_jetson_pip_dependencies_follow_pyproject():
    """The Jetson installs the runtime with --no-deps and lists its dependencies itself, minus pip's OpenCV."""
    if tomllib is None:
        pytest.skip("tomllib needs Python 3.11")
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    line = re.search(r"^JETSON_PIP_DEPS=\((.*)\)$", INSTALLERS["jetson"].read_text(), re.MULTILINE).group(1)
    assert sorted(re.findall(r'"([^"]+)"', line)) == sorted(d for d in deps if not d.startswith("opencv"))


# --- bundles ----------------------------------------------------------------------------------------

def test_bundle_is_verified_and_used(stubs, tmp_path):
    bundle = make_bundle(tmp_path / "b.tar.gz", bundle_files())
    before = system_state()
    result = run_installer("jetson", "--dry-run", "--bundle", str(bundle), stubs=stubs, log=tmp_path / "log")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"bundle {bundle}: {len(bundle_files())} files, each matches its sha256 in manifest.json" in result.stdout
    cmds = would_run(result.stdout)
    for src, dest, owner in [("config.toml", "/etc/pianoedge/config.toml", "root"),
                             ("lock.json", "/var/lib/pianoedge/lock.json", "pianoedge"),
                             ("models/manifest.json", "/var/lib/pianoedge/models/manifest.json", "root"),
                             ("models/onnx/f.onnx", "/var/lib/pianoedge/models/onnx/f.onnx", "root")]:
        assert any(re.fullmatch(rf"install -D -m 0644 -o {owner} -g {owner} \S+/bundle/{re.escape(src)} {dest}", c)
                   for c in cmds), (src, cmds)
    assert system_state() == before


def test_bundles_from_pianoedge_bundle_pass(stubs, tmp_path):
    """The contract with `pianoedge bundle` (deploy/bundle.py): what it writes, the installers accept."""
    bundle_module = pytest.importorskip("pianoedge.deploy.bundle")
    lock = tmp_path / "lock.json"
    lock.write_text("{}")
    out = tmp_path / "real.tar.gz"
    index = bundle_module.write_bundle(out, lock=lock, config=DEPLOY / "config.toml")
    result = run_installer("raspberry-pi", "--dry-run", "--bundle", str(out), stubs=stubs, log=tmp_path / "log")
    assert result.returncode == 0, result.stderr
    assert f"bundle {out}: {len(index['files'])} files, each matches its sha256" in result.stdout
    assert re.search(r"^would run: install -D .*/bundle/lock\.json /var/lib/pianoedge/lock\.json$", result.stdout, re.MULTILINE)


@pytest.mark.parametrize("board", sorted(INSTALLERS))
def test_tampered_bundle_is_refused(board, stubs, tmp_path):
    bundle = make_bundle(tmp_path / "b.tar.gz", bundle_files(), tamper="models/onnx/f.onnx")
    result = run_installer(board, "--dry-run", "--bundle", str(bundle), stubs=stubs, log=tmp_path / "log")
    assert result.returncode == 1
    assert f"bundle {bundle} refused: sha256 mismatch (corrupt or tampered): models/onnx/f.onnx" in result.stderr
    assert "== system packages" not in result.stdout and not would_run(result.stdout)  # refused before any step


def info(name: str, kind=tarfile.REGTYPE, size: int = 1, target: str = "") -> tarfile.TarInfo:
    member = tarfile.TarInfo(name)
    member.type, member.size, member.linkname = kind, (size if kind == tarfile.REGTYPE else 0), target
    return member


@pytest.mark.parametrize("case,words", [
    ("good", None),
    ("tampered", "sha256 mismatch (corrupt or tampered): lock.json"),
    ("unlisted", "in the archive but not in manifest.json: extra.bin"),
    ("missing", "listed in manifest.json but not in the archive: gone.bin"),
    ("traversal", "unsafe file name '../evil'"),
    ("symlink", "is a link or special file"),
    ("no-manifest", "no manifest.json at its top level"),
    ("bad-hash", "is not a sha256"),
    ("not-gzip", "not a readable .tar.gz"),
])
def test_bundle_verification(case, words, tmp_path):
    files = bundle_files()
    path = tmp_path / "b.tar.gz"
    listed = {name: sha(data) for name, data in files.items()}
    if case == "good":
        make_bundle(path, files)
    elif case == "tampered":
        make_bundle(path, files, tamper="lock.json")
    elif case == "unlisted":
        make_bundle(path, files, listed=listed, extra=[info("extra.bin")])
    elif case == "missing":
        make_bundle(path, files, listed=dict(listed, **{"gone.bin": sha(b"")}))
    elif case == "traversal":
        make_bundle(path, files, extra=[info("../evil")])
    elif case == "symlink":
        make_bundle(path, files, extra=[info("models/link", tarfile.SYMTYPE, target="/etc/shadow")])
    elif case == "no-manifest":
        with tarfile.open(path, "w:gz") as tar:
            tar.add(str(DEPLOY / "config.toml"), arcname="config.toml")
    elif case == "bad-hash":
        make_bundle(path, files, listed=dict(listed, **{"lock.json": "abc"}))
    elif case == "not-gzip":
        path.write_bytes(b"plain text")
    result = bash_lib(f'pe_bundle_tool verify "{path}"')
    if words is None:
        assert result.returncode == 0, result.stderr
        checklist = bash_lib(f'pe_bundle_tool checklist "{path}"')
        extracted = tmp_path / "x"
        extracted.mkdir()
        with tarfile.open(path) as tar:  # only the regular files make_bundle wrote
            for member in tar.getmembers():
                (extracted / member.name).parent.mkdir(parents=True, exist_ok=True)
                (extracted / member.name).write_bytes(tar.extractfile(member).read())
        check = subprocess.run(["sha256sum", "--check", "--strict", "--quiet"], check=False, input=checklist.stdout, text=True,
                               capture_output=True, cwd=extracted, timeout=TIMEOUT)
        assert check.returncode == 0 and len(checklist.stdout.splitlines()) == len(files), check.stdout + check.stderr
    else:
        assert result.returncode == 1
        assert f"bundle {path} refused: " in result.stderr and words in result.stderr, result.stderr


def test_bundle_extraction_is_checked_again(tmp_path):
    """After extracting, the installer checks the files on disk with sha256sum --check, and cleans up."""
    bundle = make_bundle(tmp_path / "b.tar.gz", bundle_files())
    work = tmp_path / "tmp"
    work.mkdir()
    result = bash_lib(f'PE_DRY_RUN=1; pe_verify_bundle "{bundle}"; ls "$PE_BUNDLE_DIR"', env={"TMPDIR": str(work)})
    assert result.returncode == 0, result.stderr
    assert set(result.stdout.split()) >= {"config.toml", "lock.json", "manifest.json", "models"}
    assert list(work.iterdir()) == []  # the temporary folder is gone on exit


# --- the real-mode steps, made idempotent, in scratch folders ----------------------------------------

def test_file_and_folder_steps_change_nothing_the_second_time(tmp_path):
    user, group = pwd.getpwuid(os.getuid()).pw_name, grp.getgrgid(os.getgid()).gr_name
    src = tmp_path / "src.txt"
    src.write_text("hello\n")
    script = f'''
        PE_DRY_RUN=0
        for i in 1 2; do
            pe_ensure_dir "{tmp_path}/d" 0750 {user} {group}
            pe_install_file "{src}" "{tmp_path}/d/sub/dest.txt" 0640 {user} {group}
            echo "changed=$PE_INSTALLED"
        done
    '''
    result = bash_lib(script)
    assert result.returncode == 0, result.stderr
    first, second = result.stdout.split("changed=1\n")
    assert first.startswith("+ install -d -m 0750") and "+ install -D -m 0640" in first
    assert "+ " not in second and second.count("ok: ") == 2 and second.strip().endswith("changed=0")
    assert (tmp_path / "d/sub/dest.txt").read_text() == "hello\n"
    assert oct((tmp_path / "d").stat().st_mode & 0o777) == "0o750"


def pi_step(tmp_path: Path, model: str, rounds: int = 2) -> subprocess.CompletedProcess:
    """board_gadget_prepare of the Raspberry Pi installer for real, on a scratch boot partition."""
    script = f'''
        source "{INSTALLERS['raspberry-pi']}"
        PE_DRY_RUN=0; PE_ASSUMED=0; PE_MODEL="{model}"
        BOOT_FIRMWARE="{tmp_path}/firmware"; BOOT_LEGACY="{tmp_path}/boot"; MODULES_CONF="{tmp_path}/modules.conf"
        for i in $(seq {rounds}); do PE_REBOOT=0; board_gadget_prepare; echo "reboot=$PE_REBOOT gadget=$PE_GADGET"; done
    '''
    return subprocess.run(["bash", "-c", script], check=False, capture_output=True, text=True, timeout=TIMEOUT)


def test_pi_boot_config_is_edited_once(tmp_path):
    firmware = tmp_path / "firmware"
    firmware.mkdir()
    original = "# For more options see config.txt(5)\n[all]\narm_64bit=1"  # no newline at the end
    (firmware / "config.txt").write_text(original)
    (firmware / "cmdline.txt").write_text("console=tty1 root=PARTUUID=1234-02 rootwait\n")
    result = pi_step(tmp_path, "Raspberry Pi 4 Model B Rev 1.4")
    assert result.returncode == 0, result.stderr
    config = (firmware / "config.txt").read_text()
    assert config.startswith(original + "\n")  # its last line is kept whole
    assert config.splitlines().count("dtoverlay=dwc2,dr_mode=peripheral") == 1
    assert (tmp_path / "modules.conf").read_text().splitlines()[1:] == ["dwc2", "libcomposite"]
    rounds = re.findall(r"reboot=(\d) gadget=(\d)", result.stdout)
    assert rounds == [("1", "1"), ("0", "1")]  # the second run finds everything in place
    assert result.stdout.split("reboot=1 gadget=1\n")[1].count("+ ") == 0


def test_pi_existing_overlay_and_legacy_gadgets(tmp_path):
    boot = tmp_path / "boot"  # before bookworm: /boot/config.txt
    boot.mkdir()
    (boot / "config.txt").write_text("dtoverlay=dwc2\n")
    (boot / "cmdline.txt").write_text("console=tty1 rootwait modules-load=dwc2,g_ether\n")
    result = pi_step(tmp_path, "Raspberry Pi Zero W Rev 1.1", rounds=1)
    assert result.returncode == 0, result.stderr
    assert (boot / "config.txt").read_text() == "dtoverlay=dwc2\n"  # otg mode works for a gadget: left alone
    assert "ok: " in result.stdout and "g_ether" not in result.stdout and "legacy gadget" in result.stderr


def test_pi_3_has_no_gadget(tmp_path):
    result = pi_step(tmp_path, "Raspberry Pi 3 Model B Rev 1.2", rounds=1)
    assert result.returncode == 0
    assert "reboot=0 gadget=0" in result.stdout and "no USB port that can be a device" in result.stderr
    assert not (tmp_path / "modules.conf").exists() and not (tmp_path / "firmware").exists()


# --- config -----------------------------------------------------------------------------------------

def test_example_config():
    if tomllib is None:
        pytest.skip("tomllib needs Python 3.11")
    text = (DEPLOY / "config.toml").read_text()
    config = tomllib.loads(text)
    assert config == {"source": "csi://0", "midi_out": ["usb"], "lock": "/var/lib/pianoedge/lock.json"}
    for commented in ("camera", "keys", "backend", "look_ahead"):
        assert re.search(rf"^# {commented} = ", text, re.MULTILINE), commented
    # every key, set or commented out, is a `pianoedge run` option
    keys = set(re.findall(r"^#? ?([a-z_]+) = ", text, re.MULTILINE))
    assert keys == {"source", "camera", "midi_out", "lock", "keys", "backend", "look_ahead"}


def test_deploy_guide_covers_the_steps():
    guide = (REPO / "docs" / "deploy.md").read_text()
    for needed in ("--dry-run", "deploy/jetson/install.sh", "deploy/raspberry-pi/install.sh", "--bundle",
                   "pianoedge lock", "-o /var/lib/pianoedge/lock.json", "pianoedge doctor",
                   "pianoedge profile --camera 0 --seconds 20 --json p.json --plot p.png", "pianoedge MIDI",
                   "journalctl -u pianoedge -f", "/etc/pianoedge/config.toml", "nv-l4t-usb-device-mode",
                   "dtoverlay=dwc2,dr_mode=peripheral", "Uninstall", "Update"):
        assert needed in guide, needed
