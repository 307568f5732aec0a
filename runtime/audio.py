"""Regenerated audio: MIDI -> WAV with FluidSynth and a General MIDI SoundFont, and the WAV muxed back
into the original video with ffmpeg (H.264 untouched, AAC audio, browser-playable).

Both are the real programs (Debian: ``fluidsynth``, ``timgm6mb-soundfont`` or ``fluid-soundfont-gm``,
``ffmpeg``), run as subprocesses: no library renders SoundFonts as well as FluidSynth itself.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from pianoedge.errors import PianoedgeError
from pianoedge.video import find_ffmpeg

SOUNDFONT_DIRS = ("/usr/share/sounds/sf2", "/usr/share/soundfonts", "/usr/local/share/soundfonts")
PREFERRED = ("TimGM6mb.sf2", "FluidR3_GM.sf2", "default-GM.sf2")  # small first: the piano is what matters
SAMPLE_RATE = 44100


def find_soundfont(explicit: str | Path | None = None) -> Path:
    """The SoundFont to use: ``explicit``, else $PIANOEDGE_SOUNDFONT, else an installed General MIDI one."""
    chosen = explicit or os.environ.get("PIANOEDGE_SOUNDFONT")
    if chosen:
        if not Path(chosen).is_file():
            raise PianoedgeError(f"SoundFont not found: {chosen}")
        return Path(chosen)
    for folder in SOUNDFONT_DIRS:
        for name in PREFERRED:
            if (Path(folder) / name).is_file():
                return Path(folder) / name
        found = sorted(Path(folder).glob("*.sf2")) if Path(folder).is_dir() else []
        if found:
            return found[0]
    raise PianoedgeError("no General MIDI SoundFont found: install one (apt-get install timgm6mb-soundfont) "
                         "or pass --soundfont FILE.sf2")


def render_wav(midi: str | Path, wav: str | Path, soundfont: str | Path | None = None) -> Path:
    """Render a MIDI file to a 44.1 kHz stereo WAV with FluidSynth (faster than real time, no sound card)."""
    program = shutil.which("fluidsynth")
    if program is None:
        raise PianoedgeError("fluidsynth not found: install it (apt-get install fluidsynth) to render audio")
    font = find_soundfont(soundfont)
    cmd = [program, "-ni", "-q", "-g", "0.8", "-r", str(SAMPLE_RATE), "-F", str(wav), str(font), str(midi)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0 or not Path(wav).is_file():
        raise PianoedgeError(f"fluidsynth could not render {midi}: {(done.stderr or done.stdout).strip() or 'unknown error'}")
    return Path(wav)


def mux(video: str | Path, wav: str | Path, out: str | Path) -> Path:
    """The original video with the regenerated audio as its only sound track, in sync from time 0 and
    exactly as long as the video (the audio padded with silence or cut)."""
    cmd = [find_ffmpeg(), "-loglevel", "error", "-y", "-i", str(video), "-i", str(wav), "-map", "0:v:0", "-map", "1:a:0",
           "-c:v", "copy", "-af", "apad", "-c:a", "aac", "-b:a", "160k", "-shortest", "-movflags", "+faststart", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        # a stream copy fails for codecs MP4 cannot hold: re-encode the picture to H.264
        cmd[cmd.index("copy")] = "libx264"
        done = subprocess.run(cmd[:-1] + ["-pix_fmt", "yuv420p", str(out)], capture_output=True, text=True)
    if done.returncode != 0:
        raise PianoedgeError(f"ffmpeg could not write {out}: {done.stderr.strip() or 'unknown error'}")
    return Path(out)
