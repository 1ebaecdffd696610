"""A ProjectionModel as plain parts and back: a JSON document (scalars, dicts, lists and the names
of the parts below), polars frames and numpy arrays. Nothing here reads or writes files; the model
store (warehouse/model_store.py) saves the document in the month's manifest, each frame as Parquet
and each array as .npy, and hands the same three back to :func:`from_parts`.

The document, by key (docs/model_store.md lists the layout on disk):

- ``snapshot_month`` (ISO date), ``window_months`` (int)
- ``teams``: name of the frame rep_id -> team_id
- ``diagnostics``, ``stage_probability``, ``large_deal_usd``: the model's dicts as they are
- ``pacing``: period type -> frame name
- ``new_deals``: period type -> {streams, team_streams, curve (frame name or null)}
- ``seasonal``: period type -> {win_rate_logit [mean, sd], new_deal_log [mean, sd], details,
  shock_sd (null or [values, weights])}
- ``win_rates``: period type -> {reps, teams, stages, periods, deal_classes (lists of strings),
  rep_team (rep -> team or null), diagnostics, observed (frame name), draws (draw name -> array
  name)}

Part names are made here from positions (``win_rates.0.draws.mu``), never from the data, so a
period type or rep id cannot name a file. A model that cannot be written exactly (a tuple, a numpy
object array, a dict with non-string keys) is refused rather than changed on the way.
"""

from __future__ import annotations

import dataclasses
import re
from datetime import date

import numpy as np
import polars as pl

from quota_platform.lib.forecast.newdeals import NewDealModel
from quota_platform.lib.forecast.projection import MODEL_FORMAT, ProjectionModel
from quota_platform.lib.forecast.seasonality import SeasonalAdjustment
from quota_platform.lib.forecast.winrates import WinRatePosterior

# a draw name becomes part of an array's name: letters, digits and underscores only
_DRAW_NAME = re.compile(r"[A-Za-z0-9_]+")


class PartsError(ValueError):
    """The parts do not describe a model of this format (missing or mistyped entries, a name
    without its part, a part nothing names)."""


@dataclasses.dataclass(frozen=True)
class ModelParts:
    """A model as a JSON-able ``document`` and the frames and arrays it names."""

    document: dict
    frames: dict[str, pl.DataFrame]
    arrays: dict[str, np.ndarray]


def to_parts(model: ProjectionModel) -> ModelParts:
    """The parts of ``model``. Raises ValueError for a model of another format and TypeError for
    a value that a JSON document, a Parquet frame or an .npy array would not give back as it is."""
    if model.format != MODEL_FORMAT:
        raise ValueError(f"a model of format {model.format} cannot be stored as format {MODEL_FORMAT}")
    frames: dict[str, pl.DataFrame] = {}
    arrays: dict[str, np.ndarray] = {}

    def frame(name: str, value, where: str) -> str:
        if not isinstance(value, pl.DataFrame):
            raise TypeError(f"{where} is a {type(value).__name__}, not a polars DataFrame")
        frames[name] = value
        return name

    def array(name: str, value, where: str) -> str:
        if not isinstance(value, np.ndarray):
            raise TypeError(f"{where} is a {type(value).__name__}, not a numpy array")
        if value.dtype.hasobject:
            raise TypeError(f"{where} holds Python objects (dtype {value.dtype}); only plain numeric or text arrays are stored")
        arrays[name] = value
        return name

    win_rates = {}
    for i, (period_type, posterior) in enumerate(_items(model.win_rates, "win_rates")):
        where = f"win_rates[{period_type!r}]"
        if not isinstance(posterior, WinRatePosterior):
            raise TypeError(f"{where} is a {type(posterior).__name__}, not a WinRatePosterior")
        draws = {}
        for draw_name, values in _items(posterior.draws, f"{where}.draws"):
            if not _DRAW_NAME.fullmatch(draw_name):
                raise TypeError(f"{where}.draws has a draw named {draw_name!r}: letters, digits and _ only")
            draws[draw_name] = array(f"win_rates.{i}.draws.{draw_name}", values, f"{where}.draws[{draw_name!r}]")
        win_rates[period_type] = {
            "reps": _strings(posterior.reps, f"{where}.reps"),
            "teams": _strings(posterior.teams, f"{where}.teams"),
            "stages": _strings(posterior.stages, f"{where}.stages"),
            "periods": _strings(posterior.periods, f"{where}.periods"),
            "deal_classes": _strings(posterior.deal_classes, f"{where}.deal_classes"),
            "rep_team": _plain(posterior.rep_team, f"{where}.rep_team"),
            "diagnostics": _plain(posterior.diagnostics, f"{where}.diagnostics"),
            "observed": frame(f"win_rates.{i}.observed", posterior.observed, f"{where}.observed"),
            "draws": draws,
        }
    new_deals = {}
    for i, (period_type, new) in enumerate(_items(model.new_deals, "new_deals")):
        where = f"new_deals[{period_type!r}]"
        if not isinstance(new, NewDealModel):
            raise TypeError(f"{where} is a {type(new).__name__}, not a NewDealModel")
        new_deals[period_type] = {
            "streams": frame(f"new_deals.{i}.streams", new.streams, f"{where}.streams"),
            "team_streams": frame(f"new_deals.{i}.team_streams", new.team_streams, f"{where}.team_streams"),
            "curve": None if new.curve is None else frame(f"new_deals.{i}.curve", new.curve, f"{where}.curve"),
        }
    seasonal = {}
    for period_type, adjustment in _items(model.seasonal, "seasonal"):
        where = f"seasonal[{period_type!r}]"
        if not isinstance(adjustment, SeasonalAdjustment):
            raise TypeError(f"{where} is a {type(adjustment).__name__}, not a SeasonalAdjustment")
        shock = adjustment.shock_sd
        seasonal[period_type] = {
            "win_rate_logit": _numbers(adjustment.win_rate_logit, f"{where}.win_rate_logit", size=2),
            "new_deal_log": _numbers(adjustment.new_deal_log, f"{where}.new_deal_log", size=2),
            "details": _plain(adjustment.details, f"{where}.details"),
            "shock_sd": None if shock is None else _shock(shock, f"{where}.shock_sd"),
        }
    if type(model.snapshot_month) is not date:  # a datetime would come back as another value
        raise TypeError(f"snapshot_month is a {type(model.snapshot_month).__name__}, not a date")
    document = {
        "snapshot_month": model.snapshot_month.isoformat(),
        "window_months": _integer(model.window_months, "window_months"),
        "teams": frame("teams", model.teams, "teams"),
        "diagnostics": _plain(model.diagnostics, "diagnostics"),
        "stage_probability": _plain(model.stage_probability, "stage_probability"),
        "large_deal_usd": _plain(model.large_deal_usd, "large_deal_usd"),
        "pacing": {
            period_type: frame(f"pacing.{i}", curve, f"pacing[{period_type!r}]")
            for i, (period_type, curve) in enumerate(_items(model.pacing, "pacing"))
        },
        "new_deals": new_deals,
        "seasonal": seasonal,
        "win_rates": win_rates,
    }
    return ModelParts(document=document, frames=frames, arrays=arrays)


def from_parts(parts: ModelParts) -> ProjectionModel:
    """The model ``parts`` describe. Raises PartsError when they do not describe one: the
    document, frames and arrays come from outside the process and are checked, not trusted."""
    doc = parts.document
    used: set[str] = set()

    def frame(name, where: str) -> pl.DataFrame:
        if not isinstance(name, str) or name not in parts.frames:
            raise PartsError(f"{where} names frame {name!r}, which is not among the parts")
        used.add(name)
        return parts.frames[name]

    def array(name, where: str) -> np.ndarray:
        if not isinstance(name, str) or name not in parts.arrays:
            raise PartsError(f"{where} names array {name!r}, which is not among the parts")
        used.add(name)
        return parts.arrays[name]

    if not isinstance(doc, dict):
        raise PartsError(f"the document is a {type(doc).__name__}, not an object")
    try:
        snapshot_month = date.fromisoformat(_entry(doc, "snapshot_month", str, "the document"))
    except ValueError as exc:
        raise PartsError(f"snapshot_month is not an ISO date: {exc}") from exc
    window_months = _entry(doc, "window_months", int, "the document")
    win_rates = {}
    for period_type, entry in _entry(doc, "win_rates", dict, "the document").items():
        where = f"win_rates[{period_type!r}]"
        entry = _checked(entry, dict, where)
        win_rates[period_type] = WinRatePosterior(
            reps=_string_list(entry, "reps", where),
            teams=_string_list(entry, "teams", where),
            stages=_string_list(entry, "stages", where),
            rep_team=_entry(entry, "rep_team", dict, where),
            draws={
                draw_name: array(name, f"{where}.draws[{draw_name!r}]")
                for draw_name, name in _entry(entry, "draws", dict, where).items()
            },
            diagnostics=_entry(entry, "diagnostics", dict, where),
            periods=_string_list(entry, "periods", where),
            observed=frame(_entry(entry, "observed", str, where), f"{where}.observed"),
            deal_classes=_string_list(entry, "deal_classes", where),
        )
    new_deals = {}
    for period_type, entry in _entry(doc, "new_deals", dict, "the document").items():
        where = f"new_deals[{period_type!r}]"
        entry = _checked(entry, dict, where)
        curve = _entry(entry, "curve", (str, type(None)), where)
        new_deals[period_type] = NewDealModel(
            streams=frame(_entry(entry, "streams", str, where), f"{where}.streams"),
            team_streams=frame(_entry(entry, "team_streams", str, where), f"{where}.team_streams"),
            curve=None if curve is None else frame(curve, f"{where}.curve"),
        )
    seasonal = {}
    for period_type, entry in _entry(doc, "seasonal", dict, "the document").items():
        where = f"seasonal[{period_type!r}]"
        entry = _checked(entry, dict, where)
        shock = _entry(entry, "shock_sd", (list, type(None)), where)
        seasonal[period_type] = SeasonalAdjustment(
            win_rate_logit=_pair(_entry(entry, "win_rate_logit", list, where), f"{where}.win_rate_logit"),
            new_deal_log=_pair(_entry(entry, "new_deal_log", list, where), f"{where}.new_deal_log"),
            details=_entry(entry, "details", dict, where),
            shock_sd=None if shock is None else _shock_from(shock, f"{where}.shock_sd"),
        )
    model = ProjectionModel(
        snapshot_month=snapshot_month,
        window_months=window_months,
        win_rates=win_rates,
        new_deals=new_deals,
        pacing={
            period_type: frame(name, f"pacing[{period_type!r}]")
            for period_type, name in _entry(doc, "pacing", dict, "the document").items()
        },
        teams=frame(_entry(doc, "teams", str, "the document"), "teams"),
        diagnostics=_entry(doc, "diagnostics", dict, "the document"),
        stage_probability=_entry(doc, "stage_probability", dict, "the document"),
        seasonal=seasonal,
        large_deal_usd=_entry(doc, "large_deal_usd", dict, "the document"),
        format=MODEL_FORMAT,
    )
    unused = (set(parts.frames) | set(parts.arrays)) - used
    if unused:
        raise PartsError(f"part(s) {', '.join(sorted(unused))} belong to nothing in the document")
    return model


# --- to the document ---------------------------------------------------------------------------


def _items(mapping, where: str):
    if not isinstance(mapping, dict):
        raise TypeError(f"{where} is a {type(mapping).__name__}, not a dict")
    for key in mapping:
        if not isinstance(key, str):
            raise TypeError(f"{where} has the key {key!r}: a stored model keys its dicts by text")
    return mapping.items()


def _plain(value, where: str):
    """``value`` as a JSON value that loads back equal: dicts with text keys, lists, text,
    numbers, booleans and None (numpy scalars become the Python number they equal)."""
    if value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    if isinstance(value, dict):
        return {key: _plain(item, f"{where}[{key!r}]") for key, item in _items(value, where)}
    if isinstance(value, list):
        return [_plain(item, f"{where}[{i}]") for i, item in enumerate(value)]
    raise TypeError(
        f"{where} is a {type(value).__name__}; a stored model holds only dicts with text keys, "
        "lists, text, numbers, booleans and None there"
    )


def _strings(values, where: str) -> list[str]:
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise TypeError(f"{where} must be a list of strings")
    return list(values)


def _integer(value, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{where} is a {type(value).__name__}, not an integer")
    return int(value)


def _numbers(values, where: str, size: int | None = None) -> list[float]:
    if not isinstance(values, (tuple, list)) or (size is not None and len(values) != size):
        raise TypeError(f"{where} must be a tuple of {size or 'some'} numbers")
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
            raise TypeError(f"{where} holds a {type(v).__name__}, not a number")
        out.append(_plain(v, where))
    return out


def _shock(shock, where: str) -> list[list[float]]:
    if not isinstance(shock, tuple) or len(shock) != 2:
        raise TypeError(f"{where} must be a (values, weights) pair")
    return [_numbers(shock[0], f"{where}[0]"), _numbers(shock[1], f"{where}[1]")]


# --- from the document -------------------------------------------------------------------------


def _checked(value, kind, where: str):
    if isinstance(value, bool) and kind is int:
        raise PartsError(f"{where} is a boolean, not an integer")
    if not isinstance(value, kind):
        expected = " or ".join(k.__name__ for k in kind) if isinstance(kind, tuple) else kind.__name__
        raise PartsError(f"{where} is a {type(value).__name__}, not a {expected}")
    return value


def _entry(entry: dict, key: str, kind, where: str):
    if key not in entry:
        raise PartsError(f"{where} has no {key!r}")
    return _checked(entry[key], kind, f"{where}.{key}")


def _string_list(entry: dict, key: str, where: str) -> list[str]:
    values = _entry(entry, key, list, where)
    if not all(isinstance(v, str) for v in values):
        raise PartsError(f"{where}.{key} must be a list of strings")
    return values


def _number(value, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PartsError(f"{where} holds a {type(value).__name__}, not a number")
    return value


def _pair(values: list, where: str) -> tuple[float, float]:
    if len(values) != 2:
        raise PartsError(f"{where} must hold two numbers (mean, sd), not {len(values)}")
    return (_number(values[0], where), _number(values[1], where))


def _shock_from(shock: list, where: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    if len(shock) != 2 or not all(isinstance(side, list) for side in shock):
        raise PartsError(f"{where} must be [values, weights]")
    values, weights = (tuple(_number(v, where) for v in side) for side in shock)
    return values, weights
