"""Where fitted models live: one directory per monthly partition under the model folder, holding a
JSON manifest, the frames as Parquet and the arrays as .npy (docs/model_store.md). The warehouse
holds the readable summary (win_rate_posteriors); the posterior draws the projections simulate
from stay beside it, keyed the same way.

Nothing stored is ever executed: Parquet, JSON and .npy are data (arrays that would need code
to load are refused), and every part is checked against the SHA-256 the manifest lists before it
is parsed. A month written in another format version, a changed part, a foreign file and a file left
by an older release are all refused with the month to fit again.

Writing is atomic: the parts go to a fresh directory, and the month's entry, a symbolic link to
it, is replaced in one rename, so a run killed midway leaves the month's previous model readable.
Everything created is owner-only (files 0600, directories 0700), whatever the umask.

A single-run backfill over several months hands over {partition key: model}; a load returns the
same shape for the partitions asked for, and stops with the key named if one was never fitted."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import secrets
import shutil
import stat
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl

import quota_platform
from quota_platform.lib.forecast.model_parts import ModelParts, PartsError, from_parts, to_parts
from quota_platform.lib.forecast.projection import MODEL_FORMAT, ProjectionModel

FORMAT_NAME = "quota_platform.projection_model"
MANIFEST = "manifest.json"
# a kind of part -> the file suffix it is stored under
SUFFIX = {"frame": ".parquet", "array": ".npy"}
READS_AS = {"frame": "a Parquet frame", "array": "an .npy array of plain values"}
# the manifest's own keys; every other key is the model's document (lib/forecast/model_parts.py)
ENVELOPE = ("format", "format_version", "written_by", "written_at", "asset", "partition", "parts", "manifest_sha256")
# what an older release stored per month, beside where the directory now goes; never opened
LEGACY_SUFFIX = ".pickle"
# partition keys and asset names become file names: no separators, no leading dot
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_SHA256 = re.compile(r"[0-9a-f]{64}")


def resolve_root(base_dir: str) -> Path:
    """The model folder as an absolute path (a relative ``base_dir`` is taken from the working
    directory of the call)."""
    return Path(base_dir).expanduser().resolve()


def model_dir(base_dir: str, asset: str, key: str) -> Path:
    """Where the model of ``asset`` for partition ``key`` is found: a link to its directory."""
    return _asset_dir(resolve_root(base_dir), asset) / _checked_name(key, "partition key")


def write_model(base_dir: str, asset: str, key: str, model: ProjectionModel) -> Path:
    """Store ``model`` as the model of ``asset`` for ``key``, replacing any earlier one
    atomically. Returns the directory written."""
    try:
        parts = to_parts(model)
    except (TypeError, ValueError) as exc:
        raise dg.Failure(f"{asset} for {key}: the model cannot be stored: {exc}") from exc
    root = resolve_root(base_dir)
    asset_dir = _asset_dir(root, asset)
    entry = asset_dir / _checked_name(key, "partition key")
    _make_dirs(asset_dir)
    target = asset_dir / f".{key}.{secrets.token_hex(6)}"
    _make_dir(target)
    listed = []
    try:
        for kind, items in (("frame", parts.frames), ("array", parts.arrays)):
            for name, value in items.items():
                data = _encode(kind, value)
                _faithful(kind, name, value, _decode(kind, data), asset, key)
                file = _checked_name(name, "part name") + SUFFIX[kind]
                _write_file(target / file, data)
                listed.append({"name": name, "kind": kind, "file": file, "bytes": len(data), "sha256": _sha256(data)})
        clash = set(parts.document) & set(ENVELOPE)
        if clash:
            raise dg.Failure(f"{asset} for {key}: the model document uses the manifest's own key(s) {sorted(clash)}")
        manifest = {
            "format": FORMAT_NAME,
            "format_version": MODEL_FORMAT,
            "written_by": f"quota_platform {quota_platform.__version__}",
            "written_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "asset": asset,
            "partition": key,
            **parts.document,
            "parts": listed,
        }
        manifest["manifest_sha256"] = _manifest_sha256(manifest)
        _write_file(target / MANIFEST, json.dumps(manifest, indent=1).encode())
        _sync_dir(target)
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        raise
    previous = os.readlink(entry) if entry.is_symlink() else None
    if previous is None and os.path.lexists(entry):
        # a directory or file put there by hand (a restored copy, say): kept aside, not deleted
        entry.rename(asset_dir / f".{key}.replaced-{secrets.token_hex(6)}")
    link = asset_dir / f".{key}.link-{secrets.token_hex(6)}"
    os.symlink(target.name, link)
    os.replace(link, entry)
    _sync_dir(asset_dir)
    if previous is not None and previous != target.name and _is_version_of(previous, key):
        shutil.rmtree(asset_dir / previous, ignore_errors=True)
    with contextlib.suppress(FileNotFoundError):
        (asset_dir / f"{key}{LEGACY_SUFFIX}").unlink()  # replaced by this fit
    return target


def read_model(base_dir: str, asset: str, key: str) -> ProjectionModel | None:
    """The stored model of ``asset`` for ``key``, None if none was ever stored; a dagster Failure
    naming the month to fit again if what is there cannot be used."""
    asset_dir = _asset_dir(resolve_root(base_dir), asset)
    entry = asset_dir / _checked_name(key, "partition key")

    def refuse(problem: str, path: Path = entry) -> dg.Failure:
        return dg.Failure(f"{asset} for {key} ({path}) {problem}; materialize win_rate_posteriors for {key} again")

    if not os.path.lexists(entry):
        legacy = asset_dir / f"{key}{LEGACY_SUFFIX}"
        if legacy.exists():
            raise refuse("was written by an older release in a format this one never opens; it must be refitted", legacy)
        return None
    if entry.is_symlink():
        target = os.readlink(entry)
        if not _is_version_of(target, key):
            raise refuse(f"links to {target}, not to a model directory beside it (foreign file)")
        folder = asset_dir / target
    else:
        folder = entry
    if not folder.is_dir():
        raise refuse("is not a model directory (foreign file)" if folder.exists() else "links to a directory that is gone")
    manifest = _read_manifest(folder, refuse)
    written_for = (manifest.get("asset"), manifest.get("partition"))
    if written_for != (asset, key):
        raise refuse(
            f"holds the model of {written_for[0]!r} for {written_for[1]!r}: a directory copied or moved "
            "from elsewhere",
            folder / MANIFEST,
        )
    parts = _read_parts(folder, manifest, refuse)
    document = {k: v for k, v in manifest.items() if k not in ENVELOPE}
    try:
        return from_parts(ModelParts(document=document, frames=parts["frame"], arrays=parts["array"]))
    except PartsError as exc:
        raise refuse(f"does not describe a model of format {MODEL_FORMAT}: {exc}") from exc


class ModelFiles(dg.ConfigurableResource):
    """Read access to stored models for assets that read whichever months exist (the backtest)."""

    base_dir: str

    def read(self, asset: str, key: str) -> ProjectionModel | None:
        """One stored model by asset name and partition key, or None if it was never fitted."""
        return read_model(self.base_dir, asset, key)


class ModelStore(dg.ConfigurableIOManager):
    base_dir: str

    def handle_output(self, context: dg.OutputContext, obj: dict) -> None:
        expected = set(context.asset_partition_keys)
        if set(obj) != expected:
            raise dg.Failure(f"model output keys {sorted(obj)} do not match the run's partitions {sorted(expected)}")
        asset = context.asset_key.to_user_string()
        for key, model in obj.items():
            write_model(self.base_dir, asset, key, model)
        context.add_output_metadata(
            {"models": len(obj), "folder": str(resolve_root(self.base_dir)), "format_version": MODEL_FORMAT}
        )

    def load_input(self, context: dg.InputContext) -> dict:
        asset = context.asset_key.to_user_string()
        out = {}
        for key in context.asset_partition_keys:
            model = read_model(self.base_dir, asset, key)
            if model is None:
                raise dg.Failure(
                    f"{asset} has no fitted model for {key} ({model_dir(self.base_dir, asset, key)}); "
                    "materialize it first (or run `quota-platform refresh --as-of DATE`)"
                )
            out[key] = model
        return out


# --- reading -----------------------------------------------------------------------------------


def _read_manifest(folder: Path, refuse) -> dict:
    path = folder / MANIFEST
    if not _is_plain_file(path):
        raise refuse(f"has no {MANIFEST} (an incomplete or foreign directory)", path)
    try:
        manifest = json.loads(path.read_bytes())
    except (ValueError, RecursionError):  # not text, not JSON, or JSON no manifest of ours could be
        raise refuse("is not a model manifest: not JSON (foreign file)", path) from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise refuse(f"is not a {FORMAT_NAME} manifest (foreign file)", path)
    version = manifest.get("format_version")
    if version != MODEL_FORMAT:
        raise refuse(
            f"was written in model format {version!r} by {manifest.get('written_by', 'an unknown release')}; "
            f"this release reads format {MODEL_FORMAT} only",
            path,
        )
    if manifest.get("manifest_sha256") != _manifest_sha256(manifest):
        raise refuse("does not match its own manifest_sha256: the manifest was changed after it was written", path)
    return manifest


def _read_parts(folder: Path, manifest: dict, refuse) -> dict[str, dict]:
    listed = manifest.get("parts")
    if not isinstance(listed, list):
        raise refuse(f"has a {MANIFEST} without a list of parts", folder / MANIFEST)
    out: dict[str, dict] = {"frame": {}, "array": {}}
    for part in listed:
        name = part.get("name") if isinstance(part, dict) else None
        kind = part.get("kind") if isinstance(part, dict) else None
        if (
            not isinstance(name, str) or not _NAME.fullmatch(name) or kind not in SUFFIX
            or part.get("file") != name + SUFFIX[kind]
            or not isinstance(part.get("sha256"), str) or not _SHA256.fullmatch(part["sha256"])
            or name in out["frame"] or name in out["array"]
        ):
            raise refuse(f"lists a part it cannot name a file by: {part!r}", folder / MANIFEST)
        path = folder / part["file"]
        if not os.path.lexists(path):
            raise refuse(f"is missing the part {part['file']} its manifest lists", path)
        if not _is_plain_file(path):
            raise refuse(f"has a part {part['file']} that is not a regular file (foreign file)", path)
        data = path.read_bytes()
        if _sha256(data) != part["sha256"]:
            raise refuse(f"has a part {part['file']} whose SHA-256 differs from the manifest's: changed after it was written", path)
        try:
            out[kind][name] = _decode(kind, data)
        except Exception as exc:  # a checksum-valid part that does not parse: written wrongly
            raise refuse(f"has a part {part['file']} that does not read as {READS_AS[kind]}: {exc}", path) from exc
    return out


# --- writing -----------------------------------------------------------------------------------


def _encode(kind: str, value) -> bytes:
    buffer = io.BytesIO()
    if kind == "frame":
        value.write_parquet(buffer)
    else:
        np.save(buffer, value, allow_pickle=False)
    return buffer.getvalue()


def _decode(kind: str, data: bytes):
    if kind == "frame":
        return pl.read_parquet(io.BytesIO(data))
    # the .npy format itself, not np.load: no .npz archive, no other format guessed from the bytes
    return np.lib.format.read_array(io.BytesIO(data), allow_pickle=False)


def _faithful(kind: str, name: str, value, back, asset: str, key: str) -> None:
    """Refuse to store a part that would not read back equal, dtypes included."""
    if kind == "frame":
        same = back.schema == value.schema and back.equals(value)
    else:
        same = (
            back.dtype == value.dtype and back.shape == value.shape
            and np.array_equal(back, value, equal_nan=value.dtype.kind in "fc")
        )
    if not same:
        raise dg.Failure(f"{asset} for {key}: the part {name} would not read back as it was written; the model is not stored")


def _write_file(path: Path, data: bytes) -> None:
    """A new file owner-only (0600 whatever the umask), flushed to disk."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, flags, 0o600)
    with os.fdopen(fd, "wb") as out:
        os.fchmod(out.fileno(), 0o600)
        out.write(data)
        out.flush()
        os.fsync(out.fileno())


def _make_dir(path: Path, exist_ok: bool = False) -> None:
    """A new directory owner-only (0700 whatever the umask); an existing one is left as it is."""
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        if exist_ok and path.is_dir():
            return
        raise
    os.chmod(path, 0o700)


def _make_dirs(path: Path) -> None:
    missing = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    for folder in reversed(missing):
        _make_dir(folder, exist_ok=True)


def _sync_dir(path: Path) -> None:
    """Flush a directory's entries (a rename into it) to disk where the file system allows."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# --- names and checks --------------------------------------------------------------------------


def _checked_name(name: str, what: str) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise dg.Failure(f"{what} {name!r} cannot name a file (letters, digits, '_', '.', '-'; not starting with '.')")
    return name


def _asset_dir(root: Path, asset: str) -> Path:
    """The folder of an asset's models: one level per part of a prefixed key (``a/b``)."""
    return root.joinpath(*(_checked_name(part, "asset name part") for part in asset.split("/")))


def _is_version_of(name: str, key: str) -> bool:
    """Whether ``name`` is a model directory that write_model makes for ``key``."""
    return re.fullmatch(rf"\.{re.escape(key)}\.[0-9a-f]{{12}}", name) is not None


def _is_plain_file(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except FileNotFoundError:
        return False


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _manifest_sha256(manifest: dict) -> str:
    """SHA-256 of the manifest without this field, in its canonical form: keys sorted, no spaces,
    ASCII only (non-finite numbers as NaN, Infinity, -Infinity)."""
    body = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    return _sha256(json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=True).encode())
