"""`spark-submit jobs/dedup.py ARGS` (= `clover dedup ARGS`): the dedup stage, declared in dataprep/ (see dataprep/stages.py)."""

import sys

from jobs.stage_cli import run_stage

if __name__ == "__main__":
    sys.exit(run_stage("dedup"))
