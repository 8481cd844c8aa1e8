"""`spark-submit jobs/spark_stage.py STAGE ARGS`: any registered stage, a new one included, with no entry file of its own."""

import sys

from dataprep.stages import discover
from jobs.stage_cli import run_stage

if __name__ == "__main__":
    stages = sorted(discover())
    if len(sys.argv) < 2 or sys.argv[1] not in stages:
        sys.exit(f"usage: spark-submit jobs/spark_stage.py STAGE ARGS...  (STAGE: {', '.join(stages)})")
    sys.exit(run_stage(sys.argv[1], sys.argv[2:], prog=f"spark-submit jobs/spark_stage.py {sys.argv[1]}"))
