"""The benchmark scripts run and write well-formed results (smoke runs: no
timing is asserted here; numbers live in benchmarks/results and README)."""

import csv
import math
import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest

from tests.example_modules import load_benchmark

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _run(script, args, tmp_path):
    out = tmp_path / "result"
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *args,
         "--out", str(out)],
        env=dict(os.environ, KERAS_BACKEND="tensorflow"),
        capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    with open(f"{out}.csv") as f:
        return list(csv.DictReader(f)), result.stdout


PROGRESS_LINE = re.compile(r"^\[(\d+)/(\d+), \d+ s\] (.+)$", re.MULTILINE)


def _progress(stdout):
    """The messages of a script's progress lines, which must count 1 to N
    of the N they announce."""
    lines = PROGRESS_LINE.findall(stdout)
    assert [(int(i), int(n)) for i, n, _ in lines] == [
        (i, len(lines)) for i in range(1, len(lines) + 1)], stdout[-2000:]
    return [message for *_, message in lines]


def _positive(row, *keys):
    return all(math.isfinite(float(row[k])) and float(row[k]) > 0
               for k in keys)


def test_layers_benchmark_quick(tmp_path):
    rows, stdout = _run("layers.py", ["--quick"], tmp_path)
    assert {r["pair"] for r in rows} == {"frn_tlu", "frn_tlu_fused",
                                         "bn_relu", "gn_relu", "ln_relu"}
    assert {r["pass"] for r in rows} == {"fwd", "fwd+bwd"}
    assert all(_positive(r, "median_ms", "over_floor", "vs_bn") for r in rows)
    assert all(float(r["vs_bn"]) == 1.0 for r in rows if r["pair"] == "bn_relu")
    assert (tmp_path / "result.png").stat().st_size > 0
    assert "| frn_tlu |" in stdout
    assert _progress(stdout) == ["XLA on, float32, 16x32x32x16: 10 steps x "
                                 "3 repeats"]
    # The ratios, recomputed from the medians of the same pass.
    for r in rows:
        same_pass = {q["pair"]: float(q["median_ms"]) for q in rows
                     if q["pass"] == r["pass"] and q["shape"] == r["shape"]}
        for column, base in (("vs_bn", "bn_relu"), ("vs_gn", "gn_relu")):
            assert float(r[column]) == pytest.approx(
                float(r["median_ms"]) / same_pass[base], rel=1e-9)
    # The floor: the bytes of x moved twice (fwd: read x, write y) or five
    # times (fwd+bwd: also read x and dy, write dx), over the printed copy
    # bandwidth; every row implies that one bandwidth.
    printed = float(stdout.split("copy bandwidth (XLA on): ")[1].split()[0])
    for r in rows:
        nbytes = 4 * math.prod(int(d) for d in r["batch_shape"].split("x"))
        moves = 5 if r["pass"] == "fwd+bwd" else 2
        floor_s = float(r["median_ms"]) / 1e3 / float(r["over_floor"])
        assert moves * nbytes / floor_s / 1e9 == pytest.approx(printed,
                                                              abs=0.051)


def test_train_step_benchmark_quick(tmp_path):
    rows, stdout = _run("train_step.py", ["--quick", "--xla", "on",
                                          "--batch", "8"], tmp_path)
    assert _progress(stdout) == ["round of 4 models x 2 steps"] * 2
    assert {r["norm"] for r in rows} == {"frn", "frn_fused", "bn", "gn"}
    assert all(_positive(r, "images_per_s", "step_ms", "peak_memory_mib")
               for r in rows)
    # Ratios are paired per round: BN against itself is exactly 1.
    assert all(float(r[k]) == 1.0 for r in rows if r["norm"] == "bn"
               for k in ("step_vs_bn", "step_vs_bn_min", "step_vs_bn_max"))
    assert all(float(r["step_vs_bn_min"]) <= float(r["step_vs_bn"])
               <= float(r["step_vs_bn_max"]) for r in rows)
    for r in rows:
        # Every round's ratio is kept, and the median is theirs.
        rounds = [float(v) for v in r["step_vs_bn_rounds"].split()]
        assert len(rounds) == 2
        assert float(r["step_vs_bn"]) == pytest.approx(np.median(rounds),
                                                       abs=1e-4)
        # Two rounds are too few for a 95% interval of the median.
        assert r["step_vs_bn_ci95_low"] == r["step_vs_bn_ci95_high"] == ""
        # Throughput is the batch over the step time.
        assert float(r["images_per_s"]) * float(r["step_ms"]) / 1e3 == (
            pytest.approx(8, rel=1e-6))


def test_hlo_traffic_counts_the_same_convolutions_for_every_norm(tmp_path):
    rows, stdout = _run("hlo_traffic.py", ["--batch", "2", "--norms", "bn",
                                           "frn_fused", "frn_fused_relu"],
                        tmp_path)
    assert [r["norm"] for r in rows] == ["bn", "frn_fused", "frn_fused_relu"]
    # ResNet-20's 21 convolutions write their outputs in both models, and
    # the backward pass adds more; the normalizations differ only elsewhere.
    conv = {(r["conv_writes"], r["conv_written_mib"]) for r in rows}
    assert len(conv) == 1 and int(rows[0]["conv_writes"]) > 21
    assert all(_positive(r, "other_written_mib", "other_read_mib",
                         "other_traffic_vs_bn") for r in rows)
    assert float(rows[0]["other_traffic_vs_bn"]) == 1.0
    assert "| resnet20 b2 | frn_fused |" in stdout
    assert [m.split(":")[0] for m in _progress(stdout)] == [
        "bn", "frn_fused", "frn_fused_relu"]


# An optimized-HLO module in XLA's text syntax: one activation is
# f32[2,8,8,64], 8192 elements (32 KiB), the threshold at batch 2.
_HLO = """HloModule step

%fused_computation (param_0: f32[2,8,8,64]) -> f32[2,8,8,64] {
  %param_0 = f32[2,8,8,64]{3,2,1,0} parameter(0)
  ROOT %negate.9 = f32[2,8,8,64]{3,2,1,0} negate(%param_0)
}

ENTRY %main.9 (arg0.1: f32[2,8,8,64], arg1.1: f32[1,1,64,64]) -> (f32[2,8,8,64], f32[64]) {
  %arg0.1 = f32[2,8,8,64]{3,2,1,0} parameter(0), metadata={op_name="XLA_Args"}
  %arg1.1 = f32[1,1,64,64]{3,2,1,0} parameter(1)
  %constant.1 = f32[] constant(0)
  %conv.1 = f32[2,8,8,64]{3,2,1,0} convolution(%arg0.1, %arg1.1), window={size=1x1}, dim_labels=b01f_01io->b01f
  %reversed_convolution.2 = f32[2,8,8,64]{3,2,1,0} fusion(%arg0.1), kind=kOutput, calls=%fused_computation
  %bitcast.1 = f32[128,64]{1,0} bitcast(%conv.1)
  %fusion.3 = (f32[2,8,8,64]{3,2,1,0}, bf16[2,8,8,64]{3,2,1,0}) fusion(%conv.1, %arg0.1), kind=kLoop, calls=%fused_computation
  %get-tuple-element.1 = f32[2,8,8,64]{3,2,1,0} get-tuple-element(%fusion.3), index=0
  %reduce.4 = f32[64]{0} reduce(%get-tuple-element.1, %constant.1), dimensions={0,1,2}
  %slice.5 = f32[8191]{0} slice(%bitcast.1), slice={[0:8191]}
  ROOT %tuple = (f32[2,8,8,64]{3,2,1,0}, /*index=1*/f32[64]{0}) tuple(%get-tuple-element.1, %reduce.4)
}

%after_entry (param_0: f32[2,8,8,64]) -> f32[2,8,8,64] {
  %param_0 = f32[2,8,8,64]{3,2,1,0} parameter(0)
  ROOT %exponential.9 = f32[2,8,8,64]{3,2,1,0} exponential(%param_0)
}
"""


def test_hlo_traffic_counts_entry_buffers_of_at_least_one_activation():
    hlo_traffic = load_benchmark("hlo_traffic")
    act = 2 * 8 * 8 * 64 * 4  # bytes of one f32 activation
    totals = hlo_traffic.traffic(_HLO, 2 * 4096)
    # Convolutions, by op or by name: two activation-sized outputs, each
    # reading arg0 (the 1x1x64x64 kernel is below the threshold).
    assert totals["conv"] == {"writes": 2, "write_bytes": 2 * act,
                              "read_bytes": 2 * act}
    # The tuple fusion writes an f32 and a bf16 activation and reads two
    # (the second through a bitcast, which moves nothing); the reduce reads
    # one through get-tuple-element; the slice's f32[8191] is one element
    # short of the threshold, but it reads the whole convolution output.
    # Parameters, constants, bitcasts, tuples, the computations other than
    # the entry and the small outputs count nothing.
    assert totals["other"] == {"writes": 2, "write_bytes": act + act // 2,
                               "read_bytes": 4 * act}
    assert hlo_traffic.traffic(_HLO, 2 * 4096 + 1) == {
        "conv": {"writes": 0, "write_bytes": 0, "read_bytes": 0},
        "other": {"writes": 0, "write_bytes": 0, "read_bytes": 0}}


def test_relu_ablation_swaps_only_the_standalone_tlus():
    import keras

    import frn_keras

    zoo = load_benchmark("zoo")
    fused = zoo.build_model("resnet20", "frn_fused", 32)
    ablation = zoo.build_model("resnet20", "frn_fused_relu", 32)

    def count(model, kind):
        return sum(isinstance(layer, kind) for layer in model.layers)

    # ResNet-20: 9 TLUs after residual additions stay standalone when fused.
    assert count(fused, frn_keras.TLU) == 9
    assert count(ablation, frn_keras.TLU) == 0
    assert count(ablation, keras.layers.ReLU) == 9
    assert count(ablation, frn_keras.FilterResponseNormalizationTLU) == (
        count(fused, frn_keras.FilterResponseNormalizationTLU))


def test_inference_benchmark_folds_batch_norm_exactly(tmp_path):
    # The script itself asserts the folded model equals the BN model, and
    # each XLA export's probabilities equal the plain export's.
    rows, stdout = _run("inference.py", ["--repeats", "3", "--batches", "2",
                                         "--xla"], tmp_path)
    assert "folded BN model: 0 BatchNormalization layers left" in stdout
    plain = {"frn", "frn_fused", "bn", "bn_folded"}
    assert {r["variant"] for r in rows} == plain | {f"{v}_xla" for v in plain}
    assert all(_positive(r, "median_ms", "vs_bn_folded") for r in rows)
    for r in rows:
        calls = [float(v) for v in r["calls_ms"].split()]
        assert len(calls) == 3
        assert float(r["median_ms"]) == pytest.approx(np.median(calls),
                                                      abs=1e-3)
    with open(tmp_path / "result_best.csv") as f:
        best, plain = list(csv.DictReader(f))
    assert (best["comparison"], plain["comparison"]) == ("best", "plain")
    for row in (best, plain):
        assert row["batch"] == "2"
        assert row["frn_variant"].startswith("frn")
        assert row["bn_variant"].startswith("bn_folded")
        assert row["ci95_low"] == ""  # 3 repeats: too few for an interval
    assert not plain["frn_variant"].endswith("_xla")
    assert not plain["bn_variant"].endswith("_xla")
    assert "| 2 | best | frn" in stdout and "| 2 | plain | frn" in stdout
    assert _progress(stdout) == [
        f"exporting {v} and {v}_xla" for v in ("frn", "frn_fused", "bn",
                                               "bn_folded")
    ] + ["batch 2: 8 exports x 3 calls"]


def test_comparisons_pair_the_fastest_exports_call_by_call():
    inference = load_benchmark("inference")
    # The machine's slow spells, shared by every variant of a repeat.
    slow_spells = np.array([1.0, 3.0, 1.0, 1.0, 3.0, 1.0, 3.0, 1.0, 1.0, 1.0])
    times = {
        "frn": 1.6 * slow_spells, "frn_fused_xla": 1.2 * slow_spells,
        "bn": 1.1 * slow_spells, "bn_folded": 1.05 * slow_spells,
        "bn_folded_xla": 1.0 * slow_spells,
    }
    times["frn_fused_xla"][[2, 7]] *= 1.5  # two noisy calls of one export
    best, plain = inference.comparisons(
        {k: list(v) for k, v in times.items()}, batch=4)
    assert (best["comparison"], best["batch"]) == ("best", 4)
    assert (best["frn_variant"], best["bn_variant"]) == (
        "frn_fused_xla", "bn_folded_xla")
    # Paired, the slow spells cancel: 8 ratios of 1.2, two of 1.8.
    assert best["ratio"] == pytest.approx(1.2)
    # n = 10: the interval is the 2nd and 9th smallest ratios.
    assert (best["ci95_low"], best["ci95_high"]) == pytest.approx((1.2, 1.8))
    # Without XLA: frn against bn_folded, every ratio 1.6 / 1.05.
    assert (plain["comparison"], plain["frn_variant"], plain["bn_variant"]
            ) == ("plain", "frn", "bn_folded")
    assert plain["ratio"] == pytest.approx(1.6 / 1.05)
    assert (plain["ci95_low"], plain["ci95_high"]) == pytest.approx(
        (1.6 / 1.05, 1.6 / 1.05))


def test_folding_check_holds_for_a_deep_model_and_catches_a_wrong_fold():
    import keras

    inference = load_benchmark("inference")
    zoo = load_benchmark("zoo")
    bn = zoo.build_model("resnet_v2_50", "bn", 32)
    inference.randomize(bn, seed=0)
    folded = inference.fold_batch_norm(bn)
    images = np.random.default_rng(1).uniform(0, 255, (4, 32, 32, 3))
    # Logits in the hundreds: an absolute tolerance of 1e-4 failed here.
    inference.check_folded(bn, folded, images)
    conv = next(layer for layer in folded.layers
                if isinstance(layer, keras.layers.Conv2D) and layer.use_bias)
    kernel, bias = conv.get_weights()
    conv.set_weights([kernel, bias + 0.01])
    with pytest.raises(AssertionError):
        inference.check_folded(bn, folded, images)


def test_graph_ops_benchmark_times_every_kernel_at_every_shape(tmp_path):
    rows, stdout = _run("graph_ops.py", ["--chain", "2", "--repeats", "3"],
                        tmp_path)
    kernels = {r["kernel"] for r in rows}
    assert {"x * scale[b, c]", "max(x, tau[c])", "sum(x^2) over H, W",
            "euclidean_norm(x)^2 over H, W",
            "max(x, tau[c]), wide view"} <= kernels
    assert len(rows) == 4 * len(kernels)
    # The view the layers take outside XLA: 32x32x32x16 is widened by 64,
    # 32x8x8x64 (64 positions) is not.
    k = {r["shape"]: int(r["wide_view_k"]) for r in rows}
    assert k["32x32x32x16"] == 64 and k["32x8x8x64"] == 1
    assert all(math.isfinite(float(r["us_per_op"])) for r in rows)
    # Each kernel's time is over the baseline's (which is then 0 us), and
    # its ratio is to x * x at the same shape.
    same_shape = {r["shape"]: float(r["us_per_op"]) for r in rows
                  if r["kernel"] == "x * x (same shape)"}
    for r in rows:
        if r["kernel"] == "baseline x + c":
            assert float(r["us_per_op"]) == 0.0
        assert float(r["vs_same_shape"]) == pytest.approx(
            float(r["us_per_op"]) / same_shape[r["shape"]], rel=1e-9)
    assert "| 32x32x32x16 | max(x, tau[c]) |" in stdout
    shapes = list(dict.fromkeys(r["shape"] for r in rows))
    assert _progress(stdout) == [f"{shape}: {len(kernels)} kernels x 3 repeats"
                                 for shape in shapes]


def test_wide_view_benchmark_compares_exports_with_and_without_the_view(
        tmp_path):
    rows, stdout = _run("wide_view.py", ["--repeats", "3", "--batches", "2"],
                        tmp_path)
    assert {r["norm"] for r in rows} == {"frn", "frn_fused"}
    for r in rows:
        # ResNet-20's 7 stage-1 FRN layers (3 tiles each) are widened in
        # the "wide" export and in no other; the "narrow" one has no tile.
        assert int(r["tile_ops_wide"]) >= 21
        assert int(r["tile_ops_narrow"]) == 0
        assert math.isfinite(float(r["wide_vs_narrow"]))
    assert "| resnet20 32px | 2 | frn_fused |" in stdout
    assert len(_progress(stdout)) == 3  # two models exported, one batch


@pytest.mark.parametrize("form", ["activation_boundary", "staged_sum"])
def test_xla_cpu_forms_benchmark_times_both_traces(tmp_path, form):
    rows, stdout = _run("xla_cpu_forms.py", [
        "--form", form, "--norms", "frn_fused", "--train-batch", "4",
        "--steps", "1", "--rounds", "3", "--batches", "2", "--repeats", "3"],
        tmp_path)
    assert [(r["kind"], r["batch"], r["form"]) for r in rows] == [
        ("forward", "2", form), ("train_step", "4", form)]
    assert all(_positive(r, "with_ms", "without_ms", "with_vs_without")
               for r in rows)
    assert "| resnet20 32px | forward | frn_fused | 2 |" in stdout
    assert [m.split(":")[0] for m in _progress(stdout)] == ["frn_fused"]


@pytest.mark.parametrize("installed", [True, False])
def test_layers_plot_is_skipped_without_matplotlib(installed, tmp_path,
                                                   monkeypatch, capsys):
    layers = load_benchmark("layers")
    if not installed:
        monkeypatch.setitem(sys.modules, "matplotlib", None)  # import fails
    rows = [{"xla": "on", "precision": "float32", "pass": "fwd",
             "shape": "2x4x4x8", "pair": pair, "vs_bn": 1.0}
            for pair in layers.PAIRS]
    path = tmp_path / "plot.png"

    assert layers.plot(rows, str(path)) is installed

    assert path.exists() is installed
    assert ("matplotlib is not installed" in capsys.readouterr().out) is (
        not installed)


def test_batch_size_study_quick_writes_csv_table_and_plot(tmp_path):
    rows, stdout = _run("batch_size_study.py",
                        ["--quick", "--steps", "10", "--seeds", "2"], tmp_path)
    # 3 norms x 2 batch sizes x 2 seeds, each a real held-out accuracy.
    assert len(rows) == 12
    assert {r["norm"] for r in rows} == {"bn", "gn", "frn"}
    assert {int(r["batch_size"]) for r in rows} == {2, 32}
    assert {r["split"] for r in rows} == {"test"}
    assert all(0.0 <= float(r["accuracy"]) <= 1.0 for r in rows)
    table = (tmp_path / "result.md").read_text()
    for norm in ["bn", "gn", "frn"]:
        assert f"| {norm} | 0.1 |" in table
    assert table.count("±") == 6
    assert (tmp_path / "result.png").stat().st_size > 0
    # A rerun finds every row done and trains nothing.
    _, again = _run("batch_size_study.py",
                    ["--quick", "--steps", "10", "--seeds", "2"], tmp_path)
    assert "[1/6]" not in again and "seed 0 lr" not in again


def test_layer_timings_wait_for_the_gpu_before_stopping_the_clock(
        monkeypatch):
    # A GPU call returns once its kernels are queued; a timing that stops the
    # clock then measures the queueing. Pretend a GPU is present and check
    # that every timed call is followed by a device sync inside its timing.
    layers = load_benchmark("layers")
    events = []
    monkeypatch.setattr(layers.tf.config, "list_physical_devices",
                        lambda kind=None: ["GPU:0"] if kind == "GPU" else [])
    monkeypatch.setattr(layers.tf.test.experimental, "sync_devices",
                        lambda: events.append("sync"))
    clock = iter(range(1000))
    monkeypatch.setattr(layers.time, "perf_counter",
                        lambda: events.append("clock") or next(clock))
    times = layers.measure({"a": lambda: events.append("a"),
                            "b": lambda: events.append("b")},
                           repeats=2, warmup=1)
    timed = events[events.index("clock"):]
    assert timed == ["clock", "a", "sync", "clock",
                     "clock", "b", "sync", "clock"] * 2
    assert len(times["a"]) == len(times["b"]) == 2


def test_masked_benchmark_quick(tmp_path):
    rows, stdout = _run("masked.py", ["--quick"], tmp_path)
    assert {(r["pair"], r["mask"]) for r in rows} == {
        ("frn_tlu", "yes"), ("frn_tlu_fused", "yes"), ("bn_relu", "yes"),
        ("frn_tlu", "no"), ("frn_tlu_fused", "no"), ("bn_relu", "no"),
        ("ln_relu", "no")}
    assert {r["pass"] for r in rows} == {"fwd", "fwd+bwd"}
    assert all(_positive(r, "median_ms", "vs_bn") for r in rows)
    assert all(0.5 <= float(r["valid_fraction"]) < 1 for r in rows)
    assert "| frn_tlu_fused | yes |" in stdout
    assert _progress(stdout) == ["XLA on, 16x128x512: 14 steps x 3 repeats"]
    # BN + ReLU's ratio is taken with the same mask and pass.
    for r in rows:
        bn = next(float(q["median_ms"]) for q in rows if q["pair"] == "bn_relu"
                  and (q["mask"], q["pass"]) == (r["mask"], r["pass"]))
        assert float(r["vs_bn"]) == pytest.approx(
            float(r["median_ms"]) / bn, rel=1e-9)
    # The mask's cost is given for masked rows only.
    for r in rows:
        assert (r["mask_cost"] != "") == (r["mask"] == "yes")
        if r["mask"] == "yes":
            assert _positive(r, "mask_cost")


def test_masked_benchmark_gives_the_mask_to_the_layers_that_take_one():
    masked = load_benchmark("masked")
    mask = masked.padding_mask(8, 10, seed=3)
    lengths = mask.sum(axis=1)
    assert np.all((lengths >= 5) & (lengths <= 10))
    # Each sample's valid steps come first.
    assert np.array_equal(mask, np.arange(10)[None, :] < lengths[:, None])

    rng = np.random.default_rng(0)
    x = masked.tf.constant(rng.normal(size=(8, 10, 6)), "float32")
    dy = masked.tf.constant(rng.normal(size=(8, 10, 6)), "float32")
    for pair, uses_mask in [("frn_tlu", True), ("frn_tlu_fused", True),
                            ("bn_relu", True), ("ln_relu", False)]:
        results = [
            masked.make_step(masked.PAIRS[pair], x, dy, backward=True,
                             jit_compile=False, inner=1, mask=m)().numpy()
            for m in (masked.tf.constant(mask), None)]
        assert np.all(np.isfinite(results[0])), pair
        assert (not np.allclose(*results, rtol=1e-6)) == uses_mask, pair


@pytest.mark.parametrize("script,flags,message", [
    *[(script, [flag, value], f"{flag} must be >= {minimum}, got {value}")
      for script in ("layers", "masked")
      for flag, value, minimum in [("--inner", "0", 1), ("--repeats", "2", 3),
                                   ("--batch", "0", 1)]],
    ("inference", ["--batches", "1", "0", "32"], "--batches must be >= 1, got 0"),
    ("inference", ["--image-size", "16"], "--image-size must be >= 32, got 16"),
    ("wide_view", ["--repeats", "1"], "--repeats must be >= 3, got 1"),
    ("graph_ops", ["--chain", "0"], "--chain must be >= 1, got 0"),
    ("hlo_traffic", ["--batch", "-1"], "--batch must be >= 1, got -1"),
    ("train_step", ["--rounds", "0"], "--rounds must be >= 1, got 0"),
    ("xla_cpu_forms", ["--train-batch", "0"],
     "--train-batch must be >= 1, got 0"),
    ("batch_size_study", ["--batch-sizes", "2", "0"],
     "--batch-sizes must be >= 1, got 0"),
    ("batch_size_study", ["--lr-grid", "0.1", "-0.2"],
     "--lr-grid must be > 0, got -0.2"),
    ("batch_size_study", ["--lr-grid", "nan"], "--lr-grid must be > 0, got nan"),
])
def test_benchmark_scripts_refuse_bad_flags_by_name_and_value(
        script, flags, message, capsys):
    with pytest.raises(SystemExit) as error:
        load_benchmark(script).main(flags)
    assert error.value.code == 2
    assert message in capsys.readouterr().err
