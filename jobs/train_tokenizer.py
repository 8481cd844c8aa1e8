"""`spark-submit jobs/train_tokenizer.py ARGS` (= `clover train-tokenizer ARGS`): the train-tokenizer stage, declared in dataprep/ (see dataprep/stages.py)."""

import sys

from jobs.stage_cli import run_stage

if __name__ == "__main__":
    sys.exit(run_stage("train-tokenizer"))
