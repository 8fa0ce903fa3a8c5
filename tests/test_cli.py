"""`mlp` as a user meets it: the use case before or after the command, one-line errors, `init`."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ml_assets.ops.cli import parser
from ml_assets.spec import UseCaseSpec

MLP = str(Path(sys.executable).parent / "mlp")


def test_the_use_case_goes_before_or_after_the_command():
    assert parser().parse_args(["--use-case", "x", "versions"]).use_case == "x"
    assert parser().parse_args(["versions", "--use-case", "x"]).use_case == "x"
    assert parser().parse_args(["versions"]).use_case is None


def _mlp(*args: str, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "ML_USE_CASE"}
    env = {**env, "DAGSTER_HOME": str(tmp_path), "ML_LAKEHOUSE_ROOT": str(tmp_path / "lake")}
    (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    return subprocess.run([MLP, *args], capture_output=True, text=True, env=env, timeout=120,
                          cwd=Path(__file__).resolve().parents[1])


@pytest.mark.parametrize(("args", "message"), [
    (["--use-case", "nope", "versions"], "no use case 'nope'"),
    (["versions"], "several use cases"),
    (["rollback", "--use-case", "flight_delay", "--version", "../../evil", "--reason", "x"],
     "is not a model version id"),
    (["--use-case", "flight_delay", "replay", "--first", "2013-13-01"], "--first '2013-13-01' is not a date"),
    (["replay", "--use-case", "flight_delay", "--first", "2014-01-01"], "outside 'flight_delay'"),
])
def test_expected_refusals_print_one_line_not_a_traceback(tmp_path, args, message):
    out = _mlp(*args, tmp_path=tmp_path)
    assert out.returncode != 0
    assert "Traceback" not in out.stderr
    assert message in out.stderr, out.stderr


def test_init_drafts_a_yaml_from_a_data_file(tmp_path):
    import polars as pl

    data = tmp_path / "events.parquet"
    pl.DataFrame({"id": [1, 2, 3], "ts": [1_600_000_000, 1_600_086_400, 1_600_172_800], "amount": [1.5, None, 3.0],
                  "shop": ["a", "b", "a"]}).write_parquet(data)
    out_file = tmp_path / "draft" / "defs.yaml"
    out = _mlp("init", "shop_returns", "--from", str(data), "--out", str(out_file), tmp_path=tmp_path)
    assert out.returncode == 0, out.stderr
    draft = yaml.safe_load(out_file.read_text())
    attributes = draft["attributes"]
    assert draft["type"] == "ml_assets.components.UseCaseComponent"
    table = attributes["tables"]["events"]
    assert table["event_time"] == {"column": "ts", "format": "unix_seconds"}
    assert table["columns"]["amount"] == {"dtype": "float64", "nullable": True, "min": 1.5, "max": 3.0}
    assert attributes["partitions_start"] == "2020-09-13"
    assert "TODO" in out_file.read_text()
    # Filling in the TODOs gives a valid spec.
    attributes |= {"training": {"start": "2020-09-13", "end": "2020-09-14", "validation": 1},
                   "evaluation": {"start": "2020-09-15", "end": "2020-09-15", "baseline_feature": "amount"}}
    assert UseCaseSpec.model_validate(attributes).tables["events"].partitioned
    again = _mlp("init", "shop_returns", "--from", str(data), "--out", str(out_file), tmp_path=tmp_path)
    assert again.returncode == 2 and "exists" in again.stderr
