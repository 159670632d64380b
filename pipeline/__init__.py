"""Ingestion, schema inference and the reversible mixed-type encoder."""
