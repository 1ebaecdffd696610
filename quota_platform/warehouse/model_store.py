"""Where fitted models live: one pickle per monthly partition under the model folder. The
warehouse holds the readable summary (win_rate_posteriors); the posterior draws the projections
simulate from are binary and stay beside it, keyed the same way.

A single-run backfill over several months hands over {partition key: model}; a load returns the
same shape for the partitions asked for, and stops with the key named if one was never fitted."""

import pickle
from pathlib import Path

import dagster as dg

from quota_platform.lib.forecast.projection import MODEL_FORMAT


def _checked(model, asset: str, key: str, path: Path):
    """A stored model of the current format, or a Failure saying to fit it again."""
    # from the instance: the dataclass default also sits on the class, so getattr would report
    # the current format for a pickle that never had the field
    found = vars(model).get("format", 1)
    if found != MODEL_FORMAT:
        raise dg.Failure(
            f"{asset} for {key} ({path}) was fitted by an older release (model format {found}, this "
            f"release reads {MODEL_FORMAT}); materialize win_rate_posteriors for {key} again"
        )
    return model


def model_path(base_dir: str, asset: str, key: str) -> Path:
    return Path(base_dir) / asset / f"{key}.pickle"


class ModelFiles(dg.ConfigurableResource):
    """Read access to stored models for assets that read whichever months exist (the backtest)."""

    base_dir: str

    def read(self, asset: str, key: str):
        """One stored model by asset name and partition key, or None if it was never fitted."""
        path = model_path(self.base_dir, asset, key)
        return _checked(pickle.loads(path.read_bytes()), asset, key, path) if path.exists() else None


class ModelStore(dg.ConfigurableIOManager):
    base_dir: str

    def _path(self, context, key: str) -> Path:
        return model_path(self.base_dir, context.asset_key.to_user_string(), key)

    def handle_output(self, context: dg.OutputContext, obj: dict) -> None:
        expected = set(context.asset_partition_keys)
        if set(obj) != expected:
            raise dg.Failure(f"model output keys {sorted(obj)} do not match the run's partitions {sorted(expected)}")
        for key, model in obj.items():
            path = self._path(context, key)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL))
            tmp.replace(path)
        context.add_output_metadata({"models": len(obj), "folder": str(Path(self.base_dir).resolve())})

    def load_input(self, context: dg.InputContext) -> dict:
        out = {}
        for key in context.asset_partition_keys:
            path = self._path(context, key)
            if not path.exists():
                raise dg.Failure(
                    f"{context.asset_key.to_user_string()} has no fitted model for {key} ({path}); "
                    "materialize it first (or run `quota-platform refresh --as-of DATE`)"
                )
            out[key] = _checked(pickle.loads(path.read_bytes()), context.asset_key.to_user_string(), key, path)
        return out
