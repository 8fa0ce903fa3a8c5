"""Atomic, content-hashed writes: a killed writer leaves the old file or the new one, never a part."""

import hashlib
import os
import signal
import subprocess
import sys
import time

import pytest

from ml_assets.errors import IntegrityError
from resources.lakehouse import LakehouseResource

WRITER = """
import sys
from resources.lakehouse import LakehouseResource
lake = LakehouseResource(root=sys.argv[1])
old, new = b"o" * 40_000_000, b"n" * 40_000_000
i = 0
while True:
    lake.write_bytes(lake.uri("t", "part.bin"), new if i % 2 else old)
    i += 1
"""


def test_sigkill_mid_write_never_leaves_a_partial_file(tmp_path):
    lake = LakehouseResource(root=str(tmp_path))
    uri = lake.uri("t", "part.bin")
    lake.write_bytes(uri, b"o" * 40_000_000)
    valid = {hashlib.sha256(b"o" * 40_000_000).hexdigest(), hashlib.sha256(b"n" * 40_000_000).hexdigest()}
    for delay in (0.15, 0.3, 0.45, 0.6):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)])
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        with open(uri, "rb") as handle:
            assert hashlib.sha256(handle.read()).hexdigest() in valid
    # Temp files of killed writers are never listed as data.
    assert lake.list(lake.uri("t")) == [uri]


def test_reading_with_a_recorded_hash_detects_tampering(tmp_path):
    lake = LakehouseResource(root=str(tmp_path))
    receipt = lake.write_bytes(lake.uri("a.bin"), b"hello world")
    assert lake.read_bytes(receipt.uri, expected_sha256=receipt.sha256) == b"hello world"
    with open(receipt.uri, "r+b") as handle:
        handle.write(b"J")
    with pytest.raises(IntegrityError, match="sha256"):
        lake.read_bytes(receipt.uri, expected_sha256=receipt.sha256)


def test_a_failed_write_keeps_the_previous_file(tmp_path, monkeypatch):
    lake = LakehouseResource(root=str(tmp_path))
    uri = lake.uri("x.bin")
    lake.write_bytes(uri, b"good")

    def boom(*_args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        lake.write_bytes(uri, b"bad")
    monkeypatch.undo()
    assert lake.read_bytes(uri, None) == b"good"
    assert os.listdir(tmp_path) == ["x.bin"]  # the temp file is gone too


def test_any_fsspec_uri_works_by_configuration_alone():
    """An object-store-like filesystem (fsspec memory://): same API, whole-object writes."""
    import polars as pl

    lake = LakehouseResource(root="memory://lake-test")
    frame = pl.DataFrame({"a": [1, 2, 3]})
    receipt = lake.write_parquet(lake.partition_uri("uc", "t", "2013-01-01"), frame)
    lake.write_parquet(lake.partition_uri("uc", "t", "2013-01-02"), frame)
    assert lake.exists(receipt.uri)
    assert lake.read_parquet(receipt.uri, receipt.sha256).equals(frame)
    with pytest.raises(IntegrityError):
        lake.read_parquet(receipt.uri, "0" * 64)
    assert len(lake.list(lake.uri("uc", "t"))) == 2
