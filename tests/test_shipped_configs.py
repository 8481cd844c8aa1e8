import glob
import os

import pytest

from dataprep.curate import CurateConfig
from dataprep.dedup import DedupConfig
from schemas.config import load_config

CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "jobs", "configs")
CLASSES = {"curate": CurateConfig, "dedup": DedupConfig}


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(CONFIGS, "*.yaml"))))
def test_shipped_config_loads_and_validates(path):
    cls = CLASSES[os.path.basename(path).split("-")[0].removesuffix(".yaml")]
    cfg = load_config(cls, path)
    cfg.validate()


def test_config_reference_is_generated_from_the_dataclasses():
    from pathlib import Path

    from jobs.config_reference import render

    committed = (Path(__file__).resolve().parents[1] / "docs" / "config-reference.md").read_text()
    assert committed == render(), "docs/config-reference.md is stale: python -m jobs.config_reference > docs/config-reference.md"
