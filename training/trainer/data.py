"""Streams the token shards of a validated manifest, row group by row group, in a (seed, epoch) order.

The order: row groups are permuted by (seed, epoch) and cut into stripes of `stripe_row_groups`;
inside a stripe, sequences are taken round-robin from its row groups (row 0 of each, then row 1...).
Micro-batch i is sequences [i*micro, (i+1)*micro) of that order. The order does not depend on the
number of ranks, so the loader's whole state is (seed, micro-batch size, cursor, manifest hash), and
a run can resume on another world size with the same global batch. Rank r evaluates micro-batches
r, r+W, ...; with W*micro dividing the stripe, those come from K/W row groups of each stripe, so the
ranks read disjoint row groups. A thread pool (`workers`) reads a rank's row groups ahead.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from threading import Lock

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from quality.gate import member_uri, require_validated
from schemas import storage

_REBUILD = "restore it from its source, or run `clover tokenize` again (then `clover validate`)"


@dataclass
class DataConfig:
    seed: int = field(default=0, metadata={"help": "seed of the (seed, epoch) order"})
    stripe_row_groups: int = field(default=64, metadata={"help": "row groups interleaved round-robin"})
    workers: int = field(default=2, metadata={"help": "reader threads per rank"})
    allow_unvalidated: bool = field(default=False, metadata={"help": "train on shards whose validation failed or is missing"})
    verify_shards: bool = field(default=True, metadata={
        "help": "check each shard's sha256 against the manifest when the loader first opens it (one extra read)"})


class CorruptShard(RuntimeError):
    """A shard's bytes differ from what the manifest recorded, or it cannot be parsed: never train on it."""


@dataclass(frozen=True)
class MicroBatch:
    index: int              # global micro-batch index (epoch * per_epoch + position)
    tokens: np.ndarray      # (micro, seq_len + 1) int64: inputs [:, :-1], labels [:, 1:]
    num_tokens: np.ndarray  # (micro,) real tokens per row; the rest is <pad>
    doc_starts: list[list[int]] | None = None  # per row, positions where a document begins (when read)

    @property
    def doc_ids(self) -> np.ndarray:
        """(micro, seq_len + 1): index of each position's document in its row (for document masking)."""
        starts = np.zeros((len(self.tokens), self.tokens.shape[1] + 1), dtype=np.int64)
        for i, row in enumerate(self.doc_starts or []):
            np.add.at(starts[i], np.asarray(row, dtype=np.int64), 1)
        return np.cumsum(starts[:, :-1], axis=1)


def manifest_location(data: str) -> tuple[str, str]:
    """(dataset directory, manifest.json URI) for a directory or a manifest path."""
    data = data.rstrip("/")
    if data.endswith(".json"):
        return posixpath.dirname(data), data
    return data, storage.join(data, "manifest.json")


class TokenStream:
    def __init__(self, data: str, micro_batch: int, cfg: DataConfig, doc_starts: bool = True,
                 exclude: frozenset[str] = frozenset(), only: frozenset[str] | None = None):
        """`doc_starts=False` skips that column (only document masking needs it); `exclude` and `only` name
        manifest shards to leave out or to keep alone (held-out evaluation)."""
        root, manifest_uri = manifest_location(data)
        if not storage.exists(manifest_uri):
            raise FileNotFoundError(f"{manifest_uri}: no manifest; token shards come from `clover tokenize`")
        self.validation = require_validated(root, cfg.allow_unvalidated)
        text = storage.read_text(manifest_uri)
        self.manifest = json.loads(text)
        if self.manifest.get("kind") != "tokens":
            raise ValueError(f"{manifest_uri}: kind is {self.manifest.get('kind')!r}, expected 'tokens'")
        self.manifest_sha256 = hashlib.sha256(text.encode()).hexdigest()
        self.root, self.manifest_uri, self.micro, self.cfg = root, manifest_uri, micro_batch, cfg
        self.columns = ["tokens", "num_tokens"] + (["doc_starts"] if doc_starts else [])
        self.shards = [s for s in self.manifest["shards"]
                       if s["file"] not in exclude and (only is None or s["file"] in only)]
        self.seq_len = int(self.manifest["seq_len"])
        self.row_groups = self._list_row_groups()  # (file, row group, rows), in manifest order
        self.sequences = sum(rows for _, _, rows in self.row_groups)
        if self.sequences < micro_batch:
            raise ValueError(f"{data}: {self.sequences} sequences, fewer than one micro-batch of {micro_batch}")
        self.per_epoch = self.sequences // micro_batch
        self._epoch_cache: tuple[int, np.ndarray, np.ndarray] | None = None
        self._tables: OrderedDict[int, Future] = OrderedDict()
        self._checked: dict[str, Lock] = {uri: Lock() for uri, _, _ in self.row_groups}  # absent once verified
        self._expected = {member_uri(root, s["file"], manifest_uri): s.get("sha256") for s in self.manifest["shards"]}
        self._pool = ThreadPoolExecutor(max_workers=max(cfg.workers, 1), thread_name_prefix="clover-loader")

    def _list_row_groups(self) -> list[tuple[str, int, int]]:
        row_groups, self.group_shard = [], []
        for shard in self.shards:
            uri = member_uri(self.root, shard["file"], self.manifest_uri)
            try:
                found = parquet_row_groups([uri])
            except (OSError, pa.ArrowException) as err:
                raise CorruptShard(f"{uri}: not a readable Parquet shard ({err}); {_REBUILD}") from err
            if sum(rows for *_, rows in found) != shard["rows"]:
                raise CorruptShard(f"{uri}: {sum(r for *_, r in found)} rows, the manifest says {shard['rows']}; {_REBUILD}")
            row_groups += found
            self.group_shard += [shard["file"]] * len(found)
        return row_groups

    def epoch_order(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """(row group, row) of every sequence of the epoch, in stream order."""
        if self._epoch_cache and self._epoch_cache[0] == epoch:
            return self._epoch_cache[1], self._epoch_cache[2]
        permutation = np.random.default_rng([self.cfg.seed, epoch]).permutation(len(self.row_groups))
        sizes = np.array([self.row_groups[g][2] for g in permutation], dtype=np.int64)
        groups, rows = [], []
        for start in range(0, len(permutation), self.cfg.stripe_row_groups):
            stripe, stripe_sizes = permutation[start:start + self.cfg.stripe_row_groups], sizes[start:start + self.cfg.stripe_row_groups]
            slot = np.repeat(np.arange(len(stripe)), stripe_sizes)
            row = np.concatenate([np.arange(n) for n in stripe_sizes])
            order = np.lexsort((slot, row))  # row 0 of every row group, then row 1, ...
            groups.append(stripe[slot[order]])
            rows.append(row[order])
        self._epoch_cache = (epoch, np.concatenate(groups), np.concatenate(rows))
        return self._epoch_cache[1], self._epoch_cache[2]

    def locate(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """(row groups, rows) of global micro-batch `index`."""
        epoch, position = divmod(index, self.per_epoch)
        groups, rows = self.epoch_order(epoch)
        span = slice(position * self.micro, (position + 1) * self.micro)
        return groups[span], rows[span]

    def shards_of(self, index: int) -> tuple[str, ...]:
        """The manifest names of the shards that micro-batch `index` reads (no I/O)."""
        return tuple(sorted({self.group_shard[g] for g in self.locate(index)[0].tolist()}))

    def _table(self, group: int) -> Future:
        if group not in self._tables:
            uri, row_group, _ = self.row_groups[group]
            self._tables[group] = self._pool.submit(self._read, uri, row_group)
            while len(self._tables) > 2 * self.cfg.stripe_row_groups:
                self._tables.popitem(last=False)
        self._tables.move_to_end(group)
        return self._tables[group]

    def _read(self, uri: str, row_group: int) -> tuple[np.ndarray, np.ndarray, list | None]:
        """A row group, after its shard's first opening checked the shard against the manifest."""
        lock = self._checked.get(uri)
        if lock is not None:
            with lock:  # one reader hashes the shard; the others wait for its verdict
                if uri in self._checked:
                    self._verify(uri)
                    self._checked.pop(uri, None)
        try:
            return _read_row_group(uri, row_group, self.columns)
        except (OSError, pa.ArrowException) as err:
            raise CorruptShard(f"{uri}: row group {row_group} cannot be read ({err}); {_REBUILD}") from err

    def _verify(self, uri: str) -> None:
        expected = self._expected.get(uri)
        if not self.cfg.verify_shards or not expected:  # manifests before per-shard sha256 stay readable
            return
        actual = storage.file_sha256(uri)
        if actual != expected:
            raise CorruptShard(f"{uri}: sha256 {actual[:16]}... differs from the manifest's {expected[:16]}...: the "
                               f"shard changed after `clover tokenize` wrote it; {_REBUILD}")

    def prefetch(self, indices: list[int]) -> None:
        """Start reading the row groups that these micro-batches need."""
        for index in indices:
            for group in np.unique(self.locate(index)[0]):
                self._table(int(group))

    def micro_batch(self, index: int) -> MicroBatch:
        groups, rows = self.locate(index)
        tokens = np.zeros((self.micro, self.seq_len + 1), dtype=np.int64)
        lengths = np.zeros(self.micro, dtype=np.int64)
        doc_starts = []
        for i, (group, row) in enumerate(zip(groups.tolist(), rows.tolist())):
            values, num_tokens, starts = self._table(group).result()
            tokens[i] = values[row]
            lengths[i] = num_tokens[row]
            doc_starts.append(starts[row] if starts is not None else [])
        return MicroBatch(index, tokens, lengths, doc_starts)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def parquet_row_groups(uris: list[str]) -> list[tuple[str, int, int]]:
    """(uri, row group, rows) of every row group of the files, in the order given (footers only)."""
    found = []
    for uri in uris:
        fs, path = storage.resolve(uri)
        with fs.open_input_file(path) as handle:
            meta = pq.ParquetFile(handle).metadata
        found += [(uri, i, meta.row_group(i).num_rows) for i in range(meta.num_row_groups)]
    return found


def _read_row_group(uri: str, row_group: int, columns: list[str]) -> tuple[np.ndarray, np.ndarray, list | None]:
    """One row group as a (rows, seq_len + 1) token matrix, its num_tokens and (if read) doc_starts."""
    fs, path = storage.resolve(uri)
    with fs.open_input_file(path) as handle:
        table = pq.ParquetFile(handle).read_row_group(row_group, columns=columns)
    tokens = table.column("tokens").combine_chunks()
    width = len(tokens[0]) if len(tokens) else 0
    matrix = tokens.flatten().to_numpy(zero_copy_only=False).reshape(len(tokens), width)
    starts = table.column("doc_starts").to_pylist() if "doc_starts" in table.column_names else None
    return matrix, table.column("num_tokens").to_numpy(), starts
