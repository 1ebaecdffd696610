"""Stored models across releases: a ProjectionModel pickled by an earlier release (no ``format``,
format 1) is refused with the month named, not half-used; a current one loads."""

import pickle
from datetime import date

import dagster as dg
import polars as pl
import pytest

from quota_platform.lib.forecast.projection import MODEL_FORMAT, ProjectionModel
from quota_platform.warehouse.model_store import ModelFiles, model_path


def _model() -> ProjectionModel:
    return ProjectionModel(
        snapshot_month=date(2026, 2, 1), window_months=6, win_rates={}, new_deals={}, pacing={},
        teams=pl.DataFrame({"rep_id": ["R1"], "team_id": ["M1"]}), diagnostics={},
    )


def _store(tmp_path, key: str, model) -> None:
    path = model_path(str(tmp_path), "projection_model", key)
    path.parent.mkdir(parents=True)
    path.write_bytes(pickle.dumps(model))


def test_current_model_loads(tmp_path):
    _store(tmp_path, "2026-02-01", _model())
    loaded = ModelFiles(base_dir=str(tmp_path)).read("projection_model", "2026-02-01")
    assert loaded.format == MODEL_FORMAT == 2 and loaded.snapshot_month == date(2026, 2, 1)
    assert ModelFiles(base_dir=str(tmp_path)).read("projection_model", "2026-03-01") is None  # never fitted


def test_model_from_an_earlier_release_is_refused(tmp_path):
    old = _model()
    del old.__dict__["format"]  # what a release before MODEL_FORMAT pickled
    _store(tmp_path, "2026-02-01", old)
    with pytest.raises(dg.Failure, match="2026-02-01.*model format 1.*materialize win_rate_posteriors"):
        ModelFiles(base_dir=str(tmp_path)).read("projection_model", "2026-02-01")
