"""Spark stages of the Clover data pipeline."""
