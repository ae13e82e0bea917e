"""`tfsep-edge budget`: the official (NeSsi) counts, limits, exit codes, JSON, sweep, uncounted work."""

from __future__ import annotations

import json
import math

import pytest
import torch
from conftest import run_cli

from tfsep_edge.budget import count as budget
from tfsep_edge.core.config import MAX_MACS, MAX_PARAM_BYTES
from tfsep_edge.core.errors import TfsepError
from tfsep_edge.model.tfsepnet import TFSepNet

# The report's Table 3 and NeSsi's figures (torchinfo total_params / total_mult_adds).
TABLE3 = {
    12: (128, 6_838, 1_650_149),
    20: (128, 15_890, 3_424_245),
    40: (128, 54_270, 10_220_340),
    60: (128, 115_150, 20_389_085),
    160: (256, 757_050, 242_177_920),
}


@pytest.mark.parametrize("width", sorted(TABLE3))
def test_official_count_matches_nessi(width):
    n_mels, params, macs = TABLE3[width]
    model = TFSepNet(width).eval()
    got_params, got_macs, layers = budget.official_count(model, n_mels, 44)
    assert (got_params, got_macs) == (params, macs)
    # The table's rows are exactly what the totals sum (nothing hidden in container modules).
    assert sum(la["params"] for la in layers) == params
    assert sum(la["macs"] for la in layers) == macs
    assert sum(p.numel() for p in model.parameters()) == params


def test_report_limits_and_headroom():
    counted = budget.count_width(40, None, 128, 44)
    for dtype, per, fits in (("int8", 1, True), ("float16", 2, True), ("float32", 4, False)):
        rep = budget.budget_report(counted, dtype)
        assert rep["param_bytes"] == 54_270 * per
        assert rep["limits"] == {"param_bytes": MAX_PARAM_BYTES, "macs": MAX_MACS}
        checks = {c["name"]: c for c in rep["checks"]}
        assert checks["param_bytes"]["headroom"] == MAX_PARAM_BYTES - 54_270 * per
        assert checks["macs"]["headroom"] == MAX_MACS - 10_220_340
        assert rep["fits"] is fits
    # MACs alone can fail: C=60 at 256 mel bands doubles the work past 30 M.
    rep = budget.budget_report(budget.count_width(60, None, 256, 44), "int8")
    checks = {c["name"]: c for c in rep["checks"]}
    assert checks["param_bytes"]["pass"] and not checks["macs"]["pass"] and not rep["fits"]


def test_uncounted_formulas_by_hand():
    """C=12 at 128 x 44, shapes worked out on paper from the architecture."""
    items = {i["name"]: i["ops"] for i in budget.uncounted_work(TFSepNet(12).eval(), 128, 44)["items"]}
    # AdaResNorm inputs: stem 24x64x22, 12x64x22, max-pool -> 18x32x11, -> 24x16x5, 30x16x5.
    norms = [(24, 64, 22), (12, 64, 22), (18, 32, 11), (24, 16, 5), (30, 16, 5)]
    assert items["adaresnorm_statistics"] == sum(4 * c * f * t + 2 * f for c, f, t in norms)
    assert items["adaresnorm_normalise_affine"] == sum(7 * c * f * t + c for c, f, t in norms)
    # Block outputs: 2 x 12x64x22, 2 x 18x32x11, 2 x 24x16x5, 3 x 30x16x5.
    blocks = 2 * 12 * 64 * 22 + 2 * 18 * 32 * 11 + 2 * 24 * 16 * 5 + 3 * 30 * 16 * 5
    assert items["freq_time_mean_pooling"] == items["residual_adds"] == blocks
    assert items["channel_shuffle"] == 0
    assert items["max_pool"] == 3 * (12 * 32 * 11 + 18 * 16 * 5)
    assert items["global_mean"] == 10 * 16 * 5


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # fvcore traces with torch.jit
def test_uncounted_matches_fvcore_and_layer_table():
    """An independent count: fvcore's jit op counter with one handle per elementwise op."""
    from fvcore.nn import FlopCountAnalysis
    from fvcore.nn.jit_handles import elementwise_flop_counter

    model = TFSepNet(20).eval()
    unc = budget.uncounted_work(model, 128, 44)
    items = {i["name"]: i["ops"] for i in unc["items"]}
    out = elementwise_flop_counter(0, 1)
    zero = elementwise_flop_counter(0, 0)  # conv and BatchNorm: counted officially / folded
    analysis = FlopCountAnalysis(model, torch.zeros(1, 1, 128, 44))
    analysis.set_op_handle(
        "aten::_convolution", zero, "aten::batch_norm", zero,
        "aten::mean", elementwise_flop_counter(1, 0), "aten::var", elementwise_flop_counter(3, 0),
        "aten::add", out, "aten::sub", out, "aten::mul", out, "aten::div", out, "aten::sqrt", out,
        "aten::rsub", out, "aten::max_pool2d", elementwise_flop_counter(0, 3),
    )  # fmt: skip
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    # fvcore ignores ReLU; count it from the official table's ReLU output shapes instead.
    _, _, layers = budget.official_count(model, 128, 44)
    relu = sum(math.prod(la["output_shape"]) for la in layers if la["type"] == "ReLU")
    assert items["relu"] == relu
    assert analysis.total() == unc["total"] - relu
    # Nothing with arithmetic escaped: what fvcore did not count is data movement only.
    assert set(analysis.unsupported_ops()) <= {"aten::unflatten"}


def test_sweep_names_largest_widths():
    result = budget.sweep_widths(None, 128, 44)
    widths = [r["width"] for r in result["widths"]]
    assert widths == list(range(8, 65, 4))
    rows = {r["width"]: r for r in result["widths"]}
    assert (rows[12]["params"], rows[60]["macs"]) == (6_838, 20_389_085)
    for dtype, per in budget.DTYPE_BYTES.items():
        ok = [w for w in widths if rows[w]["params"] * per <= MAX_PARAM_BYTES and rows[w]["macs"] <= MAX_MACS]
        assert result["largest_fitting"][dtype] == max(ok)
    assert result["largest_fitting"]["int8"] == 60  # 115,150 B; width 64 needs > 128,000 B


def test_bad_options_raise():
    with pytest.raises(TfsepError, match="int4"):
        budget.check_options(128, 44, "int4", None, None)
    with pytest.raises(TfsepError, match="--n-mels 6"):
        budget.check_options(6, 44, "int8", None, None)
    with pytest.raises(TfsepError, match="--frames 5000"):
        budget.check_options(128, 5000, "int8", None, None)
    # 7 is the true minimum: the network runs there and fails at 6.
    budget.official_count(TFSepNet(12).eval(), budget.MIN_INPUT, budget.MIN_INPUT)
    with pytest.raises(RuntimeError):
        TFSepNet(12).eval()(torch.zeros(1, 1, budget.MIN_INPUT - 1, 44))


# --- the real CLI -------------------------------------------------------------------------


def test_cli_table_pass_exit_0():
    r = run_cli("budget", "--width", "20")
    assert r.returncode == 0, r.stderr
    assert "PASS" in r.stdout and "FAIL" not in r.stdout
    assert "15,890" in r.stdout and "3,424,245" in r.stdout
    assert "feature.2.freq_dw_conv.conv" in r.stdout and "NOT part of the official count" in r.stdout


def test_cli_json_fail_exit_1():
    r = run_cli("budget", "--width", "160", "--n-mels", "256", "--dtype", "float32", "--json")
    assert r.returncode == 1, r.stderr
    rep = json.loads(r.stdout)
    for key in ("params", "macs", "dtype", "param_bytes", "limits", "fits", "layers", "uncounted"):
        assert key in rep
    assert (rep["params"], rep["macs"], rep["dtype"]) == (757_050, 242_177_920, "float32")
    assert rep["param_bytes"] == 4 * 757_050 and rep["fits"] is False
    assert rep["limits"] == {"param_bytes": 128_000, "macs": 30_000_000}
    assert {"name", "type", "output_shape", "params", "macs"} <= set(rep["layers"][0])
    assert rep["uncounted"]["total"] > 0


def test_cli_checkpoint_and_sweep(tmp_path, data_dir):
    ref = data_dir / "reference_c20_state_dict.pt"
    r = run_cli("budget", ref, "--width", "20", "--shuffle-groups", "5", "--json")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert (rep["width"], rep["shuffle_groups"], rep["params"]) == (20, 5, 15_890)
    r = run_cli("budget", "--sweep")
    assert r.returncode == 0, r.stderr
    assert "largest width that fits as int8: 60" in r.stdout
    assert "largest width that fits as float16: " in r.stdout and "float32: " in r.stdout


def test_cli_sweep_rejects_model():
    r = run_cli("budget", "--sweep", "--width", "12")
    assert r.returncode == 2 and "--sweep" in r.stderr and "Traceback" not in r.stderr
