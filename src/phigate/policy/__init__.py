"""Profiles as data: the Annex E table, the YAML schema, built-ins, compiled action plans."""
