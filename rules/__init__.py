"""The default rule pack, shipped as package data (``kpimon_rules``)."""
