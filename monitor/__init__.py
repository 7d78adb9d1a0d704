"""kpimon: a daemon that watches marketing KPIs."""

__version__ = "0.1.0"
