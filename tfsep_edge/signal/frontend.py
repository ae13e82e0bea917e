"""The log-mel front end, defined once; a FrontendConfig gives its numbers.

The default (preset "cpjku"), CP-JKU's DCASE22 set-up as the TF-SepNet report uses it:
pre-emphasis (x[n+1] - 0.97 x[n]), centred STFT (reflect padding) with a symmetric 2048-sample
Hann window, hop 744, power spectrum, 128 Kaldi-style mel bands (triangles on the
1127 ln(1 + f/700) scale, 0-16 kHz, Nyquist bin zero), log(x + 1e-5), then (x + 4.5) / 5.
Preset "cpmel" (the authors' later CpMel) is the same recipe with n_fft 4096, a 3072-sample
window centred in it, hop 500 and 512 bands. Presets: tfsep_edge.core.config.FRONTENDS.

`mel_filterbank` and `analysis_window` are the single source of the constants; `log_mel` (numpy,
for the torch-free runtime) and `log_mel_torch` (training, calibration, ONNX export) both use
them and are tested equal. `log_mel_reference` is the straightforward float64 version, kept as
the yardstick for correctness tests and the front-end benchmark.
"""

from __future__ import annotations

import os
import threading
from functools import lru_cache

import numpy as np

from tfsep_edge.core.config import DEFAULT_FRONTEND, FrontendConfig


def _kaldi_mel(freq: np.ndarray) -> np.ndarray:
    return 1127.0 * np.log1p(freq / 700.0)


@lru_cache(maxsize=8)
def mel_filterbank(cfg: FrontendConfig = DEFAULT_FRONTEND) -> np.ndarray:
    """(n_mels, n_fft // 2 + 1) float32 Kaldi mel filterbank (as torchaudio's get_mel_banks,
    padded with a zero column for the Nyquist bin).

    Computed in float64 and rounded once; torchaudio computes the bins' mel values in float32,
    which moves a weight by at most a few 1e-5 (tests/test_frontend_presets.py).
    """
    if cfg.mel_banks != "kaldi":  # FrontendConfig admits only MEL_BANKS; a new kind needs its code here
        raise ValueError(f"mel_banks={cfg.mel_banks!r}: no filterbank code for it")
    n_bins = cfg.n_fft // 2
    mel_lo, mel_hi = _kaldi_mel(np.float64(cfg.fmin)), _kaldi_mel(np.float64(cfg.fmax))
    delta = (mel_hi - mel_lo) / (cfg.n_mels + 1)
    idx = np.arange(cfg.n_mels, dtype=np.float64)[:, None]
    left, center, right = mel_lo + idx * delta, mel_lo + (idx + 1) * delta, mel_lo + (idx + 2) * delta
    mel = _kaldi_mel(cfg.sample_rate / cfg.n_fft * np.arange(n_bins, dtype=np.float64))[None, :]
    up = (mel - left) / (center - left)
    down = (right - mel) / (right - center)
    banks = np.maximum(0.0, np.minimum(up, down))
    out = np.zeros((cfg.n_mels, n_bins + 1), dtype=np.float32)
    out[:, :n_bins] = banks
    out.setflags(write=False)
    return out


@lru_cache(maxsize=8)
def hann_window(length: int, periodic: bool = False) -> np.ndarray:
    """float32 Hann window as torch.hann_window(length, periodic=periodic): symmetric by default."""
    w = (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(length) / (length if periodic else length - 1))).astype(np.float32)
    w.setflags(write=False)
    return w


def analysis_window(cfg: FrontendConfig = DEFAULT_FRONTEND) -> np.ndarray:
    """The STFT window of `cfg` (win_length points; torch.stft centres it in n_fft)."""
    return hann_window(cfg.win_length, cfg.window_periodic)


@lru_cache(maxsize=8)
def _mel_blocks(cfg: FrontendConfig, rows_per_block: int = 16) -> tuple:
    """Split the filterbank into row blocks, each with the bin range its triangles cover.

    The triangles are banded, so 8 small dense products touch ~1/7 of the dense matrix.
    """
    fb = mel_filterbank(cfg)
    blocks = []
    for r0 in range(0, fb.shape[0], rows_per_block):
        r1 = min(r0 + rows_per_block, fb.shape[0])
        nz = np.nonzero(fb[r0:r1].any(axis=0))[0]
        # An all-zero block keeps an empty bin range: its product writes the zeros those bands hold.
        b0, b1 = (int(nz[0]), int(nz[-1]) + 1) if nz.size else (0, 0)
        blocks.append((r0, r1, b0, b1, np.ascontiguousarray(fb[r0:r1, b0:b1].T)))
    return tuple(blocks)


def _preemphasize_padded(wave: np.ndarray, cfg: FrontendConfig, buf: np.ndarray) -> None:
    """Pre-emphasis written into `buf` (..., n - 1 + 2 * (n_fft // 2)) with reflect padding at both ends
    (torch.stft(center=True, pad_mode="reflect")), in buf's dtype."""
    n = wave.shape[-1] - 1  # samples after pre-emphasis
    pad = cfg.n_fft // 2
    if n < pad + 2:
        raise ValueError(f"{n + 1} samples: too short for a centred {cfg.n_fft}-point STFT (reflect padding)")
    body = buf[..., pad : pad + n]
    np.multiply(wave[..., :-1], -cfg.preemphasis, out=body)
    body += wave[..., 1:]
    buf[..., :pad] = body[..., pad:0:-1]  # reflect: x[pad], ..., x[1]
    buf[..., pad + n :] = body[..., n - 2 : n - 2 - pad : -1]  # x[n-2], ..., x[n-1-pad]


def _frame_view(buf: np.ndarray, cfg: FrontendConfig) -> np.ndarray:
    """(..., n_frames, n_fft) read-only strided view of a padded buffer: frame t starts at t * hop."""
    n_frames = 1 + (buf.shape[-1] - 2 * (cfg.n_fft // 2)) // cfg.hop_length
    step = buf.strides[-1]
    return np.lib.stride_tricks.as_strided(
        buf, buf.shape[:-1] + (n_frames, cfg.n_fft), buf.strides[:-1] + (cfg.hop_length * step, step), writeable=False
    )


@lru_cache(maxsize=8)
def _padded_window(cfg: FrontendConfig) -> np.ndarray:
    """The float32 window, centred in n_fft points as torch.stft centres a shorter one."""
    window = analysis_window(cfg)
    if cfg.win_length != cfg.n_fft:
        offset = (cfg.n_fft - cfg.win_length) // 2
        window = np.pad(window, (offset, cfg.n_fft - cfg.win_length - offset))
    window.setflags(write=False)
    return window


def _frames(
    wave: np.ndarray, cfg: FrontendConfig, buf: np.ndarray | None = None, out: np.ndarray | None = None
) -> np.ndarray:
    """Pre-emphasised, reflect-padded, windowed frames: (..., n_frames, n_fft) in wave's dtype.

    Written into one padded buffer and framed by a strided view: no np.pad, no copies
    besides the windowing product. `buf` and `out` are optional preallocated buffers.
    """
    if buf is None:
        buf = np.empty(wave.shape[:-1] + (wave.shape[-1] - 1 + 2 * (cfg.n_fft // 2),), dtype=wave.dtype)
    _preemphasize_padded(wave, cfg, buf)
    frames = _frame_view(buf, cfg)
    return np.multiply(frames, _padded_window(cfg).astype(frames.dtype), out=out)


# --- the FFT step: scipy.fft when installed, else numpy's -----------------------------------
#
# Both in float32. numpy's pocketfft transforms one row at a time; scipy.fft's transforms several
# rows at once with SIMD, about 1.7x faster for a clip's 44 frames (docs/frontend.md has the
# measurements). scipy is optional (the `fast` extra): without it, or with TFSEP_EDGE_FFT=numpy,
# numpy does the FFT.
FFT_ENV = "TFSEP_EDGE_FFT"
FFT_BACKENDS = ("numpy", "scipy")
_RFFT_HAS_OUT = np.lib.NumpyVersion(np.__version__) >= "2.0.0"
_backend_lock = threading.Lock()
_backend: list[str] = []  # resolved once: ["numpy"] or ["scipy"]
_FFT_ROWS = 48  # numpy transforms at most this many frames per call (a 1-s clip has 44)


def fft_backend() -> str:
    """Which FFT log_mel uses: TFSEP_EDGE_FFT (numpy | scipy), else scipy.fft if importable, else numpy."""
    if not _backend:
        with _backend_lock:
            if not _backend:
                _backend.append(_resolve_backend(os.environ.get(FFT_ENV, "").strip().lower()))
    return _backend[0]


def _resolve_backend(wanted: str) -> str:
    if wanted not in ("", *FFT_BACKENDS):
        raise ValueError(f"{FFT_ENV}={wanted}: must be one of {', '.join(FFT_BACKENDS)} (or unset)")
    if wanted == "numpy":
        return "numpy"
    try:
        import scipy.fft  # noqa: F401
    except ImportError:
        if wanted == "scipy":
            raise ValueError(f"{FFT_ENV}=scipy, but scipy is not installed (pip install 'tfsep-edge[fast]')") from None
        return "numpy"
    return "scipy"


def set_fft_backend(name: str | None) -> str:
    """Choose the FFT for this process (None: as fft_backend decides); returns the one in use.
    For tests and benchmarks; log_mel's result is the same within the front-end tolerance."""
    with _backend_lock:
        _backend.clear()
        _backend.append(_resolve_backend("" if name is None else name))
    return _backend[0]


def _rfft_rows(frames: np.ndarray, backend: str, out: np.ndarray | None = None) -> np.ndarray:
    """Real FFT of (rows, n_fft) windowed frames; numpy writes into `out` when it can."""
    if backend == "scipy":
        import scipy.fft

        return scipy.fft.rfft(frames, axis=-1, workers=1)
    if not (_RFFT_HAS_OUT and out is not None):
        return np.fft.rfft(frames, axis=-1)
    for r in range(0, len(frames), _FFT_ROWS):  # numpy slows down per row on long batches
        np.fft.rfft(frames[r : r + _FFT_ROWS], axis=-1, out=out[r : r + _FFT_ROWS])
    return out


def fft_frames_call(waves: np.ndarray, cfg: FrontendConfig = DEFAULT_FRONTEND):
    """A no-argument callable running log_mel's FFT step alone on the frames of `waves`
    (..., n_samples), one clip at a time as log_mel does: the benchmark's floor of this front end."""
    backend = fft_backend()
    frames = _frames(np.asarray(waves, dtype=np.float32), cfg)
    frames = frames.reshape((-1,) + frames.shape[-2:])
    spectrum = np.empty(frames.shape[1:-1] + (cfg.n_fft // 2 + 1,), np.complex64)

    def call() -> None:
        for clip in frames:
            _rfft_rows(clip, backend, spectrum)

    return call


class _Workspace:
    """One clip's float32 buffers (padded signal, frames, spectrum, power, mel), reused across calls.

    Allocating them on every call costs page faults and glibc mmap/trim churn, which slowed the
    front end when other work ran in between.
    """

    def __init__(self, n_samples: int, cfg: FrontendConfig, backend: str):
        self.key = (n_samples, cfg, backend)
        n_frames, bins = 1 + (n_samples - 1) // cfg.hop_length, cfg.n_fft // 2 + 1
        self.buf = np.empty(n_samples - 1 + 2 * (cfg.n_fft // 2), np.float32)
        self.frames = np.empty((n_frames, cfg.n_fft), np.float32)
        self.spectrum = np.empty((n_frames, bins), np.complex64)
        self.power = np.empty((n_frames, bins), np.float32)
        self.mel = np.empty((n_frames, cfg.n_mels), np.float32)
        # The config's constants, looked up once here rather than through the caches per clip.
        self.window = _padded_window(cfg)
        self.blocks = _mel_blocks(cfg)


_WORKSPACE = threading.local()
_KEPT_WORKSPACES = 4  # per thread: a process alternating between front ends (bench of two presets) keeps each


def _workspace(n_samples: int, cfg: FrontendConfig, backend: str) -> _Workspace:
    key = (n_samples, cfg, backend)
    ws = getattr(_WORKSPACE, "ws", None)
    if ws is None or ws.key != key:  # the last one used answers the common case without hashing cfg
        kept = _WORKSPACE.__dict__.setdefault("kept", {})
        ws = kept.pop(key, None) or _Workspace(n_samples, cfg, backend)
        kept[key] = ws  # most recently used last
        while len(kept) > _KEPT_WORKSPACES:
            del kept[next(iter(kept))]
        _WORKSPACE.ws = ws
    return ws


def _log_mel_rows(frames: np.ndarray, cfg: FrontendConfig, ws: _Workspace, backend: str, out: np.ndarray) -> None:
    """Windowed frames (rows, n_fft) -> log-mel (n_mels, rows) into `out`.

    Every row goes through the same operations whatever the other rows are, so a frame
    computed alone equals the same frame computed with its whole window (listen's reuse).
    """
    rows = len(frames)
    spectrum = _rfft_rows(frames, backend, ws.spectrum[:rows])
    power = ws.power[:rows]
    np.abs(spectrum, out=power)
    power *= power  # |X|^2: faster than re^2 + im^2 from the spectrum's float view
    if rows == 1:  # one row would go to BLAS's gemv, whose sums differ in the last bit from gemm's
        ws.power[1] = power[0]
        power = ws.power[:2]
    mel = ws.mel[: len(power)]
    for r0, r1, b0, b1, weights in ws.blocks:
        np.matmul(power[:, b0:b1], weights, out=mel[:, r0:r1])
    # (log(mel + offset) + shift) / scale, in place
    mel += np.float32(cfg.log_offset)
    np.log(mel, out=mel)
    mel += np.float32(cfg.norm_shift)
    mel /= np.float32(cfg.norm_scale)
    out[...] = mel[:rows].T


def log_mel(wave: np.ndarray, cfg: FrontendConfig = DEFAULT_FRONTEND) -> np.ndarray:
    """Waveform(s) (..., n_samples) at cfg.sample_rate -> log-mel (..., n_mels, n_frames) float32, contiguous.

    The fast path of the light runtime: one clip at a time through reused buffers, the FFT of
    fft_backend(), |X|^2 from the spectrum's float view, the mel bands as a few banded products.
    """
    wave = np.asarray(wave, dtype=np.float32)
    lead, n_samples = wave.shape[:-1], wave.shape[-1]
    if n_samples - 1 < cfg.n_fft // 2 + 2:
        raise ValueError(f"{n_samples} samples: too short for a centred {cfg.n_fft}-point STFT (reflect padding)")
    backend = fft_backend()
    ws = _workspace(n_samples, cfg, backend)
    n_frames = ws.frames.shape[0]
    clips = wave.reshape(-1, n_samples)
    out = np.empty((len(clips), cfg.n_mels, n_frames), np.float32)
    window = ws.window
    for i, clip in enumerate(clips):
        _preemphasize_padded(clip, cfg, ws.buf)
        np.multiply(_frame_view(ws.buf, cfg), window, out=ws.frames)
        _log_mel_rows(ws.frames, cfg, ws, backend, out[i])
    return out.reshape(lead + (cfg.n_mels, n_frames))


def log_mel_frames(wave: np.ndarray, frames: np.ndarray, cfg: FrontendConfig = DEFAULT_FRONTEND) -> np.ndarray:
    """Only the given frames of one clip's log-mel: (n_samples,) and frame indices -> (n_mels, len(frames)).

    Equal to log_mel(wave)[:, frames] (the same operations on the same samples): what listen
    computes for the frames a new window adds.
    """
    wave = np.asarray(wave, dtype=np.float32)
    backend = fft_backend()
    ws = _workspace(wave.shape[-1], cfg, backend)
    out = np.empty((cfg.n_mels, len(frames)), np.float32)
    if len(frames):
        _preemphasize_padded(wave, cfg, ws.buf)
        rows = ws.frames[: len(frames)]
        np.multiply(_frame_view(ws.buf, cfg)[frames], ws.window, out=rows)
        _log_mel_rows(rows, cfg, ws, backend, out)
    return out


class StreamLogMel:
    """The log-mel of successive windows of one stream, each frame computed once where it can be.

    A window's frame t covers its pre-emphasised samples [t * hop - n_fft // 2, ... + n_fft), with
    reflect padding where that reaches past the window's ends: those edge frames belong to the
    window alone. An interior frame depends only on stream samples [start + t * hop - n_fft // 2,
    ... + n_fft + 1), so a later window whose own frame grid lands on the same stream position has
    exactly the same frame: it is taken from here instead of recomputed (log_mel_frames computes the
    others, with the operations log_mel uses, so every window equals log_mel of its samples).
    Frames line up when the hop between windows is a multiple of the frame hop (744 samples,
    23.25 ms at 32 kHz, in the default front end); at other hops, listen's default 0.5 s included
    (16000 = 21.5 frame hops), no frame of a window sits where a frame of an earlier one did, and
    all are computed. (With cpmel's hop of 500, 0.5 s is 32 frame hops: frames are reused.)

    Memory: the interior frames of the last two windows (2 x 40 x 128 float32 by default).
    """

    def __init__(self, cfg: FrontendConfig = DEFAULT_FRONTEND, keep_windows: int = 2):
        self.cfg = cfg
        n = cfg.clip_samples - 1  # samples after pre-emphasis
        pad, hop = cfg.n_fft // 2, cfg.hop_length
        t = np.arange(cfg.n_frames)
        self.offsets = t * hop - pad  # each frame's first pre-emphasised sample, in the window
        self.interior = (self.offsets >= 0) & (self.offsets + cfg.n_fft <= n)
        self._cache: dict[int, np.ndarray] = {}  # stream position of a frame -> its log-mel column
        self._limit = keep_windows * int(self.interior.sum())
        self.computed = 0
        self.reused = 0

    def __call__(self, samples: np.ndarray, end: int) -> np.ndarray:
        """(clip_samples,) window ending at stream sample `end` -> log-mel (n_mels, n_frames)."""
        cfg = self.cfg
        start = end - cfg.clip_samples
        positions = start + self.offsets
        have = np.fromiter(
            (bool(inside) and int(p) in self._cache for p, inside in zip(positions, self.interior, strict=True)),
            bool,
            cfg.n_frames,
        )
        todo = np.flatnonzero(~have)
        out = np.empty((cfg.n_mels, cfg.n_frames), np.float32)
        out[:, todo] = log_mel_frames(samples, todo, cfg)
        for t in np.flatnonzero(have):
            out[:, t] = self._cache[int(positions[t])]
        for t in todo[self.interior[todo]]:
            self._cache[int(positions[t])] = out[:, t].copy()
        self.computed += len(todo)
        self.reused += cfg.n_frames - len(todo)
        while len(self._cache) > self._limit:  # oldest first: dicts keep insertion order
            del self._cache[next(iter(self._cache))]
        return out


def _normalize(mel_power: np.ndarray, cfg: FrontendConfig) -> np.ndarray:
    return (np.log(mel_power + cfg.log_offset) + cfg.norm_shift) / cfg.norm_scale


def log_mel_reference(wave: np.ndarray, cfg: FrontendConfig = DEFAULT_FRONTEND) -> np.ndarray:
    """The straightforward version: float64 FFT and the dense filterbank (yardstick only)."""
    wave = np.asarray(wave, dtype=np.float64)
    spectrum = np.fft.rfft(_frames(wave, cfg), axis=-1)
    power = np.abs(spectrum) ** 2
    mel = mel_filterbank(cfg).astype(np.float64) @ power.swapaxes(-1, -2)
    return _normalize(mel, cfg).astype(np.float32)


def log_mel_torch(wave, cfg: FrontendConfig = DEFAULT_FRONTEND):
    """torch version (training, calibration): (B, n_samples) -> (B, 1, n_mels, T).

    Uses the same filterbank and window arrays as the numpy version.
    """
    import torch

    fb = torch.from_numpy(np.array(mel_filterbank(cfg))).to(wave.device)
    window = torch.from_numpy(np.array(analysis_window(cfg))).to(wave.device)
    x = wave[:, 1:] - cfg.preemphasis * wave[:, :-1]
    spec = torch.stft(
        x,
        cfg.n_fft,
        hop_length=cfg.hop_length,
        win_length=cfg.win_length,
        window=window,
        center=True,
        pad_mode="reflect",
        normalized=False,
        onesided=True,
        return_complex=True,
    )
    power = spec.real.square() + spec.imag.square()  # (B, bins, frames)
    mel = torch.matmul(fb, power)
    out = (torch.log(mel + cfg.log_offset) + cfg.norm_shift) / cfg.norm_scale
    return out.unsqueeze(1)
