"""params.yaml is checked against one typed schema: every bad key is named with its path and rule."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from phantom.params import Params, ParamsError, load, parse
from tests.stage_runner import run_stage as run_stage_process

ROOT = Path(__file__).resolve().parents[2]
RAW = yaml.safe_load((ROOT / "params.yaml").read_text())


def errors_of(edit) -> list[str]:
    raw = copy.deepcopy(RAW)
    edit(raw)
    with pytest.raises(ParamsError) as exc_info:
        parse(raw)
    return exc_info.value.lines


def test_the_projects_params_file_is_valid():
    raw, typed = load(ROOT / "params.yaml")
    assert isinstance(typed, Params) and raw == RAW
    assert typed.ingest.kafka.fetch_max_bytes == RAW["ingest"]["kafka"]["fetch_max_bytes"]


def test_every_field_is_documented():
    from pydantic import BaseModel

    def models(model, seen):
        if model in seen:
            return
        seen.add(model)
        for _name, field in model.model_fields.items():
            for arg in [field.annotation, *getattr(field.annotation, "__args__", ())]:
                for inner in [arg, *getattr(arg, "__args__", ())]:
                    if isinstance(inner, type) and issubclass(inner, BaseModel):
                        models(inner, seen)

    seen: set = set()
    models(Params, seen)
    assert len(seen) > 20
    assert all(m.__doc__ for m in seen), [m.__name__ for m in seen if not m.__doc__]


def set_in(path, value):
    def edit(raw):
        node = raw
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return edit


@pytest.mark.parametrize(
    ("path", "value", "line"),
    [
        (
            ("ingest", "kafka", "fetch_max_bytes"),
            "64MB",
            'params.yaml: ingest.kafka.fetch_max_bytes: expected an integer, got "64MB"',
        ),
        (("ingest", "max_batch_wait_s"), "ten", 'params.yaml: ingest.max_batch_wait_s: expected a number, got "ten"'),
        (("features", "window_ms"), "1h", 'params.yaml: features.window_ms: expected an integer, got "1h"'),
        (
            ("ingest", "quarantine_duplicates"),
            "false",
            'params.yaml: ingest.quarantine_duplicates: expected true or false, got "false"',
        ),
        (
            ("ingest", "batch_size"),
            0,
            "params.yaml: ingest.batch_size: Input should be greater than or equal to 1, got 0",
        ),
        (
            ("ingest", "kafka", "on_offset_gap"),
            "skip",
            "params.yaml: ingest.kafka.on_offset_gap: Input should be 'fail' or 'from_earliest', got \"skip\"",
        ),
        (("validate", "price_ratio"), [1.5, 0.7], "params.yaml: validate: price_ratio: low 1.5 is above high 0.7, got"),
    ],
)
def test_wrong_types_and_ranges_are_named_with_their_key_path(path, value, line):
    lines = errors_of(set_in(path, value))
    assert len(lines) == 1 and lines[0].startswith(line), lines


def test_a_typo_is_an_unknown_key_with_a_suggestion():
    def typo(raw):
        raw["validate"]["price_ratoi"] = raw["validate"].pop("price_ratio")

    lines = errors_of(typo)
    assert "params.yaml: validate.price_ratoi: unknown key (did you mean price_ratio?)" in lines
    assert "params.yaml: validate.price_ratio: missing (required)" in lines


def test_yaml_syntax_errors_name_the_line(tmp_path):
    bad = tmp_path / "params.yaml"
    bad.write_text("ingest:\n  batch_size: [1, 2\n")
    with pytest.raises(ParamsError, match=r"params.yaml: not valid YAML at line \d+"):
        load(bad)


def test_a_stage_prints_one_line_per_bad_key_and_no_traceback(tmp_path):
    def edit(p):
        p["ingest"]["kafka"]["fetch_max_bytes"] = "64MB"
        p["validate"]["limits"]["max_lateness_msx"] = 1

    result = run_stage_process(tmp_path, "validate", edit)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines == [
        f'validate: {tmp_path / "params.yaml"}: ingest.kafka.fetch_max_bytes: expected an integer, got "64MB"',
        f"validate: {tmp_path / 'params.yaml'}: validate.limits.max_lateness_msx: unknown key (did you mean max_lateness_ms?)",
    ]
