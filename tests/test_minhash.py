import numpy as np
import pytest
from datasketch import MinHash

from quality.minhash import ShingleHasher, band_digests, jaccard, lsh_params, shingle_words, signatures


def test_shingle_normalization_is_documented_folding():
    assert shingle_words("Hello,  WORLD! It's 2024_v3.") == [b"hello", b"world", b"it", b"s", b"0000", b"v0"]
    assert shingle_words("Café, naïve—2€") == ["café".encode(), "naïve".encode(), b"0"]


def test_signatures_are_bit_identical_to_datasketch():
    rng = np.random.default_rng(7)
    hasher = ShingleHasher(5)
    vocabulary = [f"w{i}" for i in range(300)]
    texts = [" ".join(rng.choice(vocabulary, size=rng.integers(0, 400))) for _ in range(60)]
    shingles = [hasher(t) for t in texts]
    for num_perm, seed in ((112, 1), (64, 42), (128, 0)):
        ours = signatures(shingles, num_perm, seed)
        for row, hashes in zip(ours, shingles):
            reference = MinHash(num_perm=num_perm, seed=seed, hashfunc=int)
            reference.update_batch(hashes.tolist())
            assert np.array_equal(row, reference.hashvalues)


def test_shingles_short_and_empty_documents():
    hasher = ShingleHasher(5)
    assert len(hasher("")) == 0 and len(hasher("!!! ...")) == 0
    assert len(hasher("only three words")) == 1
    assert len(hasher("a b c d e f")) == 2
    assert np.array_equal(hasher("Same TEXT, same shingles."), hasher("same text same shingles"))


def test_band_digests_match_exactly_when_band_rows_match():
    sig = np.arange(2 * 16, dtype=np.uint32).reshape(2, 16)
    sig[1, :8] = sig[0, :8]  # first band equal, second band different
    digests = band_digests(sig, bands=2, rows=8)
    assert digests.dtype == np.int64 and digests.shape == (2, 2)
    assert digests[0, 0] == digests[1, 0] and digests[0, 1] != digests[1, 1]


def test_jaccard_exact():
    a, b = np.array([1, 2, 3, 4], dtype=np.uint32), np.array([3, 4, 5], dtype=np.uint32)
    assert jaccard(a, b) == pytest.approx(2 / 5)
    assert jaccard(a, a) == 1.0


def test_lsh_params_use_datasketch_optimum():
    params = lsh_params(0.8, 112)
    assert params.bands * params.rows <= 112
    # the S-curve's midpoint (1/b)^(1/r) lies near the threshold
    assert abs((1 / params.bands) ** (1 / params.rows) - 0.8) < 0.08


def test_scheme_record_names_the_permutations():
    from quality.minhash import SCHEME, scheme_record

    record = scheme_record(112, 1)
    assert record["scheme"] == SCHEME == MinHash(num_perm=8).scheme == "affine32" and record["num_perm"] == 112
    assert record == scheme_record(112, 1) and record["permutations_sha256"] != scheme_record(112, 2)["permutations_sha256"]


def test_legacy_datasketch_is_refused_when_permutations_are_taken(tmp_path):
    """A datasketch 1.x (mersenne-prime uint64 permutations, no scheme) must stop dedup, not truncate."""
    import subprocess
    import sys
    from pathlib import Path

    fake = tmp_path / "datasketch"
    fake.mkdir()
    (fake / "__init__.py").write_text(
        "import numpy as np\n"
        "class MinHash:\n"
        "    def __init__(self, num_perm=128, seed=1):\n"
        "        gen = np.random.RandomState(seed)\n"
        "        self.permutations = (gen.randint(1, (1 << 61) - 1, num_perm, dtype=np.uint64),\n"
        "                             gen.randint(0, (1 << 61) - 1, num_perm, dtype=np.uint64))\n")
    (tmp_path / "datasketch-1.6.5.dist-info").mkdir()
    (tmp_path / "datasketch-1.6.5.dist-info" / "METADATA").write_text("Name: datasketch\nVersion: 1.6.5\n")
    env = {"PYTHONPATH": f"{tmp_path}:{Path(__file__).resolve().parents[1]}", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", "import quality.minhash as m; m.permutations(8, 1)"], env=env, capture_output=True, text=True)
    assert done.returncode == 1 and "ImportError" in done.stderr
    assert "datasketch>=2.0" in done.stderr and "1.6.5" in done.stderr


def test_against_refuses_an_index_made_with_other_minhash_parameters(tmp_path):
    import json

    from dataprep.dedup import DedupConfig, _read_index
    from schemas.config import ConfigError

    cfg = DedupConfig()
    params = cfg.index_params()
    assert {"scheme", "permutations_sha256", "num_perm"} <= set(params)
    legacy = {k: params[k] for k in ("shingle_n", "num_perm", "bands", "rows", "seed")}  # written before the scheme
    other = {**params, "permutations_sha256": "0" * 64}
    for index, wrong in (("legacy", legacy), ("other", other)):
        (tmp_path / index).mkdir()
        (tmp_path / index / "index.json").write_text(json.dumps(wrong))
        with pytest.raises(ConfigError, match="permutations_sha256.*--write-index"):
            _read_index(None, str(tmp_path / index), cfg)
