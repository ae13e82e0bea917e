"""`tfsep-edge budget`: parameters, bytes and MACs by the official DCASE rule, against the limits.

The official count is NeSsi's: `torchinfo.summary(model, input_size=(1, 1, n_mels, frames))`,
its `total_params` and `total_mult_adds`, on the float model. Bytes = params x bytes of --dtype.

NeSsi counts only what holds a weight (convs, and BatchNorm as 2 x C). The second figure,
"uncounted work", is the elementwise arithmetic it leaves out, one op per add, subtract,
multiply, divide, square root or compare, from the activation shapes measured by forward hooks
(x: C x F x T in, E = C*F*T elements):
  AdaResNorm statistics    4E + 2F    mean over (C,T): E; unbiased var: 3E (subtract, square, add);
                                      var + eps and sqrt: F each
  AdaResNorm normalise     7E + C     x - mean, / std, rho*x, (1-rho)*ifn, their sum, *gamma, +beta: E
                                      each; 1 - rho: C
  freq/time mean pooling   E_out      per TF-SepConv block: mean over F of one half, over T of the
                                      other (each half has E_out/2 elements)
  residual adds            E_out      per TF-SepConv block: both halves add their input back
  channel shuffle          0          data movement only (every element is moved once; reported)
  max-pool 2x2             3 E_out    three compares per output
  ReLU                     E_out      one compare per output (backends fuse it into the conv)
  global mean              E_in       mean of the classifier map over frequency and time
BatchNorm is not listed: it folds into the preceding conv for inference. tests/test_budget.py
checks these formulas by hand and against fvcore's jit op counter.

A quantized model or ONNX file as MODEL: see `count_model` (the export/quantize issues' job).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from tfsep_edge.core.config import MAX_MACS, MAX_PARAM_BYTES
from tfsep_edge.core.errors import TfsepError
from tfsep_edge.core.kinds import Kind, artifact_kind
from tfsep_edge.core.torch_check import require_torch

DTYPE_BYTES = {"int8": 1, "float16": 2, "float32": 4}
SWEEP_RANGE = (8, 64)
# The 5x5 stride-2 stem and two 2x2 max-pools divide each axis by 8 (the stem rounds up):
# 7 -> 4 -> 2 -> 1 is the smallest input that leaves one bin; 6 -> 3 -> 1 -> 0 fails.
MIN_INPUT = 7
MAX_INPUT = 1024  # keeps torchinfo's real forward pass within memory (a 10-s clip has 431 frames)
MAX_WIDTH = 256

UNCOUNTED_LABEL = "uncounted work: elementwise ops NeSsi leaves out (NOT part of the official count)"


@dataclass(frozen=True)
class FamilyOptions:
    """--model / --norm / --depth of `budget` (model/families.py); None: the default."""

    model: str | None = None
    norm: str | None = None
    depth: int | None = None

    @property
    def given(self) -> bool:
        return any(v is not None for v in (self.model, self.norm, self.depth))


@dataclass
class Counted:
    """Everything `budget` reports about one model, whatever the MODEL file was."""

    source: str  # what was counted, in words
    width: int
    shuffle_groups: int | None  # None: a family without one shuffle-group count
    n_mels: int
    frames: int
    params: int  # torchinfo total_params (NeSsi)
    macs: int  # torchinfo total_mult_adds (NeSsi)
    layers: list[dict]
    uncounted: dict
    # Bytes of the weights as stored (int8 weights, int32 biases, float scales, float norm
    # parameters). None for a float model: then bytes = params x --dtype.
    stored_param_bytes: int | None = None
    notes: list[str] = field(default_factory=list)


def check_options(
    n_mels: int | None, frames: int | None, dtype: str, width: int | None, shuffle_groups: int | None
) -> str:
    """Validate the numeric options; return the normalised dtype."""
    key = str(dtype).lower()
    if key not in DTYPE_BYTES:
        raise TfsepError(f"--dtype {dtype!r}: not one of {', '.join(DTYPE_BYTES)}")
    for name, value in (("--n-mels", n_mels), ("--frames", frames)):
        if value is not None and not MIN_INPUT <= value <= MAX_INPUT:
            raise TfsepError(
                f"{name} {value}: must be {MIN_INPUT}..{MAX_INPUT} (the stem and two max-pools need at least "
                f"{MIN_INPUT} bins on each axis; the default input is 128 x 44)"
            )
    if width is not None and not 1 <= width <= MAX_WIDTH:
        raise TfsepError(f"--width {width}: must be 1..{MAX_WIDTH} (a multiple of 4, e.g. 12, 20, 40, 60, 160)")
    if shuffle_groups is not None and shuffle_groups < 1:
        raise TfsepError(f"--shuffle-groups {shuffle_groups}: must be a positive integer (default width // 4)")
    return key


def official_count(model, n_mels: int, frames: int) -> tuple[int, int, list[dict]]:
    """NeSsi: torchinfo total_params and total_mult_adds, and the leaf layers it sums."""
    import torchinfo

    stats = torchinfo.summary(model, input_size=(1, 1, n_mels, frames), verbose=0, device="cpu")
    names = {id(m): n for n, m in model.named_modules()}
    layers = [
        {
            "name": names.get(info.layer_id, info.var_name),
            "type": info.class_name,
            "output_shape": list(info.output_size),
            "params": int(info.num_params),
            "macs": int(info.macs),
        }
        for info in stats.summary_list
        if info.is_leaf_layer
    ]
    return int(stats.total_params), int(stats.total_mult_adds), layers


def uncounted_work(model, n_mels: int, frames: int) -> dict:
    """The elementwise work NeSsi leaves out, by the formulas in the module docstring."""
    import torch
    from torch import nn

    from tfsep_edge.model.easy_blocks import BroadcastBlock, TimeFreqSepConvolutions
    from tfsep_edge.model.tfsepnet import AdaResNorm, ChannelShuffle, ResNorm, TimeFreqSepConvs

    totals = {
        "adaresnorm_statistics": 0,
        "adaresnorm_normalise_affine": 0,
        "resnorm_normalise": 0,
        "swish": 0,
        "freq_time_mean_pooling": 0,
        "residual_adds": 0,
        "channel_shuffle": 0,
        "max_pool": 0,
        "relu": 0,
        "global_mean": 0,
    }
    moved = {"channel_shuffle": 0}

    def hook(module, inputs, output):
        x = inputs[0]
        if isinstance(module, AdaResNorm):
            _, c, f, _ = x.shape
            e = x.numel()
            totals["adaresnorm_statistics"] += 4 * e + 2 * f
            if isinstance(module, ResNorm):
                totals["resnorm_normalise"] += 4 * e
            else:
                totals["adaresnorm_normalise_affine"] += 7 * e + c
        elif isinstance(module, (TimeFreqSepConvs, TimeFreqSepConvolutions)):
            totals["freq_time_mean_pooling"] += output.numel()
            totals["residual_adds"] += output.numel()
        elif isinstance(module, BroadcastBlock):
            # mean over frequency of the auxiliary map; the broadcast add of the temporal branch,
            # and of the identity where the channels stay
            totals["freq_time_mean_pooling"] += output.numel()
            totals["residual_adds"] += output.numel() * (1 if module.trans_conv is not None else 2)
        elif isinstance(module, nn.SiLU):
            totals["swish"] += output.numel()
        elif isinstance(module, ChannelShuffle):
            moved["channel_shuffle"] += output.numel()
        elif isinstance(module, nn.MaxPool2d):
            totals["max_pool"] += 3 * output.numel()
        elif isinstance(module, nn.ReLU):
            totals["relu"] += output.numel()
        elif module is head:
            totals["global_mean"] += output.numel()

    # The 1x1 classifier conv whose map the global mean averages (easy_dcase's wraps it).
    head = getattr(model.classifier, "conv", model.classifier)
    kinds = (AdaResNorm, TimeFreqSepConvs, TimeFreqSepConvolutions, BroadcastBlock, ChannelShuffle, nn.MaxPool2d)
    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (*kinds, nn.ReLU, nn.SiLU))]
    handles.append(head.register_forward_hook(hook))
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, 1, n_mels, frames))
    finally:
        for h in handles:
            h.remove()
    formulas = {
        "adaresnorm_statistics": "4E + 2F per AdaResNorm or ResNorm (mean, unbiased var, +eps, sqrt)",
        "adaresnorm_normalise_affine": "7E + C per AdaResNorm (normalise, rho mix, gamma/beta)",
        "resnorm_normalise": "4E per ResNorm (x - mean, / std, lambda * x, add)",
        "swish": "1 per SiLU output (BC-ResNet's temporal branch)",
        "freq_time_mean_pooling": "E_out per TF-SepConv block (mean over F / over T of each half); "
        "E_out per BC-ResBlock (mean over F)",
        "residual_adds": "E_out per TF-SepConv block; E_out per BC-ResBlock (2 E_out where the channels stay)",
        "channel_shuffle": "0 (data movement only)",
        "max_pool": "3 compares per output",
        "relu": "1 compare per output (fused into the conv by most backends)",
        "global_mean": "classifier map elements (mean over F and T)",
    }
    always = ("adaresnorm_statistics", "adaresnorm_normalise_affine", "channel_shuffle")
    items = [
        {"name": k, "ops": v, "formula": formulas[k], **({"elements_moved": moved[k]} if k in moved else {})}
        for k, v in totals.items()
        if v or k in always or moved.get(k)  # the other families' items only where they occur
    ]
    return {
        "label": UNCOUNTED_LABEL,
        "unit": "elementwise ops (add, multiply, divide, sqrt or compare = 1)",
        "total": sum(totals.values()),
        "items": items,
    }


def _count_float(model, source: str, n_mels: int | None, frames: int | None) -> Counted:
    """NeSsi's count and the uncounted work; an input axis left None is the family's own
    (TF-SepNet and BC-ResNet 128 x 44, TF-SepNet-64 512 x 64)."""
    from tfsep_edge.model.families import get_family

    shape = get_family(model.config.family).input_shape
    n_mels, frames = n_mels or shape[1], frames or shape[2]
    params, macs, layers = official_count(model, n_mels, frames)
    return Counted(
        source=source,
        width=model.config.width,
        shuffle_groups=getattr(model.config, "groups", None),
        n_mels=n_mels,
        frames=frames,
        params=params,
        macs=macs,
        layers=layers,
        uncounted=uncounted_work(model, n_mels, frames),
    )


def count_width(
    width: int | None,
    shuffle_groups: int | None,
    n_mels: int,
    frames: int,
    family: FamilyOptions = FamilyOptions(),
) -> Counted:
    """An untrained model of this family and width (None: the family's default width; the counts
    do not depend on the weights)."""
    require_torch()
    model = family_model(width, shuffle_groups, family)
    return _count_float(model, f"untrained {describe(model.config)}", n_mels, frames)


def family_model(width: int | None, shuffle_groups: int | None, family: FamilyOptions):
    from tfsep_edge.model.families import build_model, make_config

    extra = {}
    if shuffle_groups is not None:
        if family.model not in (None, "tfsepnet"):
            raise TfsepError(f"--shuffle-groups {shuffle_groups}: {family.model} has no shuffle-group choice")
        extra["shuffle_groups"] = shuffle_groups
    return build_model(make_config(family.model, width, family.norm, family.depth, **extra)).eval()


def describe(config) -> str:
    """A model config in words: 'TF-SepNet, width 40, resnorm', 'tfsepnet-v2, width 64, depth 17'."""
    words = {"tfsepnet": "TF-SepNet", "bcresnet": "BC-ResNet", "tfsepnet-v2": "TF-SepNet-64 (tfsepnet-v2)"}
    parts = [words[config.family], f"width {config.width}"]
    if getattr(config, "norm", "adaresnorm") != "adaresnorm":
        parts.append(config.norm)
    if config.family == "tfsepnet-v2":
        parts.append(f"depth {config.depth}")
    if getattr(config, "sub_bands", 1) != 1:
        parts.append(f"{config.sub_bands} sub-bands")
    return ", ".join(parts)


def count_model(
    path: Path,
    width: int | None,
    shuffle_groups: int | None,
    n_mels: int,
    frames: int,
    family: FamilyOptions = FamilyOptions(),
) -> Counted:
    """MODEL file -> Counted. The one place that dispatches on what MODEL is.

    Today: float checkpoints (own format or a reference state_dict). The export/quantize issues
    add their artifacts HERE, as new branches before the checkpoint branch: an ONNX file or a
    quantized model returns a Counted whose `stored_param_bytes` sums the stored quantized
    weights (int8 weights, int32 biases, float scales, the float norm parameters) -- never
    `model.parameters()` of a converted model, which hides the packed int8 weights.
    """
    path = Path(path)
    kind = artifact_kind(path)
    require_torch()  # the NeSsi count runs torchinfo on the float model, whatever the artifact
    if family.given and (kind.exported or kind is Kind.QUANTIZED):
        raise TfsepError(f"{path}: an exported or quantized model records its network; drop --model/--norm/--depth")
    if kind.exported:  # stored bytes: the file's constants (budget/stored_bytes.py)
        return count_graph_file(path, kind, n_mels, frames)
    if kind is Kind.QUANTIZED:
        return count_quantized(path, n_mels, frames)
    from tfsep_edge.model.checkpoint import load_checkpoint

    options = {"model": family.model, "norm": family.norm, "depth": family.depth}
    model, info = load_checkpoint(path, shuffle_groups=shuffle_groups, expected_width=width, **options)
    return _count_float(model, f"{path} ({info['format']} checkpoint, {describe(model.config)})", n_mels, frames)


def budget_report(counted: Counted, dtype: str) -> dict:
    """The JSON object of `budget --json`: counts, bytes, limits, headroom, PASS/FAIL."""
    if counted.stored_param_bytes is not None:
        param_bytes, bytes_basis = counted.stored_param_bytes, "stored quantized weights"
    else:
        param_bytes, bytes_basis = counted.params * DTYPE_BYTES[dtype], f"params x {DTYPE_BYTES[dtype]} ({dtype})"
    checks = [
        {"name": "param_bytes", "used": param_bytes, "allowed": MAX_PARAM_BYTES},
        {"name": "macs", "used": counted.macs, "allowed": MAX_MACS},
    ]
    for c in checks:
        c["headroom"] = c["allowed"] - c["used"]
        c["headroom_percent"] = round(100.0 * c["headroom"] / c["allowed"], 2)
        c["pass"] = c["used"] <= c["allowed"]
    return {
        "model": counted.source,
        "width": counted.width,
        "shuffle_groups": counted.shuffle_groups,
        "input_size": [1, 1, counted.n_mels, counted.frames],
        "counted_by": "torchinfo.summary total_params / total_mult_adds (NeSsi, the DCASE rule), float model",
        "params": counted.params,
        "macs": counted.macs,
        "dtype": dtype,
        "bytes_per_param": DTYPE_BYTES[dtype],
        "param_bytes": param_bytes,
        "param_bytes_basis": bytes_basis,
        "limits": {"param_bytes": MAX_PARAM_BYTES, "macs": MAX_MACS},
        "checks": checks,
        "fits": all(c["pass"] for c in checks),
        "layers": counted.layers,
        "uncounted": counted.uncounted,
        "notes": counted.notes,
    }


def format_report(report: dict) -> str:
    rows = [
        (la["name"], la["type"], "x".join(map(str, la["output_shape"])), la["params"], la["macs"])
        for la in report["layers"]
    ]
    wn = max([len("layer")] + [len(r[0]) for r in rows])
    wt = max([len("type")] + [len(r[1]) for r in rows])
    ws = max([len("output")] + [len(r[2]) for r in rows])
    head = f"{'layer':<{wn}}  {'type':<{wt}}  {'output':<{ws}}  {'params':>9}  {'MACs':>12}"
    lines = [
        f"model: {report['model']}"
        + (f", shuffle groups {report['shuffle_groups']}" if report["shuffle_groups"] is not None else ""),
        f"input: {'x'.join(map(str, report['input_size']))}; counted by {report['counted_by']}",
        "",
        head,
        "-" * len(head),
    ]
    lines += [f"{n:<{wn}}  {t:<{wt}}  {s:<{ws}}  {p:>9,}  {m:>12,}" for n, t, s, p, m in rows]
    lines += [
        "-" * len(head),
        f"{'total (official)':<{wn + wt + ws + 4}}  {report['params']:>9,}  {report['macs']:>12,}",
        "",
        f"{'limit':<12} {'used':>12} {'allowed':>12} {'headroom':>12} {'left':>8}  result",
    ]
    labels = {"param_bytes": f"param bytes ({report['param_bytes_basis']})", "macs": "MACs"}
    for c in report["checks"]:
        lines.append(
            f"{c['name']:<12} {c['used']:>12,} {c['allowed']:>12,} {c['headroom']:>12,} "
            f"{c['headroom_percent']:>7.1f}%  {'PASS' if c['pass'] else 'FAIL'}  {labels[c['name']]}"
        )
    lines += [
        "",
        f"{'PASS' if report['fits'] else 'FAIL'}: the model {'fits' if report['fits'] else 'does NOT fit'} "
        f"the DCASE 2023 Task 1 limits as {report['dtype']}",
    ]
    unc = report["uncounted"]
    lines += ["", f"Second figure -- {unc['label']}:"]
    for item in unc["items"]:
        extra = f" (moves {item['elements_moved']:,} elements)" if "elements_moved" in item else ""
        lines.append(f"  {item['name']:<28} {item['ops']:>12,}  {item['formula']}{extra}")
    lines.append(f"  {'total':<28} {unc['total']:>12,}  {unc['unit']}")
    lines += [f"note: {n}" for n in report["notes"]]
    return "\n".join(lines)


def sweep_widths(shuffle_groups: int | None, n_mels: int | None, frames: int | None) -> dict:
    """Every valid width in SWEEP_RANGE: params, bytes per dtype, MACs, and the largest that fits."""
    require_torch()
    n_mels, frames = n_mels or 128, frames or 44  # TF-SepNet's input
    from tfsep_edge.model.tfsepnet import check_width, valid_widths

    lo, hi = SWEEP_RANGE
    if shuffle_groups is None:
        widths = valid_widths(lo, hi)
    else:
        widths = []
        for w in range(lo, hi + 1):
            try:
                check_width(w, shuffle_groups)
            except TfsepError:
                continue
            widths.append(w)
    if not widths:
        raise TfsepError(f"--shuffle-groups {shuffle_groups}: no width in {lo}..{hi} splits into that many groups")
    rows = []
    for w in widths:
        from tfsep_edge.model.tfsepnet import TFSepNet

        params, macs, _ = official_count(TFSepNet(w, shuffle_groups=shuffle_groups).eval(), n_mels, frames)
        param_bytes = {d: params * b for d, b in DTYPE_BYTES.items()}
        fits = {d: param_bytes[d] <= MAX_PARAM_BYTES and macs <= MAX_MACS for d in DTYPE_BYTES}
        rows.append({"width": w, "params": params, "macs": macs, "param_bytes": param_bytes, "fits": fits})
    largest = {d: max((r["width"] for r in rows if r["fits"][d]), default=None) for d in DTYPE_BYTES}
    return {
        "input_size": [1, 1, n_mels, frames],
        "shuffle_groups": "width // 4" if shuffle_groups is None else shuffle_groups,
        "counted_by": "torchinfo.summary total_params / total_mult_adds (NeSsi), float model",
        "limits": {"param_bytes": MAX_PARAM_BYTES, "macs": MAX_MACS},
        "widths": rows,
        "largest_fitting": largest,
    }


def format_sweep(result: dict) -> str:
    dts = list(DTYPE_BYTES)
    head = f"{'width':>5}  {'params':>9}  " + "  ".join(f"{d + ' B':>11}" for d in dts) + f"  {'MACs':>12}  fits"
    lines = [
        f"input {'x'.join(map(str, result['input_size']))}, shuffle groups {result['shuffle_groups']}; "
        f"limits {result['limits']['param_bytes']:,} param bytes, {result['limits']['macs']:,} MACs",
        head,
        "-" * len(head),
    ]
    for r in result["widths"]:
        ok = ",".join(d for d in dts if r["fits"][d]) or "none"
        lines.append(
            f"{r['width']:>5}  {r['params']:>9,}  "
            + "  ".join(f"{r['param_bytes'][d]:>11,}" for d in dts)
            + f"  {r['macs']:>12,}  {ok}"
        )
    lines.append("")
    for d in dts:
        w = result["largest_fitting"][d]
        lines.append(f"largest width that fits as {d}: {w if w is not None else 'none'}")
    return "\n".join(lines)


def budget_command(
    model: Path | None,
    width: int | None,
    shuffle_groups: int | None,
    n_mels: int,
    frames: int,
    dtype: str,
    as_json: bool,
    sweep: bool,
    ram: str | None = None,
    flash: str | None = None,
    measure_device=None,
    family: FamilyOptions = FamilyOptions(),
) -> int:
    """Run `tfsep-edge budget`; return the exit code (0 fits, 1 does not; TfsepError -> 2).

    For a .tflite, `measure_device(path, need_ram)` (runtime/micro.footprint, passed in by the
    command: the runtime sits above this stage) gives its RAM and flash on a microcontroller,
    checked against `ram` / `flash` (sizes, device.parse_size) when given."""
    import typer

    from tfsep_edge.budget.device import device_checks, format_device, parse_size

    dtype = check_options(n_mels, frames, dtype, width, shuffle_groups)
    ram_bytes, flash_bytes = parse_size(ram, "--ram"), parse_size(flash, "--flash")
    if sweep:
        if model is not None or width is not None or ram_bytes or flash_bytes or family.given:
            raise TfsepError(
                "--sweep counts every TF-SepNet width itself; drop MODEL, --width, --model, --ram and --flash"
            )
        result = sweep_widths(shuffle_groups, n_mels, frames)
        typer.echo(json.dumps(result, indent=2) if as_json else format_sweep(result))
        return 0
    if model is not None:
        counted = count_model(model, width, shuffle_groups, n_mels, frames, family)
    else:
        counted = count_width(width, shuffle_groups, n_mels, frames, family)
        if width is None:
            counted.notes.append(f"no MODEL or --width given: counted the family's default width {counted.width}")
    report = budget_report(counted, dtype)
    device = device_checks(model, ram_bytes, flash_bytes, measure_device)
    text = format_report(report)
    if device is not None:  # "fits" stays the DCASE verdict; the device's limits have their own
        report["device"] = device
        text += "\n".join(format_device(device))
    typer.echo(json.dumps(report, indent=2) if as_json else text)
    return 0 if report["fits"] and (device is None or device["fits"]) else 1


def count_graph_file(path: Path, kind: Kind, n_mels: int, frames: int):
    """budget.Counted for an exported .onnx or .tflite file.

    The official count (params, MACs) is NeSsi's torchinfo count of the float model rebuilt from
    the width in the file's metadata (the counts do not depend on the weights; the family, norm,
    depth and a non-default shuffle-group count are read from the budget metadata when present;
    the input is the file's front end unless --n-mels/--frames say otherwise); the bytes
    are those of the file's stored constants by type (stored_bytes.py, one count for every format).
    """
    from tfsep_edge.budget.stored_bytes import read_graph_file

    graph = read_graph_file(path, kind)
    width = graph.width()
    if n_mels is None or frames is None:  # the input the file was exported for
        from tfsep_edge.core.config import META_FRONTEND, FrontendConfig

        try:
            cfg = FrontendConfig.from_dict(json.loads(graph.meta.get(META_FRONTEND, "{}")))
        except (ValueError, TypeError):
            cfg = FrontendConfig()
        n_mels, frames = n_mels or cfg.n_mels, frames or cfg.n_frames
    stored = graph.model_config()
    family = FamilyOptions(stored.get("family"), stored.get("norm"), stored.get("depth"))
    if family.model not in (None, "tfsepnet"):
        family = FamilyOptions(family.model, None, family.depth)  # --norm is TF-SepNet's only
    counted = count_width(width, graph.shuffle_groups(), n_mels, frames, family)
    counted.source = f"{path} ({graph.format}, {graph.precision}, width {width})"
    counted.stored_param_bytes = graph.stored["total"]
    counted.notes.append(
        f"params/MACs: torchinfo on the float {family.model or 'tfsepnet'} rebuilt from the width in the "
        f"{graph.format} metadata; "
        "bytes: the file's stored constants by type: " + ", ".join(f"{k} {v:,}" for k, v in graph.stored.items())
    )
    return counted


def count_quantized(path: Path, n_mels: int, frames: int):
    """budget.Counted for a `tfsep-edge quantize` folder: NeSsi on its float model + stored int8 bytes."""
    from tfsep_edge.quant.artifact import load_quantized, storage_bytes

    art = load_quantized(path)
    counted = _count_float(
        art.float_model, f"{path} (quantized INT8, width {art.float_model.config.width})", n_mels, frames
    )
    stored = storage_bytes(art.int8_model)
    counted.stored_param_bytes = stored["total"]
    counted.notes.append(
        "params/MACs: torchinfo on the quantized model's float TF-SepNet; bytes: the stored INT8 model by type: "
        + ", ".join(f"{k} {v:,}" for k, v in stored.items())
    )
    return counted
