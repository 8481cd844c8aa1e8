import glob
import os

import pytest

from dataprep.curate import CurateConfig
from dataprep.dedup import DedupConfig
from jobs.config import load_config

CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "jobs", "configs")
CLASSES = {"curate": CurateConfig, "dedup": DedupConfig}


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(CONFIGS, "*.yaml"))))
def test_shipped_config_loads_and_validates(path):
    cls = CLASSES[os.path.basename(path).split("-")[0].removesuffix(".yaml")]
    cfg = load_config(cls, path)
    cfg.validate()
