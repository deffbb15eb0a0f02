"""Saved artifacts are functions of their contents (issue 20, item 6): no save-time stamps survive."""

from __future__ import annotations

import time
import zipfile

import yaml


def _zip(path, stamp):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in (("data", b'{"a": 1}'), ("policy.pth", b"\x00weights")):
            info = zipfile.ZipInfo(name, date_time=stamp)
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, data)


def test_reproducible_zip_drops_entry_times_and_keeps_contents(tmp_path):
    from phantom.registry.models import reproducible_zip

    a, b = tmp_path / "a.zip", tmp_path / "b.zip"
    _zip(a, (2026, 1, 2, 3, 4, 6))
    _zip(b, (2026, 12, 8, 3, 7, 10))
    assert a.read_bytes() != b.read_bytes()
    reproducible_zip(a)
    reproducible_zip(b)
    assert a.read_bytes() == b.read_bytes()
    with zipfile.ZipFile(a) as z:
        assert z.namelist() == ["data", "policy.pth"] and z.read("policy.pth") == b"\x00weights"


def test_reproducible_mlmodel_stamps_follow_the_contents(tmp_path, monkeypatch):
    from phantom.registry.models import reproducible_mlmodel

    def saved(folder, weights, when):
        (folder / "artifacts").mkdir(parents=True)
        (folder / "artifacts" / "w.json").write_text(weights)
        spec = {
            "utc_time_created": when,
            "model_uuid": f"random-{when}",
            "flavors": {
                "python_function": {"artifacts": {"w": {"path": "artifacts/w.json", "uri": f"/tmp/x{when}/w.json"}}}
            },
        }
        (folder / "MLmodel").write_text(yaml.safe_dump(spec))
        reproducible_mlmodel(folder)
        return yaml.safe_load((folder / "MLmodel").read_text())

    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    first = saved(tmp_path / "a", "[1, 2]", str(time.time()))
    second = saved(tmp_path / "b", "[1, 2]", str(time.time() + 5))
    other = saved(tmp_path / "c", "[1, 3]", str(time.time()))
    assert (tmp_path / "a" / "MLmodel").read_bytes() == (tmp_path / "b" / "MLmodel").read_bytes()
    assert first["utc_time_created"] == "1970-01-01 00:00:00.000000"
    assert first["flavors"]["python_function"]["artifacts"]["w"]["uri"] == "w.json"
    assert other["model_uuid"] != first["model_uuid"] == second["model_uuid"]
