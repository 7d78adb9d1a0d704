"""Notification templates, shipped as package data (``kpimon_templates``)."""
