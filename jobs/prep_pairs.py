"""`spark-submit jobs/prep_pairs.py ARGS` (= `clover prep-pairs ARGS`): the prep-pairs stage, declared in dataprep/ (see dataprep/stages.py)."""

import sys

from jobs.stage_cli import run_stage

if __name__ == "__main__":
    sys.exit(run_stage("prep-pairs"))
