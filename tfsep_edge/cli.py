"""The `tfsep-edge` command line. Parses options, calls one function, prints.

Nothing heavy is imported at module level: torch-only commands import torch inside, and say
how to install it when it is missing. Errors a user can cause (TfsepError) become one line
on stderr and exit code 2.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Optional

import typer

from .errors import TfsepError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    help="TF-SepNet from a PyTorch checkpoint to a verified INT8 model on an edge CPU.",
)

TORCH_HINT = "this command needs PyTorch; install the heavy tooling with: pip install 'tfsep-edge[torch]'"


def require_torch() -> None:
    try:
        import torch  # noqa: F401
    except ImportError:
        raise TfsepError(TORCH_HINT) from None


def fail(message: str, code: int = 2) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def user_errors(fn):
    """Turn TfsepError into one line on stderr and exit code 2 (no traceback)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except TfsepError as exc:
            fail(str(exc))
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(130) from None

    return wrapper


@app.command()
@user_errors
def budget(
    model: Optional[Path] = typer.Argument(
        None, help="checkpoint (tfsep-edge or reference state_dict); none: an untrained model of --width"
    ),
    width: Optional[int] = typer.Option(
        None, "--width", help="count an untrained model of this width (default 12); with MODEL: must match it"
    ),
    shuffle_groups: Optional[int] = typer.Option(
        None, "--shuffle-groups", help="default width // 4; needed for reference state_dicts trained otherwise"
    ),
    n_mels: int = typer.Option(128, "--n-mels", help="input mel bands (7..1024)"),
    frames: int = typer.Option(44, "--frames", help="input frames (7..1024); 44 = 1 s"),
    dtype: str = typer.Option("int8", "--dtype", help="int8 | float16 | float32: storage type of the parameters"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
    sweep: bool = typer.Option(False, "--sweep", help="list every valid width 8..64 and the largest that fits"),
) -> None:
    """Parameters, bytes and MACs by the official DCASE (NeSsi) rule; PASS/FAIL against the limits.

    Counts torchinfo's total_params and total_mult_adds on the float model at 1x1xN_MELSxFRAMES,
    prints a per-layer table, the limits (param bytes <= 128,000, MACs <= 30,000,000) with headroom,
    and, as a separate figure, the elementwise work the official rule leaves out. With neither MODEL
    nor --width it counts an untrained width-12 model. Exit 0 fits, 1 does not fit, 2 bad input.
    """
    from .budget import budget_command

    code = budget_command(
        model=model,
        width=width,
        shuffle_groups=shuffle_groups,
        n_mels=n_mels,
        frames=frames,
        dtype=dtype,
        as_json=as_json,
        sweep=sweep,
    )
    raise typer.Exit(code)


@app.command()
@user_errors
def synth(
    out: Path = typer.Argument(..., help="folder to write (new, or an earlier synthetic set to replace)"),
    clips_per_class: int = typer.Option(20, "--clips-per-class", help="clips per scene class (about 40% evaluate)"),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Write a small SYNTHETIC data set in the TAU22 layout (for the demo and tests)."""
    from .synth import synthesize
    from .tau import read_split

    path = synthesize(out, clips_per_class=clips_per_class, seed=seed)
    counts = {s: len(read_split(path, s)) for s in ("train", "evaluate")}
    typer.echo(f"wrote SYNTHETIC TAU22-layout set {path}: {counts['train']} train, {counts['evaluate']} evaluate clips")


@app.command()
@user_errors
def predict(
    model: Path = typer.Argument(..., help="ONNX model (from `tfsep-edge export`)"),
    audio: list[Path] = typer.Argument(..., help="audio files or folders (searched recursively)"),
    csv: Optional[Path] = typer.Option(None, "--csv", help="write the DCASE Task 1 output (tab-separated)"),
    top: int = typer.Option(1, "--top", help="print the K most likely scenes per file"),
    threads: int = typer.Option(1, "--threads", help="onnxruntime intra-op threads"),
    batch: int = typer.Option(16, "--batch", help="1-s windows per inference call"),
) -> None:
    """Classify audio files with an ONNX model, torch-free (the edge runtime)."""
    from .runtime import predict_command

    raise typer.Exit(predict_command(model, audio, csv, top, threads, batch))


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())
