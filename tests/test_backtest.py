"""The policy backtest: pure pieces on constructed inputs, and the asset on a real short history."""

from __future__ import annotations

import json
from datetime import date, timedelta

import polars as pl
import pytest
import torch

from ml_assets.features.compute import EVENT_ID, LABEL, PARTITION
from ml_assets.monitoring import backtest as bt
from sensors.policy import retrain_plan


def _frame(days: int, per_day: int = 40, seed: int = 0) -> pl.DataFrame:
    g = torch.Generator().manual_seed(seed)
    n = days * per_day
    return pl.DataFrame({
        EVENT_ID: [f"e{i}" for i in range(n)],
        PARTITION: [date(2013, 1, 20) + timedelta(days=i // per_day) for i in range(n)],
        LABEL: (torch.rand(n, generator=g) < 0.3).tolist(),
        "x": torch.rand(n, generator=g).tolist(),
    })


def test_each_segment_is_scored_by_the_model_deployed_for_it(spec):
    frame = _frame(30)
    decisions = [date(2013, 1, 25), date(2013, 2, 3)]
    scorers = [lambda f, k=k: torch.full((f.height,), float(k)) for k in range(3)]
    out = bt.serve_segments(frame, decisions, scorers)
    days = frame.get_column(PARTITION).to_list()
    expected = [0.0 if d <= decisions[0] else 1.0 if d <= decisions[1] else 2.0 for d in days]
    assert out.tolist() == expected  # a model decided at P serves from P + 1


def test_blind_decisions_are_every_n_partitions_after_the_first_promotion(spec):
    got = bt.blind_decisions(spec, date(2013, 2, 18), date(2013, 4, 30), 28)
    assert got == [date(2013, 3, 18), date(2013, 4, 15)]
    assert bt.blind_decisions(spec, date(2013, 2, 18), date(2013, 3, 18), 28) == []


def test_hindsight_is_the_best_eligible_version_and_never_a_version_trained_on_the_month(spec):
    frame = _frame(30)
    label = torch.tensor(frame.get_column(LABEL).cast(int).to_numpy()).float()
    noisy = torch.tensor(frame.get_column("x").to_numpy()).float()
    oracle = bt.CandidateVersion("oracle", date(2013, 2, 5), lambda f: label)  # leaks
    honest = bt.CandidateVersion("honest", date(2012, 12, 31), lambda f: noisy * 0.5 + label * 0.2)
    late = bt.CandidateVersion("late", date(2013, 1, 10), lambda f: label)  # trained on part of January
    scores = {"closed_loop": noisy, "frozen": noisy, "blind_periodic": noisy}
    rows = bt.monthly(frame, scores, [oracle, honest, late])
    by_month = {r["month"]: r for r in rows}
    assert by_month["2013-01"]["hindsight_version"] == "honest"  # the oracle trained on January and February
    assert by_month["2013-02"]["hindsight_version"] == "late"  # trained before February: eligible there
    late_auroc = by_month["2013-02"]["hindsight_best"]
    assert late_auroc == 1.0  # (its scores are the labels: the best possible)
    honest_scores = noisy * 0.5 + label * 0.2
    for r in rows[:1]:
        mask = (frame.get_column(PARTITION).dt.strftime("%Y-%m") == r["month"]).to_numpy()
        assert r["hindsight_best"] == round(bt.auroc(honest_scores[mask], label[mask]), 4)
    assert sum(r["rows"] for r in rows) == frame.height
    summary = bt.summarize(rows)
    assert summary["closed_loop_at_least_frozen_months"] == len(rows)  # identical scores: never below


@pytest.fixture(scope="module")
def backtested(tmp_path_factory, spec):
    """A real short history: January trains the first model, it scores Feb 1-14; blind retraining every
    5 partitions then replaces it twice (Feb 5 and Feb 10) on the loop's own retrain window."""
    import dagster as dg

    from ml_assets.factory import build_use_case
    from ml_assets.ops.runner import Platform
    from ml_assets.spec import UseCaseSpec
    from resources import build_resources

    short = UseCaseSpec.model_validate(spec.model_dump() | {"monitoring": spec.monitoring.model_dump()
                                                            | {"backtest_every": 5}})
    root = tmp_path_factory.mktemp("backtest_lake")
    defs = dg.Definitions.merge(build_use_case(short), dg.Definitions(
        resources=build_resources(lakehouse_root=str(root)), executor=dg.in_process_executor))
    with dg.instance_for_test() as instance:
        platform = Platform(defs, instance, log_level="ERROR")
        assert platform.ingest(short, "2013-01-01", "2013-02-14").success
        assert platform.train(short, train_start="2013-01-01", train_end="2013-01-31", eval_start="2013-02-01",
                              eval_end="2013-02-07").success
        assert platform.score(short, "2013-02-01", "2013-02-14").success
        assert platform.daily(short, "2013-02-12", "2013-02-14").success  # model health for the monitoring plot
        from ml_assets.keys import UseCaseJobs

        runs = [platform.run(UseCaseJobs(short.name).backtest) for _ in range(2)]
        yield short, platform, runs


def _document(spec, platform, run) -> tuple[dict, dict]:
    from ml_assets.keys import UseCaseKeys

    node = "__".join(UseCaseKeys(spec.name).policy_backtest.path)
    meta = {k: v.value for k, v in run.asset_materializations_for_node(node)[-1].metadata.items()}
    data = platform.defs.resources["lakehouse"].read_bytes(meta["uri"], meta["sha256"], what="backtest")
    return json.loads(data), meta


def test_backtest_records_what_was_served_and_reruns_identically(backtested):
    short, platform, (first, second) = backtested
    doc, meta = _document(short, platform, first)
    again, meta2 = _document(short, platform, second)
    assert meta["sha256"] == meta2["sha256"] and doc == again  # deterministic: same bytes, same blind weights
    assert doc["served_partitions"] == ["2013-02-01", "2013-02-14"]
    assert doc["first_decision_partition"] == "2013-01-31"  # a manual promotion: the day before it first served
    assert [b["decision_partition"] for b in doc["blind_models"]] == ["2013-02-05", "2013-02-10"]
    for b in doc["blind_models"]:
        from dataclasses import asdict

        assert b["plan"] == asdict(retrain_plan(short, date.fromisoformat(b["decision_partition"])))
    february = next(r for r in doc["months"] if r["month"] == "2013-02")
    # One model served everything: the loop as recorded and the frozen model re-scored agree exactly.
    assert february["closed_loop"] == february["frozen"]
    assert february["blind_periodic"] != february["frozen"]  # two other models served part of February
    # Hindsight: the only registered version was trained through Jan 31, so it is the one eligible in
    # February, and it scored February exactly as the loop did.
    assert february["hindsight_version"] == doc["frozen_version"]
    assert february["hindsight_best"] == february["frozen"]
    assert doc["scored_partitions"] == ["2013-02-01..2013-02-14"]
    assert sum(r["rows"] for r in doc["months"]) == doc["events"]
    means = doc["summary"]["mean_monthly_auroc"]
    assert meta["mean_monthly_auroc_closed_loop"] == pytest.approx(means["closed_loop"])
    assert meta["plot"].startswith("![policy backtest](data:image/png;base64,")
    # The monitoring plot shows every scored partition with a model-health record, and its bytes verify.
    from ml_assets.keys import UseCaseKeys
    from ml_assets.lineage import recorded_partitions

    scored = [d.isoformat() for d in short.partition_range("2013-02-01", "2013-02-14")]
    with_health = recorded_partitions(platform.instance, UseCaseKeys(short.name).model_health, scored)
    assert sorted(with_health) == ["2013-02-12", "2013-02-13", "2013-02-14"]
    assert meta["monitoring_partitions_plotted"] == len(with_health)
    png = platform.defs.resources["lakehouse"].read_bytes(meta["monitoring_plot_uri"], meta["monitoring_plot_sha256"],
                                                          what="monitoring plot")
    assert png.startswith(b"\x89PNG") and meta["monitoring_plot"].startswith("![realized AUROC by partition](data:")
    recal = doc["recalibration"]  # the recalibration study covers exactly the served events
    assert sum(m["rows"] for m in recal["months"]) == doc["events"]
    for kind, verdict in recal["verdicts"].items():
        assert meta[f"recalibration_{kind}_qualifies"] == verdict["qualifies"]


def _synthetic_served(offset: float, months: int = 3, per_day: int = 400):
    """Served events over `months` months of 2013: labels drawn from p_true; served p is
    sigmoid(logit(p_true) - offset)."""
    import numpy as np

    rng = np.random.default_rng(7)
    days = [date(2013, 1, 1) + timedelta(days=i) for i in range((date(2013, 1, 1).replace(month=months + 1)
                                                                - date(2013, 1, 1)).days)]
    partition = [d for d in days for _ in range(per_day)]
    z = rng.normal(-1.0, 1.2, len(partition))
    y = rng.random(len(partition)) < 1 / (1 + np.exp(-z))
    served = pl.DataFrame({PARTITION: partition, LABEL: y})
    return served, 1 / (1 + np.exp(-(z - offset)))


def test_recalibration_is_fitted_only_on_labels_known_before_the_month_and_repairs_a_base_rate_shift(spec):
    from ml_assets.monitoring import recalibration as rc

    served, prob = _synthetic_served(offset=1.0)
    out = rc.study(spec, served, prob, fit_partitions=14, bins=10)
    months = out["months"]
    assert [m["month"] for m in months] == ["2013-01", "2013-02", "2013-03"]
    for m in months:  # point in time: the fit ends at the month's first day minus the label delay
        first = date.fromisoformat(m["month"] + "-01")
        assert date.fromisoformat(m["fit_partitions"][1]) == spec.shift(first, -spec.label_delay) < first
        assert (date.fromisoformat(m["fit_partitions"][1]) - date.fromisoformat(m["fit_partitions"][0])).days == 13
    assert months[0]["fit_rows"] == 0 and months[0]["ece_intercept"] is None  # nothing served before January
    for m in months[1:]:
        assert m["fit_rows"] == 14 * 400
        assert m["intercept_map"]["b"] == pytest.approx(1.0, abs=0.15)  # the shift, recovered
        assert m["ece_intercept"] < m["ece_served"] / 2
    assert out["verdicts"]["intercept"] == {**out["verdicts"]["intercept"], "months_better": 2, "months": 2,
                                            "qualifies": True}
    assert rc.study(spec, served, prob, 14, 10) == out  # deterministic


def test_recalibration_of_calibrated_scores_is_close_to_the_identity(spec):
    from ml_assets.monitoring import recalibration as rc

    served, prob = _synthetic_served(offset=0.0)
    for m in rc.study(spec, served, prob, fit_partitions=14, bins=10)["months"][1:]:
        assert m["platt_map"]["a"] == pytest.approx(1.0, abs=0.1) and m["platt_map"]["b"] == pytest.approx(0, abs=0.1)
        assert m["intercept_map"]["b"] == pytest.approx(0.0, abs=0.1)
