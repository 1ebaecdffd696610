"""The model store: a month's fitted ProjectionModel as a directory of a JSON manifest, Parquet
frames and .npy arrays (docs/model_store.md), which no stored byte can turn into running code.

Why these tests exist: the store used to keep one pickle per month under a relative path, so a
stored month broke when a class moved, and a file placed there ran code when loaded. A model must
load in another process exactly as it was fitted; a changed, foreign or outdated file must stop the
run with the month to fit again, and never execute; a run killed while writing must leave the
month's previous model readable; and the files must be readable by their owner only."""


import hashlib
import io
import json
import os
import pickle
import shutil
import stat
import subprocess
import sys
import textwrap
from datetime import date
from pathlib import Path
from types import SimpleNamespace

import dagster as dg
import numpy as np
import polars as pl
import pytest

import quota_platform
from quota_platform.lib.attainment.attainment import ATTAINMENT_SCHEMA
from quota_platform.lib.attainment.crediting import REVENUE, CreditInputs, stage_flags
from quota_platform.lib.attainment.hierarchy import build_org_hierarchy
from quota_platform.lib.attainment.pipeline import open_pipeline
from quota_platform.lib.attainment.rollup import COMPANY, COMPANY_ID, REP
from quota_platform.lib.core.quota_types import org_quota_types
from quota_platform.lib.core.rules import Rules
from quota_platform.lib.forecast.model_fit import fit_projection_model
from quota_platform.lib.forecast.model_parts import ModelParts, PartsError, from_parts, to_parts
from quota_platform.lib.forecast.newdeals import NewDealModel
from quota_platform.lib.forecast.projection import (
    MODEL_FORMAT,
    ProjectionModel,
    SimulationSettings,
    project,
)
from quota_platform.lib.forecast.seasonality import SeasonalAdjustment
from quota_platform.lib.forecast.winrates import (
    FitSettings,
    WinRatePosterior,
    configure_compile_cache,
)
from quota_platform.samples.demo_org import generate_demo_org
from quota_platform.settings import Settings
from quota_platform.sources.files import read_object
from quota_platform.warehouse import model_store
from quota_platform.warehouse.model_store import (
    ModelFiles,
    ModelStore,
    model_dir,
    read_model,
    write_model,
)

ASSET = "projection_model"
KEY = "2026-02-01"
REFIT = f"materialize win_rate_posteriors for {KEY} again"
REPO = Path(quota_platform.__file__).resolve().parent.parent

FIT_MONTH = date(2025, 10, 1)
AS_OF = date(2025, 10, 20)
SIMULATION = SimulationSettings(n_draws=300)
OBJECTS = ["User", "ForecastingType", "Opportunity", "OpportunityHistory", "OpportunityStage", "OpportunitySplit",
           "OpportunitySplitType", "OpportunityLineItem", "Product2", "DatedConversionRate"]


# --- models ------------------------------------------------------------------------------------


def _small_model(**changes) -> ProjectionModel:
    """A hand-made model with every kind of part: arrays (posterior draws), frames, nulls, a
    missing curve, a non-finite diagnostic and a seasonal shock posterior."""
    gen = np.random.default_rng(3)
    n = 4  # draws; 2 stages, 1 class, 3 buckets, 2 reps, 1 team, 2 periods
    posterior = WinRatePosterior(
        reps=["R1", "R2"], teams=["M1"], stages=["Negotiation", "Prospecting"], rep_team={"R1": "M1", "R2": None},
        draws={
            "mu": gen.normal(size=(n, 2, 1, 3)), "slope": gen.normal(size=(n, 1, 3)),
            "team": gen.normal(size=(n, 1, 2)), "rep": gen.normal(size=(n, 2, 2)), "period": gen.normal(size=(n, 2)),
            **{k: gen.gamma(2.0, size=n) for k in ("sigma_team", "sigma_rep", "sigma_rep_stage", "sigma_period")},
        },
        diagnostics={"max_rhat": float("inf"), "divergences": 0.0},
        periods=["2025-Q1", "2025-Q2"],
        observed=pl.DataFrame(
            {"rep_id": ["R1"], "team_id": [None], "stage": ["Negotiation"], "deal_class": ["all"],
             "close_date_bucket": ["in_period"], "trials": [3.0], "wins": [1.0]},
            schema_overrides={"team_id": pl.String},
        ),
    )
    new = NewDealModel(
        streams=pl.DataFrame({"rep_id": ["R1"], "quota_type": ["new_business"], "product_family": [None], "shape": [4.0],
                              "inv_scale": [270.0], "mean_size": [1000.0], "size_cv": [1.0], "source": ["rep"]},
                             schema_overrides={"product_family": pl.String}),
        team_streams=pl.DataFrame(schema={"team_id": pl.String, "quota_type": pl.String, "product_family": pl.String,
                                          "shape": pl.Float64, "inv_scale": pl.Float64, "mean_size": pl.Float64,
                                          "size_cv": pl.Float64}),
    )
    fields = {
        "snapshot_month": date(2026, 2, 1), "window_months": 6, "win_rates": {"quarter": posterior}, "new_deals": {"quarter": new},
        "pacing": {"quarter": pl.DataFrame({"elapsed": [0.5, 1.0], "share": [0.3, 1.0]})},
        "teams": pl.DataFrame({"rep_id": ["R1", "R2"], "team_id": ["M1", None]}),
        "diagnostics": {"quarter": {"training_scope": "all reps", "trials": 3.0, "max_rhat": float("inf"), "n": 7}},
        "stage_probability": {"Negotiation": 0.6, "Prospecting": 0.1},
        "seasonal": {"quarter": SeasonalAdjustment(
            win_rate_logit=(-0.1, 0.05), new_deal_log=(0.2, 0.1),
            details={"note": "", "win_rate_offset": [-0.1, 0.05], "lookback_periods": 8, "effects": {"fiscal_quarter=1": 0.1}},
            shock_sd=((0.0, 0.1, 0.2), (0.2, 0.5, 0.3)),
        ), "month": SeasonalAdjustment(details={"note": "seasonality off"})},
        "large_deal_usd": {"new_business": 73900.0},
    }
    return ProjectionModel(**{**fields, **changes})


def _assert_same_model(got: ProjectionModel, want: ProjectionModel) -> None:
    """Every part equal: arrays by value, dtype and shape; frames by value and schema; the rest by ==."""
    assert got.format == want.format == MODEL_FORMAT
    for name in ("snapshot_month", "window_months", "diagnostics", "stage_probability", "seasonal", "large_deal_usd"):
        assert getattr(got, name) == getattr(want, name), name
    for a, b in [(got.teams, want.teams), *zip(got.pacing.values(), want.pacing.values())]:
        assert a.schema == b.schema and a.equals(b)
    assert list(got.pacing) == list(want.pacing)
    assert list(got.new_deals) == list(want.new_deals)
    for period_type, new in want.new_deals.items():
        back = got.new_deals[period_type]
        for field in ("streams", "team_streams", "curve"):
            a, b = getattr(back, field), getattr(new, field)
            assert (a is None and b is None) or (a.schema == b.schema and a.equals(b)), field
    assert list(got.win_rates) == list(want.win_rates)
    for period_type, posterior in want.win_rates.items():
        back = got.win_rates[period_type]
        for field in ("reps", "teams", "stages", "periods", "deal_classes", "rep_team", "diagnostics"):
            assert getattr(back, field) == getattr(posterior, field), field
        assert back.observed.schema == posterior.observed.schema and back.observed.equals(posterior.observed)
        assert list(back.draws) == list(posterior.draws)
        for name, values in posterior.draws.items():
            assert back.draws[name].dtype == values.dtype and back.draws[name].shape == values.shape
            assert np.array_equal(back.draws[name], values), name


def _short_fit() -> FitSettings:
    """A short sampler run, compiled where the platform's own fits in this process compile:
    PyTensor fixes its compile directory when first imported, and a later fit through the
    resources (test_assets) refuses another one."""
    if "pytensor" not in sys.modules:
        configure_compile_cache(Settings().compile_cache_dir)
    return FitSettings(draws=100, tune=100, chains=2)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """A model fitted by the lib on a small demo org (short sampler run), and the frames one
    day's projections read."""
    folder = tmp_path_factory.mktemp("org")
    generate_demo_org(folder, date(2026, 1, 20), seed=11)
    o = {name: read_object(folder, name) for name in OBJECTS}
    inputs = CreditInputs(o["User"], o["OpportunitySplit"], o["OpportunitySplitType"], o["OpportunityLineItem"],
                          o["Product2"], org_quota_types(o["ForecastingType"]), ["Analytics", "Platform"],
                          o["DatedConversionRate"], Rules())
    teams = o["User"].select(pl.col("Id").alias("rep_id"), pl.col("ManagerId").alias("team_id"))
    model, _ = fit_projection_model(
        FIT_MONTH, window_months=6, period_types=["quarter"], opportunities=o["Opportunity"],
        history=o["OpportunityHistory"], stages=o["OpportunityStage"], teams=teams, inputs=inputs,
        fit_settings=_short_fit(),
    )
    pipeline = open_pipeline(o["Opportunity"], o["OpportunityHistory"], stage_flags(o["OpportunityStage"], o["Opportunity"]),
                             [AS_OF], inputs)[0]
    # one rep row per credited rep x quota type x family, and the company's row of each
    streams = pipeline.filter(pl.col("credit_type") == REVENUE).select("rep_id", "quota_type", "product_family").unique()
    start, end = date(2025, 10, 1), date(2025, 12, 31)
    rows = [
        {"as_of_date": AS_OF, "level": level, "entity_id": entity, "entity_name": entity, "parent_id": None,
         "period_type": "quarter", "period_start": start, "period_end": end, "quota_type": quota_type,
         "product_family": family, "quota": quota, "closed_won": won, "attainment_pct": None, "time_elapsed_pct": None,
         "expected_to_date": None, "pace_pct": None, "pace_status": None, "rep_count": None}
        for level, entity, quota_type, family, quota, won in [
            *((REP, r, q, f, 150_000.0, 20_000.0) for r, q, f in streams.sort(pl.all(), nulls_last=True).iter_rows()),
            *((COMPANY, COMPANY_ID, q, f, 5_000_000.0, 600_000.0) for q, f in
              streams.select("quota_type", "product_family").unique().sort(pl.all(), nulls_last=True).iter_rows()),
        ]
    ]
    return SimpleNamespace(
        model=model,
        attainment=pl.DataFrame(rows, schema=ATTAINMENT_SCHEMA),
        pipeline=pipeline,
        hierarchy=build_org_hierarchy([FIT_MONTH], o["User"]),
    )


# --- the fitted model across processes -----------------------------------------------------------


def test_fitted_model_projects_the_same_in_a_fresh_process(fitted, tmp_path):
    """Stored by this process, loaded by another: the same projections, row for row."""
    model = fitted.model
    assert model.win_rates["quarter"].n_draws >= 200  # a real posterior: 2 chains x 100 draws (more on a retry)
    key = FIT_MONTH.isoformat()
    write_model(str(tmp_path / "models"), ASSET, key, model)
    for name in ("attainment", "pipeline", "hierarchy"):
        getattr(fitted, name).write_parquet(tmp_path / f"{name}.parquet")
    script = textwrap.dedent(f"""
        import sys
        from datetime import date
        import polars as pl
        from quota_platform.lib.forecast.projection import SimulationSettings, project
        from quota_platform.warehouse.model_store import ModelFiles
        folder = {str(tmp_path)!r}
        model = ModelFiles(base_dir=folder + "/models").read({ASSET!r}, {key!r})
        frames = [pl.read_parquet(f"{{folder}}/{{name}}.parquet") for name in ("attainment", "pipeline", "hierarchy")]
        out = project(date.fromisoformat({AS_OF.isoformat()!r}), *frames, model, SimulationSettings(n_draws={SIMULATION.n_draws}))
        out.write_parquet(folder + "/projected.parquet")
        print(sorted(model.win_rates), "pymc" in sys.modules)
    """)
    done = subprocess.run([sys.executable, "-c", script], check=False, env={**os.environ, "PYTHONPATH": str(REPO)},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["['quarter']", "False"]  # loading needs no sampler
    theirs = pl.read_parquet(tmp_path / "projected.parquet")
    ours = project(AS_OF, fitted.attainment, fitted.pipeline, fitted.hierarchy, model, SIMULATION)
    # the comparison can fail: the rows carry simulated figures that depend on the posterior draws
    assert ours.height == fitted.attainment.height > 10
    assert ours.filter(pl.col("level") == REP)["expected_from_pipeline"].sum() > 0
    assert theirs.schema == ours.schema and theirs.equals(ours)
    # and a model whose draws differ does not project the same
    nudged = dict(model.win_rates["quarter"].draws, mu=model.win_rates["quarter"].draws["mu"] + 0.05)
    other = ProjectionModel(**{**vars(model), "win_rates": {"quarter": WinRatePosterior(
        **{**vars(model.win_rates["quarter"]), "draws": nudged})}})
    assert not project(AS_OF, fitted.attainment, fitted.pipeline, fitted.hierarchy, other, SIMULATION).equals(ours)


def test_every_part_of_the_fitted_model_round_trips(fitted, tmp_path):
    model = fitted.model
    assert model.new_deals["quarter"].curve is not None and model.seasonal["quarter"].shock_sd is not None
    assert model.large_deal_usd and model.win_rates["quarter"].observed.height > 0
    write_model(str(tmp_path), ASSET, KEY, model)
    _assert_same_model(read_model(str(tmp_path), ASSET, KEY), model)
    _assert_same_model(from_parts(to_parts(model)), model)  # the pure conversion alone


def test_small_model_round_trips_through_parts_and_files(tmp_path):
    model = _small_model()
    parts = to_parts(model)
    assert sorted(parts.frames) == [
        "new_deals.0.streams", "new_deals.0.team_streams", "pacing.0", "teams", "win_rates.0.observed",
    ]  # no curve: null in the document, no part
    assert parts.document["new_deals"]["quarter"]["curve"] is None
    assert sorted(parts.arrays) == sorted(f"win_rates.0.draws.{k}" for k in model.win_rates["quarter"].draws)
    assert parts.document["seasonal"]["quarter"]["shock_sd"] == [[0.0, 0.1, 0.2], [0.2, 0.5, 0.3]]
    assert parts.document["seasonal"]["month"]["shock_sd"] is None
    _assert_same_model(from_parts(parts), model)
    write_model(str(tmp_path), ASSET, KEY, model)
    back = read_model(str(tmp_path), ASSET, KEY)
    _assert_same_model(back, model)
    assert back.seasonal["quarter"].shock_sd == ((0.0, 0.1, 0.2), (0.2, 0.5, 0.3))  # tuples again, not lists
    assert back.diagnostics["quarter"]["max_rhat"] == float("inf") and back.diagnostics["quarter"]["n"] == 7
    assert isinstance(back.diagnostics["quarter"]["n"], int)


def test_the_manifest_is_the_documented_one(tmp_path):
    folder = write_model(str(tmp_path), ASSET, KEY, _small_model())
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["format"] == "quota_platform.projection_model"
    assert manifest["format_version"] == MODEL_FORMAT == 3
    assert manifest["written_by"] == f"quota_platform {quota_platform.__version__}"
    assert (manifest["asset"], manifest["partition"], manifest["snapshot_month"]) == (ASSET, KEY, "2026-02-01")
    assert manifest["window_months"] == 6 and manifest["stage_probability"] == {"Negotiation": 0.6, "Prospecting": 0.1}
    files = sorted(p.name for p in folder.iterdir())
    assert files == sorted(["manifest.json", *(part["file"] for part in manifest["parts"])])
    for part in manifest["parts"]:
        data = (folder / part["file"]).read_bytes()
        assert part["sha256"] == hashlib.sha256(data).hexdigest() and part["bytes"] == len(data)
    assert manifest["manifest_sha256"] == _canonical_sha256(manifest)


# --- refusals ------------------------------------------------------------------------------------


class _Payload:
    """Unpickling this writes ``marker``: proof that a load executed stored bytes."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').write('executed')",)


def _canonical_sha256(manifest: dict) -> str:
    """docs/model_store.md: SHA-256 of the manifest without manifest_sha256, keys sorted, no spaces, ASCII."""
    body = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()).hexdigest()


def _stored(tmp_path) -> tuple[Path, dict]:
    folder = write_model(str(tmp_path), ASSET, KEY, _small_model())
    return folder, json.loads((folder / "manifest.json").read_text())


def _rewrite_manifest(folder: Path, manifest: dict) -> None:
    """What a forger who knows the format writes: a manifest whose own checksum is right."""
    manifest["manifest_sha256"] = _canonical_sha256(manifest)
    (folder / "manifest.json").write_text(json.dumps(manifest))


def _refused(tmp_path, match: str) -> dg.Failure:
    with pytest.raises(dg.Failure, match=match) as raised:
        ModelFiles(base_dir=str(tmp_path)).read(ASSET, KEY)
    assert REFIT in str(raised.value.description)
    return raised.value


def test_the_payload_runs_when_unpickled(tmp_path):
    """The refusal tests below would see the marker if anything unpickled their files."""
    marker = tmp_path / "marker"
    pickle.loads(pickle.dumps(_Payload(marker)))
    assert marker.read_text() == "executed"
    forged = np.empty(1, dtype=object)
    forged[0] = _Payload(tmp_path / "marker2")
    buffer = io.BytesIO()
    np.save(buffer, forged, allow_pickle=True)
    np.load(io.BytesIO(buffer.getvalue()), allow_pickle=True)
    assert (tmp_path / "marker2").exists()


@pytest.mark.parametrize("kind", ["frame", "array"])
def test_a_changed_part_is_refused(tmp_path, kind):
    folder, manifest = _stored(tmp_path)
    part = next(p for p in manifest["parts"] if p["kind"] == kind)
    path = folder / part["file"]
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    _refused(tmp_path, rf"{part['file']} whose SHA-256 differs")


def test_a_changed_manifest_is_refused(tmp_path):
    folder, _ = _stored(tmp_path)
    text = (folder / "manifest.json").read_text()
    assert '"window_months": 6' in text
    (folder / "manifest.json").write_text(text.replace('"window_months": 6', '"window_months": 12'))
    _refused(tmp_path, "manifest was changed after it was written")


def test_a_forged_npy_of_python_objects_is_never_executed(tmp_path):
    """Even with every checksum recomputed, an array that needs code to load is refused unread."""
    folder, manifest = _stored(tmp_path)
    marker = tmp_path / "marker"
    forged = np.empty(1, dtype=object)
    forged[0] = _Payload(marker)
    buffer = io.BytesIO()
    np.save(buffer, forged, allow_pickle=True)
    part = next(p for p in manifest["parts"] if p["kind"] == "array")
    (folder / part["file"]).write_bytes(buffer.getvalue())
    part["sha256"] = hashlib.sha256(buffer.getvalue()).hexdigest()
    _rewrite_manifest(folder, manifest)
    _refused(tmp_path, rf"{part['file']} that does not read as an \.npy array of plain values")
    assert not marker.exists()


@pytest.mark.parametrize("where", ["entry", "manifest", "legacy"])
def test_a_foreign_file_is_refused_and_never_executed(tmp_path, where):
    marker = tmp_path / "marker"
    payload = pickle.dumps(_Payload(marker))
    entry = model_dir(str(tmp_path), ASSET, KEY)
    if where == "entry":  # a file where the month's directory should be
        entry.parent.mkdir(parents=True)
        entry.write_bytes(payload)
        match = "is not a model directory"
    elif where == "manifest":
        folder, _ = _stored(tmp_path)
        (folder / "manifest.json").write_bytes(payload)
        match = "not JSON"
    else:  # the file an older release wrote for the month
        entry.parent.mkdir(parents=True)
        entry.with_name(f"{KEY}.pickle").write_bytes(payload)
        match = r"2026-02-01\.pickle\) was written by an older release .* must be refitted"
    _refused(tmp_path, match)
    assert not marker.exists()


def test_a_manifest_of_another_kind_is_refused(tmp_path):
    folder, manifest = _stored(tmp_path)
    _rewrite_manifest(folder, {**manifest, "format": "someone.else"})
    _refused(tmp_path, "is not a quota_platform.projection_model manifest")


def test_another_format_version_is_refused_with_the_month_named(tmp_path):
    folder, manifest = _stored(tmp_path)
    _rewrite_manifest(folder, {**manifest, "format_version": 2, "written_by": "quota_platform 0.0.9"})
    failure = _refused(tmp_path, r"2026-02-01 .*model format 2 by quota_platform 0\.0\.9; this release reads format 3")
    assert str(failure.description).endswith(f"; {REFIT}")


def test_a_missing_part_is_refused(tmp_path):
    folder, manifest = _stored(tmp_path)
    (folder / manifest["parts"][0]["file"]).unlink()
    _refused(tmp_path, rf"missing the part {manifest['parts'][0]['file']}")


def test_a_model_moved_from_another_month_is_refused(tmp_path):
    january = write_model(str(tmp_path), ASSET, "2026-01-01", _small_model())
    shutil.copytree(january, model_dir(str(tmp_path), ASSET, KEY))  # a real directory is read like the link
    _refused(tmp_path, "holds the model of 'projection_model' for '2026-01-01'")


def test_a_document_naming_a_missing_part_is_refused():
    parts = to_parts(_small_model())
    frames = {k: v for k, v in parts.frames.items() if k != "teams"}
    with pytest.raises(PartsError, match="teams names frame 'teams'"):
        from_parts(ModelParts(parts.document, frames, parts.arrays))
    with pytest.raises(PartsError, match="extra belong to nothing"):
        from_parts(ModelParts(parts.document, {**parts.frames, "extra": pl.DataFrame()}, parts.arrays))
    with pytest.raises(PartsError, match="window_months is a str"):
        from_parts(ModelParts({**parts.document, "window_months": "6"}, parts.frames, parts.arrays))


def test_a_model_that_would_not_come_back_equal_is_not_stored(tmp_path):
    with pytest.raises(TypeError, match=r"diagnostics\['quarter'\]\['pair'\] is a tuple"):
        to_parts(_small_model(diagnostics={"quarter": {"pair": (1.0, 2.0)}}))
    with pytest.raises(ValueError, match="format 2 cannot be stored as format 3"):
        to_parts(_small_model(format=2))
    with pytest.raises(dg.Failure, match="2026-02-01: the model cannot be stored: teams is a dict"):
        write_model(str(tmp_path), ASSET, KEY, _small_model(teams={"R1": "M1"}))
    assert not model_dir(str(tmp_path), ASSET, KEY).parent.exists()


def test_a_part_that_reads_back_different_is_not_stored(tmp_path, monkeypatch):
    """The write checks each part as it will be read; a loss on the way leaves the month's
    previous model as it was, and no half-written directory."""
    write_model(str(tmp_path), ASSET, KEY, _small_model(window_months=6))
    real = model_store._decode

    def lossy(kind, data):
        back = real(kind, data)
        return back.with_columns(pl.col(back.columns[0]).cast(pl.Categorical)) if kind == "frame" else back

    monkeypatch.setattr(model_store, "_decode", lossy)
    with pytest.raises(dg.Failure, match="2026-02-01: the part .* would not read back as it was written"):
        write_model(str(tmp_path), ASSET, KEY, _small_model(window_months=9))
    monkeypatch.undo()
    assert read_model(str(tmp_path), ASSET, KEY).window_months == 6
    assert len([p for p in model_dir(str(tmp_path), ASSET, KEY).parent.iterdir() if not p.is_symlink()]) == 1


# --- writing -------------------------------------------------------------------------------------


def test_files_are_owner_only_whatever_the_umask(tmp_path):
    old = os.umask(0)
    try:
        folder = write_model(str(tmp_path / "home" / "models"), ASSET, KEY, _small_model())
    finally:
        os.umask(old)
    created = [tmp_path / "home", tmp_path / "home" / "models", folder.parent, folder]
    for path in created:
        assert stat.S_IMODE(path.stat().st_mode) == 0o700, path
    files = list(folder.iterdir())
    assert len(files) > 10
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_a_run_killed_while_writing_leaves_the_previous_model(tmp_path):
    """A process killed halfway through writing a new model of the month (no clean-up runs) leaves
    the month's previous model in place and whole; the next complete write replaces it."""
    base = str(tmp_path)
    write_model(base, ASSET, KEY, _small_model(window_months=6))
    script = textwrap.dedent(f"""
        import os
        from quota_platform.warehouse import model_store
        written = []
        real = model_store._write_file
        def dying(path, data):
            real(path, data)
            written.append(path)
            if len(written) == 3:
                os._exit(9)  # as a kill: no exception, nothing cleaned up
        model_store._write_file = dying
        model = model_store.read_model({base!r}, {ASSET!r}, {KEY!r})
        model.window_months = 12
        model_store.write_model({base!r}, {ASSET!r}, {KEY!r}, model)
    """)
    done = subprocess.run([sys.executable, "-c", script], check=False, env={**os.environ, "PYTHONPATH": str(REPO)},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 9, done.stderr
    asset_dir = model_dir(base, ASSET, KEY).parent
    assert len([p for p in asset_dir.iterdir() if p.is_dir() and not p.is_symlink()]) == 2  # the half-written one is there
    _assert_same_model(read_model(base, ASSET, KEY), _small_model(window_months=6))
    write_model(base, ASSET, KEY, _small_model(window_months=12))
    assert read_model(base, ASSET, KEY).window_months == 12


def test_a_new_fit_replaces_the_month_and_what_it_replaced(tmp_path):
    base = str(tmp_path)
    entry = model_dir(base, ASSET, KEY)
    entry.parent.mkdir(parents=True)
    entry.with_name(f"{KEY}.pickle").write_bytes(b"left by an older release")
    first = write_model(base, ASSET, KEY, _small_model(window_months=6))
    assert not entry.with_name(f"{KEY}.pickle").exists()
    second = write_model(base, ASSET, KEY, _small_model(window_months=9))
    assert first != second and not first.exists() and entry.resolve() == second
    assert read_model(base, ASSET, KEY).window_months == 9
    assert read_model(base, ASSET, "2026-03-01") is None  # never fitted


def test_a_relative_base_dir_is_resolved_where_the_call_is_made(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder = write_model("models", ASSET, KEY, _small_model())
    assert folder.is_absolute() and folder.parent == tmp_path / "models" / ASSET
    assert model_dir("models", ASSET, KEY) == tmp_path / "models" / ASSET / KEY
    with pytest.raises(dg.Failure, match="cannot name a file"):
        model_dir("models", ASSET, "../escape")


# --- the Dagster interfaces ----------------------------------------------------------------------


def test_io_manager_stores_and_loads_every_month_of_a_run(tmp_path):
    monthly = dg.MonthlyPartitionsDefinition(start_date="2026-01-01", end_date="2026-05-01")

    @dg.asset(partitions_def=monthly, io_manager_key="model_store", backfill_policy=dg.BackfillPolicy.single_run())
    def projection_model(context: dg.AssetExecutionContext) -> dict:
        return {key: _small_model(snapshot_month=date.fromisoformat(key)) for key in context.partition_keys}

    @dg.asset(partitions_def=monthly, backfill_policy=dg.BackfillPolicy.single_run())
    def reader(projection_model: dict) -> None:
        assert sorted(projection_model) == ["2026-01-01", "2026-02-01", "2026-03-01"]
        assert [m.snapshot_month for m in projection_model.values()] == [date(2026, 1, 1), date(2026, 2, 1), date(2026, 3, 1)]

    store = ModelStore(base_dir=str(tmp_path))
    result = dg.materialize(
        [projection_model, reader], resources={"model_store": store},
        tags={"dagster/asset_partition_range_start": "2026-01-01", "dagster/asset_partition_range_end": "2026-03-01"},
    )
    assert result.success
    metadata = result.asset_materializations_for_node("projection_model")[0].metadata
    assert metadata["models"].value == 3 and metadata["folder"].value == str(tmp_path.resolve())
    assert ModelFiles(base_dir=str(tmp_path)).read(ASSET, "2026-03-01").snapshot_month == date(2026, 3, 1)

    with pytest.raises(dg.Failure, match=r"projection_model has no fitted model for 2026-04-01 .*materialize it first"):
        store.load_input(dg.build_input_context(asset_key=dg.AssetKey(ASSET), partition_key="2026-04-01",
                                                asset_partitions_def=monthly))
    with pytest.raises(dg.Failure, match=r"model output keys \['2026-01-01'\] do not match the run's partitions \['2026-02-01'\]"):
        store.handle_output(dg.build_output_context(asset_key=dg.AssetKey(ASSET), partition_key="2026-02-01",
                                                    asset_partitions_def=monthly), {"2026-01-01": _small_model()})


def test_the_fit_and_the_projections_carry_their_code_versions():
    """A format change marks every fitted month stale in Dagster: the fit's code version holds it."""
    from quota_platform.defs.forecast.assets import projection_assets

    assets = projection_assets(dg.DailyPartitionsDefinition("2025-01-01"), dg.MonthlyPartitionsDefinition("2025-01-01"))
    versions = {key.to_user_string(): v for a in assets for key, v in a.code_versions_by_key.items()}
    assert versions["win_rate_posteriors"] == versions["projection_model"] == f"1.format-{MODEL_FORMAT}" == "1.format-3"
    assert versions["projections"] == "1"
