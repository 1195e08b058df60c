"""Tracked runs: params, metrics, datasets, artefacts, models and captured lineage."""

from shipway.tracking.run import Run, get_run, list_runs, start_run

__all__ = ["Run", "get_run", "list_runs", "start_run"]
