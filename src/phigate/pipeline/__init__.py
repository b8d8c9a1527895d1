"""Run many instances: input discovery, the worker pool, outputs, quarantine and the run report."""
