"""Reserved by DESIGN.md; built by a later issue."""
