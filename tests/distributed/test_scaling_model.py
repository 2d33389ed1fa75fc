"""benchmarks/dist_scaling_model.py: the alpha-beta cost model's pure functions against hand-computed values, and the
``predict`` stage on given inputs (no MPI, no model, nothing timed)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "dist_scaling_model.py"


@pytest.fixture(scope="module")
def model():
    spec = importlib.util.spec_from_file_location("dist_scaling_model", _PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_ring_allreduce_costs_2_p_minus_1_latencies_and_2_p_minus_1_over_p_of_the_bytes(model):
    # P = 4, n = 1e6 B, alpha = 10 us, beta = 1 ns/B: 6 * 1e-5 + 1.5 * 1e6 * 1e-9 = 6e-5 + 1.5e-3
    assert model.ring_allreduce_time(1e6, 4, 1e-5, 1e-9) == pytest.approx(1.56e-3, rel=1e-12)
    assert model.ring_allreduce_time(1e6, 2, 1e-5, 1e-9) == pytest.approx(2e-5 + 1e-3, rel=1e-12)
    assert model.ring_allreduce_time(1e6, 1, 1e-5, 1e-9) == 0.0  # alone: nothing to send
    # the bandwidth term tends to 2 n beta: at P = 64, 2 * 63 / 64 * 1e6 * 1e-9 = 1.96875e-3 (alpha 0)
    assert model.ring_allreduce_time(1e6, 64, 0.0, 1e-9) == pytest.approx(1.96875e-3, rel=1e-12)
    with pytest.raises(ValueError, match="P must be at least 1, got 0"):
        model.ring_allreduce_time(1e6, 0, 1e-5, 1e-9)


def test_step_time_subtracts_no_overlap_or_at_most_the_hidden_backward(model):
    assert model.step_time(1.0, 0.3, 0.2, "none") == pytest.approx(1.3)
    assert model.step_time(1.0, 0.3, 0.2, "full") == pytest.approx(1.1)  # 0.2 of the 0.3 s hide in the backward
    assert model.step_time(1.0, 0.1, 0.2, "full") == pytest.approx(1.0)  # all of it hides
    with pytest.raises(ValueError, match="overlap must be 'none' or 'full', got 'some'"):
        model.step_time(1.0, 0.1, 0.2, "some")


def test_weak_and_strong_speedups(model):
    # weak: P * T_c / (T_c + T_ar); T_ar(1e6 B, P = 4) = 1.56e-3 s as above
    assert model.weak_speedup(4, 1.0, 0.0, 1e6, 1e-5, 1e-9, "none") == pytest.approx(4 / 1.00156, rel=1e-12)
    assert model.weak_speedup(1, 1.0, 0.0, 1e6, 1e-5, 1e-9, "none") == 1.0
    # strong, P = 2, alpha = 0.1 s, beta = 0: T_ar = 0.2; T_c(B) = 2, T_c(B/2) = 1, T_hide(B/2) = 0.5
    assert model.strong_speedup(2, 2.0, 1.0, 0.5, 1e6, 0.1, 0.0, "none") == pytest.approx(2 / 1.2)
    assert model.strong_speedup(2, 2.0, 1.0, 0.5, 1e6, 0.1, 0.0, "full") == pytest.approx(2.0)


def test_fit_alpha_beta_recovers_the_parameters_of_exact_times(model):
    sizes = [8, 1024, 2**20, 2**26]
    alpha, beta = 3e-6, 5e-10
    assert model.fit_alpha_beta(sizes, [alpha + n * beta for n in sizes], 1, 1) == pytest.approx((alpha, beta))
    ring = [model.ring_allreduce_time(n, 4, alpha, beta) for n in sizes]  # P = 4: 6 messages, 1.5 n bytes
    assert model.fit_alpha_beta(sizes, ring, 6, 1.5) == pytest.approx((alpha, beta))
    with pytest.raises(ValueError, match="needs >= 2 sizes and as many positive times"):
        model.fit_alpha_beta([8], [1e-6], 1, 1)


def compute_record(model) -> dict:
    """A compute-stage record: T_compute(b) = 1 ms + 1 ms per image, T_hide = half of it, 4 MB of gradient."""
    batches = {model.WEAK_BATCH} | {model.STRONG_BATCH // P for P in (1, *model.NODES)}
    steps = {b: {"step_s": 1e-3 * (1 + b), "hide_s": 0.5e-3 * (1 + b)} for b in batches}
    return {
        "models": {"toy": {"grad_bytes": 4_000_000, "buckets": 2, "batches": {str(b): v for b, v in steps.items()}}}
    }


def test_predict_gives_weak_and_strong_speedups_per_link_and_overlap(model):
    rows = model.predict(compute_record(model), {"slow": (1e-3, 1e-9)})
    assert [(r["model"], r["link"], r["overlap"]) for r in rows] == [("toy", "slow", "none"), ("toy", "slow", "full")]
    none, full = rows
    # weak, P = 2: T_c(128) = 0.129 s, T_ar = 2e-3 + 4e6 * 1e-9 = 6e-3 s (hidden entirely: T_hide = 64.5 ms)
    assert none["weak"][2] == pytest.approx(2 * 0.129 / 0.135)
    assert full["weak"][2] == pytest.approx(2.0)
    # strong, P = 64: T_c(512) = 0.513 s, T_c(8) = 9 ms, T_ar = 126e-3 + 2 * 63 / 64 * 4e-3 s; T_hide(8) = 4.5 ms
    T_ar = 126e-3 + 2 * 63 / 64 * 4e-3
    assert none["strong"][64] == pytest.approx(0.513 / (0.009 + T_ar))
    assert full["strong"][64] == pytest.approx(0.513 / (0.009 + T_ar - 0.0045))
    table = model.markdown_table(rows, "strong").splitlines()
    assert table[0] == "| model | link | P=2 | P=4 | P=8 | P=16 | P=32 | P=64 |" and len(table) == 3
    low, high = 0.513 / (0.009 + T_ar), 0.513 / (0.009 + T_ar - 0.0045)
    assert table[2].startswith("| toy | slow | ") and table[2].endswith(f" | {low:.1f}-{high:.1f} |")
    # what-if: nodes 10x faster than the measured process: compute and T_hide divided by 10
    (fast, _) = model.predict(compute_record(model), {"slow": (1e-3, 1e-9)}, node_speedup=10)
    assert fast["weak"][2] == pytest.approx(2 * 0.0129 / (0.0129 + 0.006))


def test_the_check_compares_two_processes_with_the_prediction(model):
    measured = [
        {"model": "toy", "world_size": 1, "global_batch": 128, "step_s": 0.129, "load_average": [2.0, 2.0, 2.0]},
        {"model": "toy", "world_size": 2, "global_batch": 128, "step_s": 0.080, "load_average": [2.0, 2.0, 2.0]},
        {"model": "toy", "world_size": 2, "global_batch": 128, "step_s": 0.070, "load_average": [2.0, 2.0, 2.0]},
    ]
    (check,) = model.check_against_measured(compute_record(model), 1e-3, 1e-9, measured)
    # predicted: T_c(64) = 65 ms + T_ar(4 MB, P = 2) = 6 ms; full overlap hides all of it (T_hide = 32.5 ms)
    assert check["predicted_2"]["none"] == pytest.approx(128 / 0.071)
    assert check["predicted_2"]["full"] == pytest.approx(128 / 0.065)
    assert check["measured_2"] == pytest.approx([128 / 0.080, (128 / 0.080 + 128 / 0.070) / 2, 128 / 0.070])
    assert check["measured_1"] == pytest.approx([128 / 0.129] * 3)
    # per round: measured 0.129 / 0.080; predicted 0.129 / (0.0645 + 0.006); the third run has no 1-process partner
    (round_1,) = check["speedup_per_round"]
    assert round_1 == pytest.approx({"measured": 0.129 / 0.080, "predicted": 0.129 / 0.0705})


def test_help_runs():
    proc = subprocess.run([sys.executable, str(_PATH), "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "compute" in proc.stdout and "network" in proc.stdout and "predict" in proc.stdout


def test_the_predict_stage_runs_on_given_inputs_without_mpi(model, tmp_path, capsys):
    (tmp_path / "compute.json").write_text(json.dumps(compute_record(model)))
    sizes = [8, 2**20]
    network = {"allreduce_fit": {"alpha": 1e-5, "beta": 1e-9}, "sizes": sizes, "allreduce_s": [2e-5, 1e-3]}
    (tmp_path / "network.json").write_text(json.dumps(network))
    bench = {"model": "toy", "global_batch": 128, "step_s": 0.1, "load_average": [1.0, 1.0, 1.0]}
    lines = [json.dumps(bench | {"world_size": P}) for P in (1, 2)]
    (tmp_path / "bench.jsonl").write_text("\n".join(lines) + "\n")
    argv = ["predict", "--compute", str(tmp_path / "compute.json"), "--network", str(tmp_path / "network.json"),
            "--measured", str(tmp_path / "bench.jsonl"), "--json", str(tmp_path / "out.json")]  # fmt: skip
    model.main(argv)
    printed = capsys.readouterr().out
    assert "## weak scaling" in printed and "## strong scaling" in printed and "| toy | 128 |" in printed
    record = json.loads((tmp_path / "out.json").read_text())
    assert len(record["predictions"]) == 2 * (1 + len(model.LINKS))  # this machine + the assumed links, 2 bounds
    assert record["check"][0]["model"] == "toy"
    pytest.importorskip("matplotlib")
    model.main([*argv[:3], "--figure", str(tmp_path / "speedup.png")])
    assert (tmp_path / "speedup.png").stat().st_size > 1000
