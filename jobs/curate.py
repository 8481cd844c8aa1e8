"""`spark-submit jobs/curate.py ARGS` (= `clover curate ARGS`): the curate stage, declared in dataprep/ (see dataprep/stages.py)."""

import sys

from jobs.stage_cli import run_stage

if __name__ == "__main__":
    sys.exit(run_stage("curate"))
