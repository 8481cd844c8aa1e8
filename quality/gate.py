"""The validation gate: a dataset whose validation failed or is missing does not reach the next stage.

Reads only the dataset's report.json or manifest.json, so the trainer can use it without Spark.
"""

from __future__ import annotations

import json
import posixpath

from schemas import storage

RECORD_FILES = ("manifest.json", "report.json", "validation.json")  # validation.json: `clover validate --kind`
FILE_RECORD_SUFFIX = ".validation.json"  # a single file's record lies beside it: FILE.validation.json


class UnvalidatedDataset(RuntimeError):
    """The input's validation failed or never ran, and --allow-unvalidated was not given."""


class UnsafeManifestPath(ValueError):
    """A manifest names a file outside its dataset directory (absolute, a URL, or through `..`)."""


def member_uri(root: str, name: str, record_uri: str) -> str:
    """URI of a file a manifest lists, refusing any name that would escape the dataset directory `root`."""
    why = None
    if not isinstance(name, str) or not name.strip():
        why = "is empty"
    elif "://" in name or name.startswith(("/", "\\")) or name[:2][1:] == ":" and name[0].isalpha():
        why = "is absolute"
    elif ".." in name.replace("\\", "/").split("/"):
        why = "goes up with '..'"
    elif "\x00" in name:
        why = "holds a NUL byte"
    if why:
        raise UnsafeManifestPath(f"{record_uri}: file {name!r} {why}; a manifest may only name files inside its "
                                 f"dataset directory {root}, relative to it (e.g. 'shards/part-00000.parquet'). "
                                 "Write the dataset again with the Clover stage that made it.")
    return storage.join(root, name)


def dataset_record(path: str) -> tuple[str, dict] | None:
    """(uri, parsed JSON) of the record describing `path`: FILE.validation.json beside a single file, else
    the report or manifest of `path` (or of its parent, for documents/)."""
    beside = path.rstrip("/") + FILE_RECORD_SUFFIX
    if storage.exists(beside):
        return beside, json.loads(storage.read_text(beside))
    for root in (path.rstrip("/"), posixpath.dirname(path.rstrip("/"))):
        for name in RECORD_FILES:
            uri = storage.join(root, name)
            if storage.exists(uri):
                return uri, json.loads(storage.read_text(uri))
    return None


def require_validated(path: str, allow_unvalidated: bool = False, kind: str = "documents") -> dict:
    """What the gate saw, for the output's manifest or report; raises unless validation passed.

    `kind` (documents, pairs) only shapes the suggested `clover validate` command."""
    record = dataset_record(path)
    validation = (record[1].get("validation") if record else None) or None
    if validation is not None and record[0].endswith(FILE_RECORD_SUFFIX) and _changed_since(path, record[1]):
        raise UnvalidatedDataset(f"{path} changed since it was validated ({record[0]}): run "
                                 f"`clover validate {path} --kind {record[1].get('kind', kind)}` again, "
                                 "or pass --allow-unvalidated.")
    status = {"input": path, "record": record[0] if record else None,
              "validated": validation is not None, "success": bool(validation and validation.get("success")),
              "allowed_unvalidated": False}
    if status["success"]:
        return status
    if allow_unvalidated:
        return {**status, "allowed_unvalidated": True}
    if validation is None:
        raise UnvalidatedDataset(f"{path}: {_how_to_validate(path, record is not None, kind)}, "
                                 "or pass --allow-unvalidated.")
    failed = ", ".join(f"{c['suite']}:{c['expectation']}({c.get('column') or ''})" for c in validation.get("failed", []))
    raise UnvalidatedDataset(f"{path}: validation failed ({failed}). Fix the data, or pass --allow-unvalidated.")


def _how_to_validate(path: str, clover_wrote_it: bool, kind: str) -> str:
    """The command that validates `path`: plain for a Clover dataset, with --kind (on a directory) otherwise."""
    if clover_wrote_it:
        return f"it was never validated. Run `clover validate {path}` first"
    if kind == "pairs":  # DPO reads prep-pairs' output (token ids, truncation), which validates itself
        return (f"it is not a prep-pairs output. Run `clover prep-pairs {path} --tokenizer DIR --out OUT` and "
                "train on OUT")
    return f"it has no report.json or manifest.json. Run `clover validate {path} --kind {kind}` first"


def _changed_since(path: str, record: dict) -> bool:
    """Whether a single file's size differs from the one its validation record holds."""
    sizes = list(record.get("files", {}).values())
    fs, local = storage.resolve(path.rstrip("/"))
    return len(sizes) != 1 or fs.get_file_info(local).size != sizes[0]
