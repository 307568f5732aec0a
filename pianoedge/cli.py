"""The one console script, ``pianoedge``: every tool behind the same flags.

Commands import their modules lazily, so ``pianoedge --help`` and the runtime commands never pull in
host-only packages (torch, music21).
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from .errors import PianoedgeError


def _progress(total: int, unit: str, desc: str):
    """A tqdm bar (rate and ETA) when tqdm is installed, else nothing."""
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, unit=unit, desc=desc, dynamic_ncols=True)


def cmd_synth(args: argparse.Namespace) -> int:
    from pianoedge.notes import read_notes
    from pianoedge.studio import take

    overrides = {"view": args.view, "piano": args.piano, "fps": args.fps}
    if args.resolution:
        try:
            w, h = (int(v) for v in args.resolution.lower().split("x"))
        except ValueError:
            raise PianoedgeError(f"--resolution {args.resolution!r}: write it as WIDTHxHEIGHT, e.g. 1280x720") from None
        overrides.update(width=w, height=h)
    if args.relabel:
        if args.midi or args.generate:
            raise PianoedgeError("--relabel works on the takes already in -o DIR: give no MIDI files and no --generate")
        from pianoedge.studio import dataset

        bar = _progress(0, "take", "relabelling")
        count = dataset.relabel_all([args.output], args.workers, bar)
        if bar is not None:
            bar.close()
        print(f"relabelled {count} takes in {args.output}")
        return 0
    if args.generate:
        if args.midi:
            raise PianoedgeError("give MIDI files or --generate N, not both")
        from pianoedge.studio import dataset

        bar = _progress(args.generate, "take", "rendering")
        paths = dataset.build(args.output, args.generate, args.seconds, args.seed, args.workers, bar)
        if bar is not None:
            bar.close()
        print(f"wrote {len(paths)} takes to {args.output}")
        return 0
    if not args.midi:
        raise PianoedgeError("give at least one MIDI file, or --generate N to build a training set from music")
    performances = [(Path(m), read_notes(m)) for m in args.midi]  # read all first: fail before rendering anything
    for index, (midi, notes) in enumerate(performances):
        video = take.render_take(notes, args.output, midi.stem, args.seed + index, source=midi.name, num_keys=args.keys,
                                 progress=lambda total, name=midi.stem: _progress(total, "frame", name), **overrides)
        print(f"wrote {video} (+ .mid .json .npz)")
    return 0


def cmd_lock(args: argparse.Namespace) -> int:
    from pianoedge.calibration import acquire

    if args.video:
        lock, _ = acquire.lock_video(args.video, args.keys, args.k1)
    else:
        frames = acquire.frames_from_image(args.image) if args.image else acquire.frames_from_camera(args.camera)
        lock = acquire.lock_frames(frames, args.keys, args.k1)
    lock.save(args.output)
    hidden = lock.keys_out_of_view()
    if hidden:
        print(f"pianoedge: warning: {len(hidden)} keys are out of view (pitches {hidden[0]}..{hidden[-1]}); "
              "their places are extrapolated", file=sys.stderr)
    print(f"locked a {lock.num_keys}-key keyboard (lowest key {lock.lowest_key}); wrote {args.output}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    if args.arch == "seed":
        from pianoedge.models import seed
        from pianoedge.takes import find_takes

        takes = sum(len(find_takes(d)) for d in args.data)
        bar = _progress(takes, "take", "cropping")
        path = seed.train_seed(args.data, args.output, epochs=args.epochs, lstm_epochs=args.epochs, seed=args.seed, progress=bar)
        if bar is not None:
            bar.close()
        print(f"seed-paper baseline: {path} (+ seed.json)")
        return 0
    from pianoedge.models import train

    settings = train.Settings(seed=args.seed, epochs=args.epochs, steps_per_epoch=args.steps, lr=args.lr, heads=args.heads,
                              width=args.width)
    if args.key_change_weight is not None:
        settings.key_change_weight = args.key_change_weight
    best = train.train(args.data, args.output, args.val, settings, progress_factory=_progress, init=args.init)
    print(f"best epoch {best['epoch']}: " + ", ".join(f"{k} {v:.3f}" for k, v in best.items() if k not in ("key", "epoch")))
    print(f"weights: {args.output / 'pianonet.pt'} (+ pianonet.json); ship them by copying both into models/weights/")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from pianoedge.models import evaluate
    from pianoedge.takes import find_takes

    takes = [t for d in args.data for t in find_takes(d)]
    if not takes:
        raise PianoedgeError(f"no takes (NAME.mp4 + NAME.mid) in {', '.join(map(str, args.data))}")
    as_file = args.head != "live"  # notes as transcribe writes them (decode.file_notes); --head live: as run sends them
    if args.model and (args.model / "seed.pt").is_file():
        from pianoedge.models import seed

        if args.tune:
            raise PianoedgeError("--tune tunes PianoNet's decoder; the seed-paper model has fixed 0.5 thresholds")
        model = seed.SeedTranscriber(args.model)
        transcribe = model.transcribe_take
    elif args.backend:
        if args.tune:
            raise PianoedgeError("--tune tunes a PianoNet folder's decoder (--model DIR, or the shipped one), not an exported "
                                 "artifact: tune it, then export it again (pianoedge export)")
        from pianoedge.models.data import load_take
        from pianoedge.models.decode import Thresholds, decode
        from pianoedge.runtime.backend import OrtBackend, take_posteriors
        from pianoedge.runtime.manifest import file_head

        backend = OrtBackend.named(args.backend)
        thresholds = Thresholds(**backend.artifact.decoder)
        head = args.head or file_head(backend.artifact.heads)
        backend.artifact.look_ahead(head)  # a clear error now if the model lacks it

        def transcribe(take):
            data = load_take(take, backend.artifact.strip_size)
            probs = take_posteriors(backend, data.strips, data.rest, data.num_keys, data.lowest, data.fps, head=head)
            return decode(probs, data.lowest, data.fps, thresholds, as_file), data.fps, len(data.strips)
    else:
        from pianoedge.models import decode, train
        from pianoedge.runtime.manifest import file_head

        folder = args.model or train.WEIGHTS
        if args.tune:
            train.retune(folder, train.load_takes_list(takes, _progress(0, "take", "loading")), velocity_only=args.tune == "velocity")
        net, thresholds = train.load_weights(folder), train.load_thresholds(folder)
        head = args.head or file_head(net.heads())
        if head not in net.heads():
            raise PianoedgeError(f"the model in {folder} has no {head} head: train one (pianoedge train --heads offline --init {folder})")

        def transcribe(take):
            data = train.load_takes_list([take])[0]
            return decode.decode(train.posteriors(net, data, head=head), data.lowest, data.fps, thresholds, as_file), data.fps, len(data.strips)

    args.rolls.mkdir(parents=True, exist_ok=True)
    rows = []
    bar = _progress(len(takes), "take", "transcribing")
    for take in takes:
        pred, fps, frames = transcribe(take)
        truth = take.notes()
        rows.append({"take": take.name, **evaluate.score(truth, pred, fps, frames)})
        evaluate.piano_roll_png(args.rolls / f"{take.name}.png", truth, pred, fps, frames, take.name)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    header = ["take", *evaluate.METRICS]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows + [{"take": "mean", **{k: evaluate.mean_of([r[k] for r in rows]) for k in evaluate.METRICS}}]:
        print("| " + " | ".join([row["take"]] + [f"{row[k]:.3f}" for k in evaluate.METRICS]) + " |")
    print(f"piano rolls (prediction against truth): {args.rolls}/")
    return 0


def cmd_transcribe(args: argparse.Namespace) -> int:
    from pianoedge.runtime.transcribe import Outputs, transcribe

    outputs = Outputs(args.output, args.audio, args.mux, args.csv, args.roll)
    notes = transcribe(args.video, outputs, args.lock, args.keys, args.backend, args.soundfont, _progress)
    written = ", ".join(str(p) for p in (outputs.midi, outputs.audio, outputs.mux, outputs.csv, outputs.roll) if p)
    print(f"{len(notes)} notes; wrote {written}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from pianoedge.runtime import live

    if args.config:
        from pianoedge.runtime.config import merge, read_config

        merge(args, read_config(args.config))
    if args.camera is None and args.source is None:
        raise PianoedgeError("run needs a source: --camera N or --source URI (or camera/source in --config)")
    if not args.midi_out:
        raise PianoedgeError("run needs at least one --midi-out SINK (or midi_out in --config), e.g. --midi-out usb")
    source = str(args.camera) if args.camera is not None else args.source
    result = live.run(source, args.midi_out, args.lock, args.keys, args.backend, args.seconds, live.StatusLine(),
                      rtp_allow=args.rtp_allow or None, head="offline" if args.look_ahead else "live")
    print(f"{result['frames']} frames, {result['notes']} notes, {result['dropped']} dropped; every note ended in: "
          + ", ".join(args.midi_out))
    return 0


def cmd_profile(args: argparse.Namespace) -> int:
    from pianoedge.runtime import profiler

    source = str(args.video) if args.video else (str(args.camera) if args.camera is not None else args.source)
    report = profiler.profile(source, args.backend, args.seconds, args.midi_out, args.lock)
    print("\n".join(profiler.table(report)))
    if args.json:
        profiler.write_json(report, args.json)
        print(f"raw numbers: {args.json}")
    if args.plot:
        profiler.plot(report, args.plot)
        print(f"latency histogram and timeline: {args.plot}")
    return 0


def cmd_benchmark(args: argparse.Namespace) -> int:
    from pianoedge.runtime import profiler

    rows = profiler.benchmark(args.video, args.lock)
    print(f"{args.video}: every backend on this machine ({profiler.machine()['cpu']}), {rows[0]['frames']} frames, "
          f"{profiler.WARMUP_FRAMES} warm-up frames excluded\n")
    print("\n".join(profiler.benchmark_table(rows)))
    return 0


def cmd_bundle(args: argparse.Namespace) -> int:
    from pianoedge.deploy.bundle import write_bundle

    index = write_bundle(args.output, args.lock, args.config)
    print(f"wrote {args.output}: {len(index['files'])} files, each with its sha256 in manifest.json")
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from pianoedge.deploy import doctor
    from pianoedge.runtime.manifest import MANIFEST

    config_path = args.config or (doctor.SERVICE_CONFIG if doctor.SERVICE_CONFIG.is_file() else None)
    if config_path:
        from pianoedge.runtime.config import merge, read_config

        merge(args, read_config(config_path))  # the same rule as run: the command line wins
    source = str(args.camera) if args.camera is not None else args.source
    checks = doctor.diagnose(source, args.lock, args.manifest or MANIFEST)
    print("\n".join(doctor.report(checks)))
    return 1 if any(not c.ok for c in checks) else 0


def cmd_export(args: argparse.Namespace) -> int:
    from pianoedge.export import exporter

    precision = args.precision or ("fp16" if args.format == "trt" else "int8")
    if args.format == "onnx" and precision == "fp16":
        raise PianoedgeError("--precision fp16 is for TensorRT engines (--format trt); ONNX Runtime on CPU runs fp32 or int8")
    manifest = exporter.export(args.model, args.output, args.format, precision, args.calib, args.val, _progress)
    print("\n".join(exporter.table(manifest, args.output)))
    print(f"manifest: {args.output / 'manifest.json'} (default backend: {manifest['default']})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pianoedge", description="Muted piano video in; MIDI with velocities and audio out.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    synth = sub.add_parser("synth", help="render MIDI performances into labelled piano video (the studio)",
                           description="Render each MIDI file into a take (NAME.mp4/.mid/.json/.npz), or with "
                                       "--generate N a whole training set from the music21 corpus and exercises.")
    synth.add_argument("midi", nargs="*", metavar="MIDI", help="MIDI performances to render")
    synth.add_argument("-o", "--output", required=True, type=Path, metavar="DIR", help="folder for the takes")
    synth.add_argument("--seed", type=int, default=0, help="random seed: same seed, same bytes (default 0)")
    synth.add_argument("--keys", type=int, choices=(61, 76, 88), help="keyboard size (default: random among sizes that fit)")
    synth.add_argument("--view", choices=("overhead", "stand", "oblique", "yawed"), help="camera position (default: random)")
    synth.add_argument("--piano", choices=("acoustic", "digital"), help="instrument (default: random)")
    synth.add_argument("--resolution", metavar="WxH", help="frame size, e.g. 1280x720 (default: random 480p..1080p)")
    synth.add_argument("--fps", type=float, help="frame rate (default: random 24..60)")
    synth.add_argument("--generate", type=int, metavar="N", help="build N takes from corpus pieces and exercises")
    synth.add_argument("--seconds", type=float, default=20.0, help="length of each generated take (default 20)")
    synth.add_argument("--workers", type=int, help="parallel renderers for --generate and --relabel (default: one per core)")
    synth.add_argument("--relabel", action="store_true",
                       help="add the labels this version writes (the keys' own change) to the studio takes already in -o DIR, "
                            "each planned again from its MIDI and seed")
    synth.set_defaults(func=cmd_synth)

    lock = sub.add_parser("lock", help="find the keyboard once and write lock.json",
                          description="Find which key is where (with hands on the keys is fine) and write the fixed "
                                      "homography to the canonical strip as lock.json.")
    source = lock.add_mutually_exclusive_group(required=True)
    source.add_argument("--image", type=Path, metavar="IMG", help="a still frame")
    source.add_argument("--video", type=Path, metavar="VIDEO", help="a video: frames across it are combined")
    source.add_argument("--camera", type=int, metavar="N", help="a V4L2 camera index")
    lock.add_argument("-o", "--output", required=True, type=Path, metavar="lock.json")
    lock.add_argument("--keys", type=int, choices=(61, 76, 88), help="keyboard size (default: detected)")
    lock.add_argument("--k1", type=float, help="lens radial distortion k1 if known (default: estimated; 0 turns it off)")
    lock.set_defaults(func=cmd_lock)

    tr = sub.add_parser("train", help="train the keypress and velocity model on takes (host, torch)",
                        description="Train PianoNet on folders of takes (studio or real: NAME.mp4 + NAME.mid [+ .json]). "
                                    "Resumes from RUN_DIR/checkpoint.pt; logs RUN_DIR/metrics.jsonl per epoch.")
    tr.add_argument("--data", required=True, action="append", type=Path, metavar="DIR", help="folder of training takes (repeatable)")
    tr.add_argument("--val", action="append", type=Path, metavar="DIR", help="folder of validation takes (repeatable)")
    tr.add_argument("-o", "--output", required=True, type=Path, metavar="RUN_DIR")
    tr.add_argument("--epochs", type=int, default=12)
    tr.add_argument("--steps", type=int, default=150, help="steps per epoch (default 150)")
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--lr", type=float, default=3e-3, help="peak learning rate (cosine decay; default 3e-3)")
    tr.add_argument("--init", type=Path, metavar="DIR", help="start from the weights in DIR (fine-tuning; default: from scratch)")
    tr.add_argument("--heads", choices=("all", "offline"), default="all",
                    help="all (the trunk, the live and the offline head; default) or offline (only the offline head, which "
                         "looks a few frames ahead for files, on the --init model's frozen trunk)")
    tr.add_argument("--width", type=int, choices=(1, 2, 3, 4),
                    help="trunk width: its blocks' channels times this (default: the --init model's, else 1, the shipped "
                         "model's); an --init model is widened to it first, computing what it did, and trained on from there")
    tr.add_argument("--key-change-weight", type=float, metavar="W",
                    help="weight of the trunk's side task on studio takes with the key_change label: say what the keys "
                         "alone change, hands removed (default: models.train.Settings', off)")
    tr.add_argument("--arch", choices=("pianonet", "seed"), default="pianonet",
                    help="pianonet (ours, default) or seed (the seed paper's four CNNs and LSTMs, the baseline)")
    tr.set_defaults(func=cmd_train)

    ev = sub.add_parser("eval", help="score the model on takes: frame/note/velocity metrics and piano rolls",
                        description="Transcribe each take with the model (through its labelled or found lock) and score "
                                    "it with mir_eval as CONTRACTS.md says; writes a piano-roll PNG per take.")
    ev.add_argument("--data", required=True, action="append", type=Path, metavar="DIR")
    ev.add_argument("--model", type=Path, metavar="DIR",
                    help="folder with pianonet.pt + pianonet.json, or seed.pt for the seed-paper baseline (default: the shipped model)")
    ev.add_argument("--rolls", type=Path, default=Path("eval-rolls"), metavar="DIR", help="where the piano-roll PNGs go")
    ev.add_argument("--backend", metavar="NAME",
                    help="score an exported artifact from models/manifest.json instead (ort, ort-int8), as the runtime runs it")
    ev.add_argument("--tune", nargs="?", const="all", choices=("all", "velocity"),
                    help="first tune the PianoNet decoder on these takes (e.g. your own piano): its thresholds and the line "
                         "from velocity output to MIDI velocity (--tune velocity: the line only), stored in the model's "
                         "pianonet.json; the scores are then on the takes tuned on")
    ev.add_argument("--head", choices=("live", "offline"),
                    help="which PianoNet head to score: offline (looks ahead, what transcribe uses; the default where the model "
                         "has one) or live (causal, what run uses: notes start on the frame that decided them, as run sends "
                         "them, not at their onset posterior's peak as transcribe writes them)")
    ev.set_defaults(func=cmd_eval)

    rn = sub.add_parser("run", help="live: camera (or video) in, MIDI out, until stopped",
                        description="Lock onto the keyboard (or use --lock), then turn every frame into note events for "
                                    "each --midi-out sink; Ctrl-C or SIGTERM stops it with every note turned off.")
    where = rn.add_mutually_exclusive_group()
    where.add_argument("--camera", type=int, metavar="N", help="a V4L2 camera index")
    where.add_argument("--source", metavar="PATH_OR_URI", help="a video path, file://PATH, v4l2:///dev/videoN, csi://N, picam://N")
    rn.add_argument("--midi-out", action="append", default=[], metavar="SINK",
                    help="usb, usb:NAME, rtp://HOST:PORT or file:OUT.mid (several allowed)")
    rn.add_argument("--rtp-allow", action="append", default=[], metavar="ADDR",
                    help="who may join a listening rtp://0.0.0.0:PORT session: an address or network, e.g. 192.168.1.0/24 "
                         "(several allowed; default: this machine only)")
    rn.add_argument("--config", type=Path, metavar="config.toml", help="options from a file (the service's /etc/pianoedge/config.toml); "
                                                                        "the command line overrides it")
    rn.add_argument("--lock", type=Path, metavar="lock.json", help="a lock made by pianoedge lock (default: lock now)")
    rn.add_argument("--keys", type=int, choices=(61, 76, 88), help="keyboard size (default: detected)")
    rn.add_argument("--backend", metavar="NAME", help="ort, ort-int8 or torch (default: the manifest's default)")
    rn.add_argument("--seconds", type=float, help="stop after this long (default: run until the source ends or Ctrl-C)")
    rn.add_argument("--look-ahead", action="store_true", default=None,
                    help="decide each frame's notes with the frames after it seen too (the model's offline head, as transcribe "
                         "does): more accurate, and each note comes that look-ahead later (2 context frames, about 67 ms)")
    rn.set_defaults(func=cmd_run)

    tx = sub.add_parser("transcribe", help="muted piano video in; MIDI with velocities (and audio, muxed video) out",
                        description="Lock onto the keyboard (or use --lock), run the live pipeline over every frame of "
                                    "the video and write the notes as MIDI; optionally render them with FluidSynth and "
                                    "put that audio back into the video.")
    tx.add_argument("video", type=Path, metavar="VIDEO", help="any video OpenCV reads (mp4/avi/mkv, any size and frame rate)")
    tx.add_argument("-o", "--output", required=True, type=Path, metavar="OUT.mid")
    tx.add_argument("--audio", type=Path, metavar="OUT.wav", help="also render the notes to audio (FluidSynth, General MIDI piano)")
    tx.add_argument("--mux", type=Path, metavar="OUT.mp4", help="also write the video with the regenerated audio track")
    tx.add_argument("--csv", type=Path, metavar="OUT.csv", help="also write the notes as CSV (onset, offset, pitch, velocity)")
    tx.add_argument("--roll", type=Path, metavar="OUT.png", help="also draw the notes as a piano roll")
    tx.add_argument("--lock", type=Path, metavar="lock.json", help="a lock made by pianoedge lock (default: lock on the video)")
    tx.add_argument("--keys", type=int, choices=(61, 76, 88), help="keyboard size (default: detected)")
    tx.add_argument("--backend", metavar="NAME", help="ort, ort-int8 or torch (default: the manifest's default)")
    tx.add_argument("--soundfont", type=Path, metavar="FILE.sf2", help="SoundFont for --audio/--mux (default: an installed GM one)")
    tx.set_defaults(func=cmd_transcribe)

    pr = sub.add_parser("profile", help="time the real pipeline per stage on a video or camera; JSON and a latency plot",
                        description="Run the live loop (lock, warp, inference, decode, sinks) and report p50/p90/p99/max per "
                                    "stage, processing and end to end, fps against the source, dropped frames, CPU and memory.")
    where = pr.add_mutually_exclusive_group(required=True)
    where.add_argument("--video", type=Path, metavar="VIDEO")
    where.add_argument("--camera", type=int, metavar="N")
    where.add_argument("--source", metavar="URI", help="file://PATH, v4l2:///dev/videoN, csi://N, picam://N")
    pr.add_argument("--backend", metavar="NAME", help="ort, ort-int8 or torch (default: the manifest's default)")
    pr.add_argument("--seconds", type=float, help="stop after this long (a camera runs until Ctrl-C otherwise)")
    pr.add_argument("--json", type=Path, metavar="OUT.json", help="the report with every raw per-frame time")
    pr.add_argument("--plot", type=Path, metavar="OUT.png", help="latency histogram and per-frame timeline")
    pr.add_argument("--midi-out", action="append", default=[], metavar="SINK", help="also time real sinks (default: MIDI bytes only)")
    pr.add_argument("--lock", type=Path, metavar="lock.json")
    pr.set_defaults(func=cmd_profile)

    bm = sub.add_parser("benchmark", help="every backend on one clip: latency and accuracy side by side",
                        description="Run the pipeline with each available backend (torch eager as the reference, ONNX "
                                    "Runtime FP32 and INT8) on the same clip; accuracy when a MIDI file lies beside it.")
    bm.add_argument("--video", type=Path, default=Path(__file__).resolve().parent.parent / "examples" / "maple_leaf_rag.mp4",
                    metavar="VIDEO", help="default: the bundled example take")
    bm.add_argument("--lock", type=Path, metavar="lock.json")
    bm.set_defaults(func=cmd_benchmark)

    bd = sub.add_parser("bundle", help="models, lock and config in one tar.gz with a sha256 for every file (for a board)")
    bd.add_argument("-o", "--output", required=True, type=Path, metavar="FILE.tar.gz")
    bd.add_argument("--lock", type=Path, metavar="lock.json")
    bd.add_argument("--config", type=Path, metavar="config.toml")
    bd.set_defaults(func=cmd_bundle)

    dr = sub.add_parser("doctor", help="check camera, lock, models, backends, MIDI gadget and ports, clock and disk",
                        description="Check everything `run` needs and print each problem with its fix; exit 1 if any.")
    dr.add_argument("--camera", type=int, metavar="N")
    dr.add_argument("--source", metavar="URI")
    dr.add_argument("--lock", type=Path, metavar="lock.json")
    dr.add_argument("--config", type=Path, metavar="config.toml",
                    help="take the camera and lock from this config (default: the service's /etc/pianoedge/config.toml if present)")
    dr.add_argument("--manifest", type=Path, metavar="manifest.json", help="model manifest (default: the installed models)")
    dr.set_defaults(func=cmd_doctor)

    ex = sub.add_parser("export", help="PianoNet to ONNX (FP32 + INT8) or TensorRT, verified, timed and scored",
                        description="Export the model's graphs (features, live and offline heads) to ONNX (checked, simplified, parity against PyTorch), "
                                    "quantise to INT8 QDQ calibrated on --calib takes (the method chosen by onset F1 on "
                                    "--val), build TensorRT engines where TensorRT is installed, and write manifest.json "
                                    "with every artifact's sha256, accuracy and latency.")
    ex.add_argument("--model", type=Path, metavar="DIR", help="folder with pianonet.pt + pianonet.json (default: the shipped model)")
    ex.add_argument("--format", choices=("onnx", "trt"), default="onnx")
    ex.add_argument("--precision", choices=("fp32", "fp16", "int8"),
                    help="fp32, int8 (also writes fp32; the default for onnx) or fp16 (TensorRT only; its default)")
    ex.add_argument("--calib", action="append", type=Path, metavar="DIR", help="takes to calibrate INT8 on (your own piano, light)")
    ex.add_argument("--val", action="append", type=Path, metavar="DIR", help="takes to score every artifact on")
    ex.add_argument("-o", "--output", required=True, type=Path, metavar="OUT_DIR",
                    help="where onnx/ and manifest.json go (models to ship them with the package)")
    ex.set_defaults(func=cmd_export)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(format="pianoedge: warning: %(message)s", level=logging.WARNING)  # sinks report outages here
    if not args.debug:  # our own message says what is wrong with a video; FFmpeg's demuxer chatter would only confuse
        os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
        os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
    try:
        return args.func(args)
    except PianoedgeError as exc:
        if args.debug:
            raise
        print(f"pianoedge: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("pianoedge: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into a reader that stopped early (e.g. `| head`)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
