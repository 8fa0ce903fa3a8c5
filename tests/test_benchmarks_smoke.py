"""The benchmark harness runs end to end at a tiny scale and writes the JSON / Markdown `make bench` relies on.

Numbers are not checked (a tiny run measures nothing meaningful); the shape is: every section's
figures, the agreement checks between implementations, and the target verdicts.
"""

from __future__ import annotations

import json

import pytest

from benchmarks import run

SECTIONS = ("features", "integrity", "profiling", "training")


def test_tiny_benchmark_writes_json_and_markdown(tmp_path):
    run.main(["--mode", "tiny", "--sections", ",".join(SECTIONS), "--out", str(tmp_path)])

    results = json.loads((tmp_path / "latest.json").read_text())
    assert results["meta"]["mode"] == "tiny"
    assert set(SECTIONS) <= results.keys()

    (scale,) = results["features"]["scales"].values()
    assert set(scale["impls"]) == {"ours", "pandas", "floor"}
    for impl in scale["impls"].values():
        assert impl["rows_per_s"]["best"] > 0
        assert impl["peak_mem_bytes"]["n"] == impl["seconds"]["n"] >= 1
    assert scale["agreement"]["pandas"]["agrees"]

    integrity = results["integrity"]
    assert integrity["files"] >= 1 and "verify_overhead" in integrity
    assert integrity["sha256_mb_per_s"] > 0 and integrity["parse_mb_per_s"] > 0
    assert integrity["hash_share_of_parse"] == pytest.approx(integrity["parse_mb_per_s"] / integrity["sha256_mb_per_s"])
    assert results["profiling"]["naive_agrees"]
    assert {"platform_per_day", "naive_per_day", "floor_per_day"} <= results["profiling"]["variants"].keys()
    assert {"train_model", "batch_loop", "limit_dense", "dataloader"} == results["training"]["training"].keys()
    assert {"score", "predict_proba", "raw_forward"} == results["training"]["scoring"].keys()

    verdicts = results["targets"]
    assert len(verdicts) >= 7 and all({"target", "measured", "goal", "met"} <= v.keys() for v in verdicts)
    markdown = (tmp_path / "latest.md").read_text()
    assert "| Target | Measured | Goal | Verdict |" in markdown
