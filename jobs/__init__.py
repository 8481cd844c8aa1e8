"""Entry points: the `clover` CLI, spark-submit and torchrun scripts, and YAML configs."""
