"""Where listen's audio comes from: blocks of (frames, channels) float32 at the source's own rate.

A recording read block by block, raw PCM from stdin, or a microphone through PortAudio
(sounddevice, the optional [listen] extra: imported only when a device is asked for). No torch.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from tfsep_edge.core.errors import TfsepError, check_at_least_one, first_line
from tfsep_edge.signal.audio import open_audio_file, unreadable_audio

BLOCK_SECONDS = 0.1  # read size of file and stdin sources: the latency a live pipe adds
# Raw PCM on stdin: numpy dtype and the divisor libsndfile uses, so that `sox f.wav -t raw - |`
# gives the same float samples as reading f.wav.
PCM_FORMATS = {"s16le": ("<i2", 32768.0), "s32le": ("<i4", 2147483648.0), "f32le": ("<f4", 1.0)}
LIVE_RATES = (48_000, 44_100, 32_000, 16_000, 8_000)  # tried after the device's own rate
LISTEN_HINT = "pip install 'tfsep-edge[listen]'"


def check_pcm(pcm_format: str, rate: int | None, channels: int | None) -> None:
    if pcm_format not in PCM_FORMATS:
        raise TfsepError(f"--format {pcm_format}: must be one of {', '.join(PCM_FORMATS)}")
    if rate is None:
        raise TfsepError("--input -: raw PCM has no header; give its sample rate, e.g. --rate 48000")
    check_at_least_one("--rate", rate)
    check_at_least_one("--channels", channels)


class FileSource:
    """A recording read block by block (never whole)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.name = str(path)
        self._file = open_audio_file(self.path)
        self.rate, self.channels = self._file.samplerate, self._file.channels

    def blocks(self) -> Iterator[np.ndarray]:
        frames = max(1, int(self.rate * BLOCK_SECONDS))
        with self._file as f:
            while True:
                try:
                    block = f.read(frames, dtype="float32", always_2d=True)
                except Exception as exc:  # data that stops decoding part-way
                    raise unreadable_audio(self.path, exc) from None
                if not len(block):
                    return
                yield block

    def check_end(self) -> None:
        """Nothing can be wrong with how a file ended: soundfile reads whole frames."""


class StdinSource:
    """Raw interleaved PCM from a pipe (`arecord -t raw`, `sox ... -t raw -`)."""

    name = "stdin"

    def __init__(self, rate: int, channels: int, pcm_format: str, stream=None):
        self.rate, self.channels, self.pcm_format = rate, channels, pcm_format
        self._stream = stream if stream is not None else sys.stdin.buffer
        if self._stream.isatty():
            raise TfsepError(
                f"--input -: stdin is a terminal; pipe raw {pcm_format} PCM into it, e.g. "
                f"arecord -f S16_LE -r {rate} -c {channels} -t raw | tfsep-edge listen MODEL - --rate {rate}"
            )
        dtype, self._scale = PCM_FORMATS[pcm_format]
        self._dtype = np.dtype(dtype)
        self.frame_bytes = self._dtype.itemsize * channels
        self._carry = b""

    def blocks(self) -> Iterator[np.ndarray]:
        want = self.frame_bytes * max(1, int(self.rate * BLOCK_SECONDS))
        self._carry = b""
        while True:
            data = self._stream.read(want)
            if not data:
                break
            data = self._carry + data
            usable = len(data) - len(data) % self.frame_bytes
            self._carry = data[usable:]
            if usable:
                yield self._decode(data[:usable])

    def check_end(self) -> None:
        """TfsepError if the stream stopped inside a frame (called after its last windows)."""
        if self._carry:
            raise TfsepError(
                f"stdin: ended mid-sample ({len(self._carry)} bytes left over, not a whole {self.frame_bytes}-byte "
                f"frame of {self.pcm_format} x {self.channels} channels); check --format and --channels"
            )

    def _decode(self, data: bytes) -> np.ndarray:
        samples = np.frombuffer(data, dtype=self._dtype).reshape(-1, self.channels)
        if self._scale == 1.0:
            return samples.astype(np.float32)
        return (samples.astype(np.float32) / np.float32(self._scale)).astype(np.float32, copy=False)


def import_sounddevice():
    """The sounddevice module, or a one-line TfsepError saying what to install."""
    try:
        import sounddevice
    except ImportError:
        raise TfsepError(f"live audio needs sounddevice; install it with: {LISTEN_HINT}") from None
    except OSError as exc:  # the module is there, the PortAudio library is not
        raise TfsepError(
            f"sounddevice cannot load PortAudio ({first_line(exc)}); install it: sudo apt install libportaudio2"
        ) from None
    return sounddevice


def list_input_devices(sd) -> list[dict]:
    default = sd.default.device[0] if isinstance(sd.default.device, (list, tuple)) else sd.default.device
    return [
        {
            "index": d["index"],
            "name": d["name"],
            "channels": d["max_input_channels"],
            "rate": int(d["default_samplerate"]),
            "default": d["index"] == default,
        }
        for d in sd.query_devices()
        if d["max_input_channels"] > 0
    ]


class DeviceSource:
    """A microphone through PortAudio, at the device's own rate (or the first rate it opens at)."""

    LIST_HINT = "list them with `tfsep-edge listen --list-devices`"

    def __init__(self, sd, spec: str | None, channels: int | None = None, rate: int | None = None):
        self.sd = sd
        self.spec = "default" if spec is None else spec
        info = self._query(spec)
        self.index, self.name = info["index"], info["name"]
        # Virtual ALSA devices (pulse, default) claim 32 or more channels: take 2 of those.
        native = info["max_input_channels"]
        self.channels = channels or (native if native <= 8 else 2)
        self.rate = self._pick_rate(info, rate)
        self.overflows = 0
        self._stream = None

    def _query(self, spec: str | None) -> dict:
        key = int(spec) if spec is not None and spec.strip().isdigit() else spec
        try:
            return dict(self.sd.query_devices(key, kind="input"))
        except Exception as exc:  # ValueError (no such name/index, not an input), PortAudioError
            reason = first_line(exc)
            raise TfsepError(f"--device {self.spec}: no such input device ({reason}); {self.LIST_HINT}") from None

    def _pick_rate(self, info: dict, requested: int | None) -> int:
        rates = [requested] if requested else list(dict.fromkeys([int(info["default_samplerate"]), *LIVE_RATES]))
        for rate in rates:
            try:
                self.sd.check_input_settings(
                    device=self.index, channels=self.channels, dtype="float32", samplerate=rate
                )
                return rate
            except Exception:  # PortAudioError: invalid sample rate / channel count
                continue
        raise TfsepError(
            f"--device {self.spec} ({self.name}): does not open at {', '.join(map(str, rates))} Hz with "
            f"{self.channels} channels; another program may hold it, or pick another: {self.LIST_HINT}"
        )

    def start(self, push: Callable[[np.ndarray], None], fail: Callable[[BaseException], None]) -> None:
        def callback(indata, frames, time_info, status):
            if status.input_overflow:
                self.overflows += 1
            try:
                push(indata)
            except BaseException as exc:  # noqa: BLE001 -- handed to the main thread, which raises it
                fail(exc)
                raise self.sd.CallbackAbort from None

        try:
            self._stream = self.sd.InputStream(
                device=self.index, samplerate=self.rate, channels=self.channels, dtype="float32", callback=callback
            )
            self._stream.start()
        except Exception as exc:  # PortAudioError: device busy, unplugged since the query
            raise TfsepError(
                f"--device {self.spec} ({self.name}): cannot start recording ({first_line(exc)}); {self.LIST_HINT}"
            ) from None

    def alive(self) -> bool:
        return self._stream is not None and self._stream.active

    def stop(self) -> None:
        if self._stream is not None:
            self._stream.abort(ignore_errors=True)
            self._stream.close(ignore_errors=True)


def open_source(device: str | None, input_: str | None, rate, channels, pcm_format: str):
    """The source the options name: a file, stdin (`-`) or a device (the default one if neither)."""
    if input_ is not None and device is not None:
        raise TfsepError("give either --device (a microphone) or --input (a file, or - for stdin), not both")
    if input_ == "-":
        check_pcm(pcm_format, rate, 1 if channels is None else channels)
        return StdinSource(rate, channels or 1, pcm_format)
    if input_ is not None:
        if rate is not None or channels is not None:
            raise TfsepError(f"--rate/--channels are for raw PCM (--input -) and devices; {input_} says its own")
        return FileSource(input_)
    check_at_least_one("--rate", rate)
    check_at_least_one("--channels", channels)
    return DeviceSource(import_sounddevice(), device, channels, rate)
