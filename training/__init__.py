"""Model, FSDP trainer, streaming loader, DPO and export. Never imports pyspark."""
