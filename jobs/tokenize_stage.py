"""`spark-submit jobs/tokenize_stage.py ARGS` (= `clover tokenize ARGS`): the tokenize stage, declared in dataprep/ (see dataprep/stages.py)."""

import sys

from jobs.stage_cli import run_stage

if __name__ == "__main__":
    sys.exit(run_stage("tokenize"))
