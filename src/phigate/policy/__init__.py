"""Profiles as data: the Annex E table, the YAML schema, built-in profiles, compiled action plans."""
