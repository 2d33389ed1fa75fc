"""The CPU benchmarks run and their history works: bench_train.py with tiny settings writes a record with every
field, compare_bench.py compares two records, flags a regression and refuses a file that is not a record;
bench_pinned.py runs models pinned side by side and merges their records; bench_layers.py and bench_depthwise.py
print their tables. Nothing here looks at a timing (the benchmarks are
scripts, run by hand on a quiet machine)."""

from __future__ import annotations

import copy
import importlib
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"


def _module(name: str):
    sys.path.insert(0, str(BENCH))
    return importlib.import_module(name)


def _run(script: str, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(BENCH / script), *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600)


@pytest.fixture(scope="module")
def record_path(tmp_path_factory) -> Path:
    """One tiny run: cifar_cnn, batch 4, one warm-up and one timed step, Numba (NumPy without it) and PyTorch when
    installed."""
    frameworks = ["numba" if importlib.util.find_spec("numba") else "numpy"]
    if importlib.util.find_spec("torch"):
        frameworks.append("torch")
    path = tmp_path_factory.mktemp("bench") / "run.json"
    args = ["--models", "cifar_cnn", "--batch", "4", "--warmup", "1", "--repeats", "1", "--numpy-repeats", "1"]
    proc = _run("bench_train.py", *args, "--frameworks", *frameworks, "--json", str(path))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert f"wrote {path}" in proc.stdout
    return path


def test_bench_train_writes_a_record_with_every_field(record_path):
    record = json.loads(record_path.read_text())
    assert record["format"] == "minidl-bench-train" and record["version"] == 1
    machine = record["machine"]
    for key in ("cpu", "avx512f", "cores_available", "threads", "python", "numpy", "numba", "torch", "minidl_commit"):
        assert key in machine, key
    assert isinstance(machine["cpu"], str) and machine["cpu"]
    assert len(machine["loadavg_start"]) == 3 and len(machine["loadavg_end"]) == 3
    assert record["batches"] == {"cifar_cnn": {"train": 4, "infer": 4}}
    assert record["args"]["models"] == ["cifar_cnn"] and "worker" not in record["args"]
    assert record["forward_flops_per_image"]["cifar_cnn"] > 0
    for result in record["results"]:
        assert "error" not in result, result
        assert result["model"] == "cifar_cnn" and result["peak_rss_mb"] > 0
        assert result["train"]["n"] == 1 and result["infer"]["img_per_s"] > 0
        assert len(result["rounds"]) == 1 and set(result["rounds"][0]) == {
            "train_img_per_s", "infer_img_per_s", "peak_rss_mb"
        }  # fmt: skip
        assert "autotune" not in result and not record["args"]["autotune"]  # (the rules: no choices to list)
    if machine["torch"] is None:
        assert record["ratios"] == []
    else:
        assert {(r["framework"], r["reference"], r["mode"]) for r in record["ratios"]} == {
            (record["results"][0]["framework"], "torch", mode) for mode in ("train", "infer", "rss")
        }
        for r in record["ratios"]:
            assert r["rounds"] == len(r["per_round"]) == 1 and r["min"] == r["median"] == r["max"] == r["best"] > 0


def test_bench_train_autotune_records_the_choices(tmp_path):
    pytest.importorskip("numba", reason="the autotuner is the Numba backend's")
    path = tmp_path / "tuned.json"
    args = ["--models", "cifar_cnn", "--batch", "4", "--warmup", "1", "--repeats", "1", "--frameworks", "numba"]
    proc = _run("bench_train.py", *args, "--autotune", "--json", str(path))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    record = json.loads(path.read_text())
    [result] = record["results"]
    assert record["args"]["autotune"] and result["autotune"]  # each convolution's choice, one of those it timed
    for choice in result["autotune"]:
        assert choice["direction"] in ("forward", "backward", "dx", "dw") and choice["algorithm"] in choice["ms"]
        assert choice["x"][0] == 4 and choice["threads"] >= 1


FAKE = {"format": "minidl-bench-train", "version": 1, "created": "2026-12-03T12:00:00Z", "results": []}
FAKE["machine"] = {"cpu": "Test CPU", "threads": 2, "minidl_commit": None}


def _fake_record(mode_ratios: dict[str, float]) -> dict:
    record = copy.deepcopy(FAKE)
    record["ratios"] = [
        {"model": "resnet20", "framework": "numba", "reference": "torch", "mode": mode, "per_round": [v],
         "min": v, "median": v, "max": v, "best": v, "rounds": 1}
        for mode, v in mode_ratios.items()
    ]  # fmt: skip
    return record


def test_compare_bench_flags_a_regression_beyond_the_threshold(tmp_path):
    old, new = tmp_path / "old.json", tmp_path / "new.json"
    old.write_text(json.dumps(_fake_record({"train": 1.00, "infer": 1.20, "rss": 0.50})))
    # train 10 % slower (a regression), infer 4 % slower (within 5 %), rss 8 % more memory (a regression)
    new.write_text(json.dumps(_fake_record({"train": 0.90, "infer": 1.152, "rss": 0.54})))
    proc = _run("compare_bench.py", str(old), str(new), "--threshold", "5", "--fail-on-regression")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    rows = {line.split()[1]: line for line in proc.stdout.splitlines() if line.startswith("resnet20")}
    assert rows["train"].split()[2:] == ["1.000", "0.900", "-10.0", "REGRESSION"]
    assert rows["infer"].split()[2:] == ["1.200", "1.152", "-4.0"]
    assert rows["rss"].split()[2:] == ["0.500", "0.540", "+8.0", "REGRESSION"]
    assert "2 regression(s) beyond 5 %" in proc.stdout
    assert _run("compare_bench.py", str(old), str(new)).returncode == 0  # flagged, but not asked to fail
    proc = _run("compare_bench.py", str(old), str(new), "--threshold", "12", "--fail-on-regression")
    assert proc.returncode == 0 and "REGRESSION" not in proc.stdout


def test_compare_bench_on_two_real_records(record_path, tmp_path):
    proc = _run("compare_bench.py", str(record_path), str(record_path), "--fail-on-regression")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 regression(s)" in proc.stdout


def test_compare_bench_warns_when_the_settings_differ(tmp_path):
    old, new = _fake_record({"train": 1.0}), _fake_record({"train": 1.0})
    old["args"], old["batches"] = {"channels_last": False}, {"resnet20": {"train": 128, "infer": 128}}
    new["args"], new["batches"] = {"channels_last": True}, {"resnet20": {"train": 4, "infer": 128}}
    new["machine"]["threads"] = 1
    paths = tmp_path / "old.json", tmp_path / "new.json"
    for path, record in zip(paths, (old, new), strict=True):
        path.write_text(json.dumps(record))
    proc = _run("compare_bench.py", *map(str, paths))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (
        "warning: the records were made with different settings (threads 2 -> 1, channels_last False -> True, "
        "resnet20 train batch 128 -> 4)"
    ) in proc.stdout
    proc = _run("compare_bench.py", str(paths[0]), str(paths[0]))
    assert "warning" not in proc.stdout


def test_compare_bench_refuses_a_file_that_is_not_a_record(tmp_path, record_path):
    old_style = tmp_path / "old_style.json"
    old_style.write_text(json.dumps({"machine": {}, "results": []}))  # what bench_train.py --json wrote before
    proc = _run("compare_bench.py", str(old_style), str(record_path))
    assert proc.returncode == 2
    assert f"compare_bench.py: {old_style}: not a bench_train.py record" in proc.stderr
    assert 'expected "format": "minidl-bench-train", got None' in proc.stderr
    text = tmp_path / "notes.txt"
    text.write_text("train 1.2x\n")
    proc = _run("compare_bench.py", str(record_path), str(text))
    assert proc.returncode == 2 and f"{text}: not a bench_train.py record (not JSON" in proc.stderr
    broken = _fake_record({"train": 1.0})
    del broken["ratios"][0]["median"]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(broken))
    proc = _run("compare_bench.py", str(bad), str(bad))
    assert proc.returncode == 2 and f"{bad}: ratios[0] is not a ratio entry (missing ['median']" in proc.stderr


def _as_model(record: dict, model: str) -> dict:
    """``record`` (of cifar_cnn) relabelled as a run of ``model``, as if that model had been benchmarked."""
    record = copy.deepcopy(record)
    record["args"]["models"] = [model]
    record["batches"] = {model: record["batches"]["cifar_cnn"]}
    record["forward_flops_per_image"] = {model: record["forward_flops_per_image"]["cifar_cnn"]}
    for entry in record["results"] + record["ratios"]:
        entry["model"] = model
    return record


def test_merge_records_makes_one_record_of_models_run_side_by_side(record_path, tmp_path):
    real = json.loads(record_path.read_text())
    a, b, merged = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "merged.json"
    a.write_text(json.dumps(_as_model(real, "resnet20")))
    b.write_text(json.dumps(_as_model(real, "vgg11_bn")))
    proc = _run("merge_records.py", str(merged), str(a), str(b), "--note", "two cores each")
    assert proc.returncode == 0, proc.stderr
    record = json.loads(merged.read_text())
    assert record["args"]["models"] == ["resnet20", "vgg11_bn"] and record["note"] == "two cores each"
    assert {r["model"] for r in record["results"]} == {r["model"] for r in record["ratios"]} == {"resnet20", "vgg11_bn"}
    assert len(record["ratios"]) == 2 * len(real["ratios"]) and set(record["batches"]) == {"resnet20", "vgg11_bn"}
    assert record["args"]["repeats"] == {"resnet20": real["args"]["repeats"], "vgg11_bn": real["args"]["repeats"]}
    assert _run("compare_bench.py", str(merged), str(merged), "--fail-on-regression").returncode == 0
    # refused, naming what is wrong: a model in two inputs, inputs from two CPUs or of two run settings, an
    # incomplete record, the output among the inputs, an existing output without --force
    out = tmp_path / "x.json"
    proc = _run("merge_records.py", str(out), str(a), str(a))
    assert proc.returncode == 2 and "model 'resnet20' is also in" in proc.stderr
    for where, field, value, message in [
        ("machine", "cpu", "Another CPU", "machine cpu is 'Another CPU'"),
        ("args", "rounds", 7, "args rounds is 7"),
    ]:
        other = _as_model(real, "vgg11_bn")
        other[where][field] = value
        b.write_text(json.dumps(other))
        proc = _run("merge_records.py", str(out), str(a), str(b))
        assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    incomplete = _as_model(real, "vgg11_bn")
    del incomplete["batches"]
    b.write_text(json.dumps(incomplete))
    proc = _run("merge_records.py", str(out), str(a), str(b))
    assert proc.returncode == 2 and f"{b}: an incomplete bench_train.py record (no 'batches' field)" in proc.stderr
    assert not out.exists()
    proc = _run("merge_records.py", str(a), str(a), str(b))
    assert proc.returncode == 2 and "the output is also an input" in proc.stderr
    before = merged.read_text()
    b.write_text(json.dumps(_as_model(real, "vgg11_bn")))
    proc = _run("merge_records.py", str(merged), str(a), str(b))
    assert proc.returncode == 2 and "exists; add --force" in proc.stderr and merged.read_text() == before
    assert _run("merge_records.py", str(merged), str(a), str(b), "--force").returncode == 0


def test_ratios_per_round_and_summarized():
    record = _module("_record")

    def run(train, infer, rss):
        return {"train": {"img_per_s": train}, "infer": {"img_per_s": infer}, "peak_rss_mb": rss}

    runs = {
        ("m", "numba"): [run(100, 400, 50), run(90, 300, 60), {"error": "killed"}],
        ("m", "torch"): [run(50, 200, 100), run(100, 200, 100), run(100, 200, 100)],
    }
    best = {("m", "numba"): run(100, 400, 60), ("m", "torch"): run(100, 200, 100)}
    table = {r["mode"]: r for r in record.ratios(runs, best, "torch")}
    assert table["train"]["per_round"] == [2.0, 0.9] and table["train"]["rounds"] == 2  # the failed round is left out
    assert (table["train"]["min"], table["train"]["median"], table["train"]["max"]) == pytest.approx((0.9, 1.45, 2.0))
    assert table["train"]["best"] == 1.0 and table["infer"]["per_round"] == [2.0, 1.5] and table["infer"]["best"] == 2
    assert table["rss"]["per_round"] == [0.5, 0.6] and table["rss"]["best"] == 0.6


def test_model_list_batches_and_history_path():
    bench = _module("bench_train")
    record = _module("_record")
    args = bench.parse_args(["--models", "all"])
    assert args.models == ["cifar_cnn", "resnet20", "resnet56", "vgg11_bn", "mobilenet_v2", "airbench94", "vit_cifar"]
    assert bench.parse_args([]).models == ["cifar_cnn", "resnet20"]
    assert bench.parse_args(["--models", "vit_cifar", "resnet56", "vit_cifar"]).models == ["vit_cifar", "resnet56"]
    assert bench.batches("airbench94", args) == {"train": 1024, "infer": 128}
    assert bench.batches("vit_cifar", args) == {"train": 128, "infer": 128}
    assert bench.batches("airbench94", bench.parse_args(["--batch", "8"])) == {"train": 8, "infer": 8}
    path = record.default_record_path({"created": "2026-12-03T12:30:59Z", "machine": {"cpu": "AMD EPYC 9R14 (x2)"}})
    assert path == BENCH / "history" / "2026-12-03T1230Z-amd-epyc-9r14-x2.json"


@pytest.mark.parametrize(
    "mode",
    [["--mode", "train"], ["--mode", "infer"] + (["--torch"] if importlib.util.find_spec("torch") else [])],
    ids=["train", "infer"],
)
def test_bench_layers_runs_and_prints_every_layer(mode):
    # one tiny step of cifar_cnn; every leaf layer gets a row, and with --torch PyTorch's sums by type come after
    backend = "numba" if importlib.util.find_spec("numba") else "numpy"
    args = ["--model", "cifar_cnn", "--batch", "2", "--warmup", "1", "--repeats", "1", "--backend", backend, *mode]
    proc = _run("bench_layers.py", *args)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith(f"cifar_cnn (fused, {mode[1]}), backend {backend}, batch 2")
    assert any(line.startswith("features.0 ") for line in lines) and lines[-1].startswith("sum of layers")
    assert ("PyTorch forward" in lines[0]) == ("--torch" in mode)
    assert any(line.startswith("PyTorch Conv2d") for line in lines) == ("--torch" in mode)


def test_bench_train_feeds_the_baseline_the_layout_it_feeds_minidl(monkeypatch):
    # --channels-last goes to this checkout's minidl workers and to the baseline's (it once went to the first only)
    bench = _module("bench_train")
    commands = []

    def fake_run(cmd, **kwargs):
        commands.append(cmd)
        return subprocess.CompletedProcess(cmd, 0, stdout='RESULT {"train": 1.0}\n', stderr="")

    monkeypatch.setattr(bench.subprocess, "run", fake_run)
    for options, expected in ((["--channels-last"], [True, True, False]), ([], [False, False, False])):
        commands.clear()
        args = bench.parse_args(["--models", "resnet20", "--baseline", str(ROOT), *options])
        for framework in ("numba", "baseline", "torch"):
            bench.spawn(framework, "resnet20", args)
        assert ["--channels-last" in cmd for cmd in commands] == expected, commands


def test_bench_train_refuses_channels_last_with_a_baseline_that_does_not_know_it(tmp_path):
    old = tmp_path / "old"
    (old / "benchmarks").mkdir(parents=True)
    (old / "benchmarks" / "bench_train.py").write_text("# a checkout from before channels_last\n")
    proc = _run("bench_train.py", "--models", "cifar_cnn", "--channels-last", "--baseline", str(old))
    assert proc.returncode != 0 and "does not know --channels-last" in proc.stderr + proc.stdout


def _clocked_run(model, x, layers):
    """The times of one forward of ``model`` on ``x`` under bench_layers' clocks, and whether the classes came back
    as they were."""
    from collections import defaultdict

    leaves = layers._leaves(model)
    classes = {type(m) for _, m in leaves}
    before = {cls: (cls.__dict__.get("forward"), cls.__dict__.get("backward")) for cls in classes}
    times, shapes = defaultdict(lambda: {"forward": [], "backward": []}), {}
    restore = layers._clock_classes(leaves, times, shapes)
    try:
        model(x)
    finally:
        restore()
    return times, before == {cls: (cls.__dict__.get("forward"), cls.__dict__.get("backward")) for cls in classes}


def test_bench_layers_clocks_the_classes_so_that_the_model_still_folds_and_joins(monkeypatch):
    # a module with a forward of its own is one nn.fuse neither folds nor joins: the clocks wrap the classes, and the
    # fused model runs its shortcuts as it does untimed
    layers = _module("bench_layers")
    import numpy as np

    import minidl
    from minidl import models, nn

    folds = []
    original = nn.ConvBn2d.folded_parameters
    monkeypatch.setattr(nn.ConvBn2d, "folded_parameters", lambda self: folds.append(self) or original(self))
    fused = nn.fuse(models.resnet20(num_classes=10)).eval()
    with minidl.no_grad():
        times, restored = _clocked_run(fused, np.zeros((2, 3, 32, 32), np.float32), layers)
    assert restored
    assert len(folds) == sum(isinstance(m, nn.ConvBn2d) for m in fused.modules()) == 21  # every one folded
    assert len(times["layer1.0.conv2"]["forward"]) == 1  # the joined block end: bn2, add and relu2 not called
    assert not {"layer1.0.bn2", "layer1.0.add", "layer1.0.relu2"} & times.keys()
    assert len(times["layer1.0.bn1"]["forward"]) == 1  # (passes the folded output on)
    # in training a ConvBn2d calls Conv2d.forward, whose class is clocked too (a plain Conv2d leaf): timed once
    minidl.manual_seed(0)
    net = nn.fuse(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 2, 1)))
    times, restored = _clocked_run(net, np.zeros((2, 3, 5, 5), np.float32), layers)
    assert restored and [len(times[name]["forward"]) for name in "0123"] == [1, 1, 1, 1]


def test_bench_layers_times_the_joined_block_ends_in_training():
    # the joined BatchNorm's row (forward and backward); the Add and ReLU it ran have none
    backend = "numba" if importlib.util.find_spec("numba") else "numpy"
    args = ["--model", "resnet20", "--batch", "2", "--warmup", "1", "--repeats", "1", "--backend", backend]
    proc = _run("bench_layers.py", *args)
    assert proc.returncode == 0, proc.stderr
    rows = {line.split()[0]: line.split() for line in proc.stdout.splitlines()[3:] if line.startswith("layer1.0.")}
    assert rows["layer1.0.bn2"][1] == "FoldedBatchNorm2d" and float(rows["layer1.0.bn2"][4]) > 0
    assert "layer1.0.add" not in rows and "layer1.0.relu2" not in rows


def test_bench_layers_refuses_torch_in_training():
    proc = _run("bench_layers.py", "--torch")
    assert proc.returncode == 2 and "--torch times PyTorch's layers in inference only" in proc.stderr


def test_bench_winograd_runs_every_shape_every_way():
    # batch 2, one timed run: a row per shape with the default way and the four ways' times (PyTorch's NaN without it);
    # the first line names the layouts it ran
    pytest.importorskip("numba", reason="the Winograd kernels are the Numba backend's")
    proc = _run("bench_winograd.py", "--batch", "2", "--repeats", "1", "--threads", "1")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    torch_layout = "NCHW" if importlib.util.find_spec("torch") else "not installed"
    assert lines[0].endswith(f"minidl NCHW, PyTorch {torch_layout}"), lines[0]
    assert "F(4x4) f/b" in lines[2] and "x im2row" in lines[2]
    rows = [line for line in lines[4:] if line.strip()]
    assert [row.split()[0] + " " + row.split()[2] for row in rows] == [
        f"{c}->{o} {h}" for c, o, h in _module("bench_winograd").SHAPES
    ]
    # the default way's own ratio is 1 (its times over its times)
    ways = _module("bench_winograd").WAYS
    for row in rows:
        cells = row.split()
        assert cells[3] in ways and cells[-len(ways) + ways.index(cells[3])] == "1.00/1.00", row


def test_bench_winograd_channels_last_options_reach_the_arrays_of_both_frameworks():
    # --channels-last: minidl's x, dout, output and dx channels_last; --torch-channels-last: PyTorch's x, output and dx
    pytest.importorskip("numba", reason="the Winograd kernels are the Numba backend's")
    import minidl
    from minidl.memory_format import channels_last, suggest_memory_format

    module = _module("bench_winograd")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 16, 8, 8)).astype(np.float32)
    w, b = rng.standard_normal((16, 16, 3, 3)).astype(np.float32), rng.standard_normal(16).astype(np.float32)
    with minidl.use_backend("numba") as be:
        for name in ("F(2x2)", "F(4x4)", "im2row"):
            forward, backward = module.steps(be, name, x, w, b, channels_last=True)
            (out, _), (dx, dw, db) = forward(), backward()  # the pairs: (out, cache) and the gradients
            assert suggest_memory_format(out) == suggest_memory_format(dx) == channels_last, name
            assert dw.shape == w.shape and db.shape == b.shape
    torch = pytest.importorskip("torch")
    forward, backward = module.steps(None, "torch", x, w, b, channels_last=True)
    dx = backward()[0]
    assert forward().is_contiguous(memory_format=torch.channels_last)
    assert dx.is_contiguous(memory_format=torch.channels_last)


def test_bench_convs_times_every_distinct_convolution_of_the_model():
    # resnet20, batch 2, one timed run: a row per distinct convolution (their counts add up to the model's Conv2d
    # layers), three ways' forward / backward times (PyTorch's NaN without it), and the sum over the layers
    pytest.importorskip("numba", reason="minidl's side runs on the Numba backend")
    proc = _run("bench_convs.py", "--model", "resnet20", "--batch", "2", "--repeats", "1", "--threads", "1")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("resnet20: its convolutions one at a time") and lines[0].endswith(
        "channels_last" if importlib.util.find_spec("torch") else "(PyTorch not installed)"
    )
    rows = [line.split() for line in lines[4:-2]]
    module = _module("bench_convs")
    convs = module.model_convolutions("resnet20")
    assert [" ".join(row[:4]) for row in rows] == [module.describe(conv) for conv, _ in convs]
    assert [int(row[4]) for row in rows] == [count for _, count in convs]
    from minidl import models, nn

    assert sum(count for _, count in convs) == sum(isinstance(m, nn.Conv2d) for m in models.resnet20().modules())
    assert lines[-1].startswith("all, times n")
    for row in rows:
        minidl_f, minidl_b = (float(t) for t in row[5].split("/"))
        assert minidl_f > 0 and minidl_b > 0, row


def test_bench_winograd_parts_times_every_step_of_the_f4x4_shapes():
    # batch 8, one timed run: a row per shape that runs F(4x4, 3x3) at that batch, forward and dW, every step timed
    pytest.importorskip("numba", reason="the Winograd kernels are the Numba backend's")
    proc = _run("bench_winograd_parts.py", "--batch", "8", "--repeats", "1", "--threads", "1")
    assert proc.returncode == 0, proc.stderr
    tables = proc.stdout.split("weight gradient")
    assert len(tables) == 2 and "forward (conv2d + bias + ReLU)" in tables[0]
    module = _module("bench_winograd_parts")
    import minidl

    with minidl.use_backend("numba") as be:
        expected = [f"{c}->{o}" for c, o, h in module.SHAPES if be._winograd4_applies(8, c, o, h, h)]
    assert expected  # some zoo shapes run F(4x4, 3x3) at batch 8
    for table, steps in zip(tables, (module.FORWARD, module.WEIGHT), strict=True):
        rows = [line.split() for line in table.splitlines() if " @ " in line and not line.startswith("C->O")]
        assert [row[0] for row in rows] == expected
        for row in rows:  # name, @, H, nb, the steps (us), layout share, the sum (ms), the whole layer (ms)
            times = [float(cell) for cell in row[4 : 4 + len(steps)]]
            assert all(t >= 0 for t in times) and sum(times) > 0, row
            assert row[4 + len(steps)].endswith("%") and float(row[-1]) > 0, row


def test_bench_depthwise_runs_every_shape_every_way():
    # batch 2, one timed run: a row per MobileNetV2 shape with the five ways' times (PyTorch's NaN without it)
    pytest.importorskip("numba", reason="the depthwise kernel is the Numba backend's")
    proc = _run("bench_depthwise.py", "--batch", "2", "--repeats", "1", "--no-numpy", "--threads", "1")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert "planes f/b" in lines[1] and "x planes" in lines[1]
    rows = [line for line in lines[3:] if line.strip()]
    assert [row.split(",")[0] for row in rows] == [f"{c}x{h}x{h}" for c, h, _ in _module("bench_depthwise").SHAPES]


def test_bench_pinned_runs_each_model_pinned_and_merges_their_records(tmp_path):
    out = tmp_path / "zoo.json"
    args = ["--models", "cifar_cnn", "resnet20", "--cores-per-model", "1", "--out", str(out), "--note", "smoke"]
    proc = _run("bench_pinned.py", *args, "--", "--frameworks", "numpy", "--batch", "2", "--warmup", "1",
                "--repeats", "1", "--numpy-repeats", "1")  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    record = json.loads(out.read_text())
    assert record["args"]["models"] == ["cifar_cnn", "resnet20"]
    assert {r["model"] for r in record["results"]} == {"cifar_cnn", "resnet20"}
    assert record["machine"]["threads"] == 1 and "pinned" in record["note"] and record["note"].endswith("smoke")


def test_bench_pinned_reports_a_failed_process_and_refuses_its_own_options(tmp_path):
    out = tmp_path / "zoo.json"
    tiny = ["--frameworks", "numpy", "--batch", "2", "--warmup", "1", "--repeats", "1", "--numpy-repeats", "1"]
    proc = _run("bench_pinned.py", "--models", "cifar_cnn", "--cores-per-model", "1", "--out", str(out), "--", *tiny,
                "--baseline", str(tmp_path / "nowhere"))  # fmt: skip
    assert proc.returncode == 1 and "cifar_cnn exited with 1" in proc.stderr and "not a minidl checkout" in proc.stderr
    assert not out.exists()
    for spelling in (["--threads", "3"], ["--threads=3"], ["--thread", "3"]):  # as bench_train.py would read them
        proc = _run("bench_pinned.py", "--models", "cifar_cnn", "--out", str(out), "--", *tiny, *spelling)
        assert proc.returncode != 0 and "--cores-per-model sets it" in proc.stderr, spelling
    proc = _run("bench_pinned.py", "--models", "cifar_cnn", "--out", str(out), "--", "--batch", "0")
    assert proc.returncode == 2 and "bench_train.py: error: argument --batch" in proc.stderr  # before any process
    proc = _run("bench_pinned.py", "--models", "cifar_cnn")
    assert proc.returncode == 2 and "--out FILE, --record" in proc.stderr
    assert not out.exists()


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="pins processes to cores (Linux)")
def test_device_cpu_run_script_writes_every_file(tmp_path):
    # benchmarks/device_cpu_run.sh, the prepared CPU measurement for a lent many-core machine, on tiny settings: every
    # step runs and leaves its file in $OUT (the records with both frameworks' rounds, the Winograd parts' table)
    pytest.importorskip("torch")
    env = {
        **os.environ, "PYTHON": sys.executable, "OUT": str(tmp_path), "MODELS": "cifar_cnn",
        "RESNETS": "resnet20", "ROUNDS": "1", "EXTRA": "--batch 4 --warmup 1 --repeats 1", "PARTS_REPEATS": "1",
    }  # fmt: skip
    run = subprocess.run(["bash", str(BENCH / "device_cpu_run.sh")], cwd=ROOT, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    files = {p.name for p in tmp_path.iterdir()}
    assert files == {"lscpu.txt", "versions.txt", "zoo.json", "zoo.txt", "resnets.json", "resnets.txt", "parts.txt"}
    for name, model, autotune in (("zoo", "cifar_cnn", True), ("resnets", "resnet20", False)):
        assert (tmp_path / f"{name}.txt").read_text().rstrip().endswith(f"{name}: exit 0")
        record = json.loads((tmp_path / f"{name}.json").read_text())
        assert {r["framework"] for r in record["results"]} >= {"numba", "torch"}, record["results"]
        assert record["args"]["autotune"] is autotune and record["args"]["models"] == [model]
    assert "parts: exit 0" in (tmp_path / "parts.txt").read_text()
    assert "numpy" in (tmp_path / "versions.txt").read_text()


def test_bench_block_times_a_stage_pair_by_pair_and_each_pair_alone():
    # 2 blocks of 8 channels at 8 x 8, batch 2: a row per pair, both columns positive, their ratio printed
    pytest.importorskip("numba", reason="the pairs run on the Numba backend")
    proc = _run(
        "bench_block.py", "--channels", "8", "--size", "8", "--batch", "2", "--blocks", "2", "--repeats", "1",
        "--threads", "1", "--no-bandwidth",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("2 basic blocks of 8 channels at 8 x 8, batch 2")
    rows = {line[:30].strip(): line[30:].split() for line in lines[3:] if line.strip()}
    assert set(rows) == {
        "conv2d forward", "batch_norm_relu forward", "batch_norm_add_relu forward", "batch_norm_add_relu backward",
        "conv2d backward", "batch_norm_relu backward", "add forward",
    }  # fmt: skip
    for name, times in rows.items():
        assert len(times) == 3 and all(float(t) >= 0 for t in times), name  # (2 decimals: a fast pair shows 0.00)


def test_bench_kernel_ab_times_a_model_with_and_without_a_kernel():
    # resnet20 at batch 2, one round of one step per arm: both arms timed, the ratios printed; an unknown op refused
    pytest.importorskip("numba", reason="the kernel table is the Numba backend's")
    proc = _run("bench_kernel_ab.py", "--op", "add", "--batch", "2", "--rounds", "2", "--steps", "1", "--threads", "1")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("resnet20 train, batch 2, 1 thread, with and without the kernel add")
    assert [line.split()[0] for line in lines[2:4]] == ["with", "without"]
    assert all(float(t) > 0 for line in lines[2:4] for t in line.split()[1:])
    assert lines[4].startswith("without / with: ")
    proc = _run("bench_kernel_ab.py", "--op", "no_such_op", "--batch", "2", "--rounds", "1", "--steps", "1")
    assert proc.returncode != 0 and "no such entry in the Numba backend's kernel table: ['no_such_op']" in proc.stderr
