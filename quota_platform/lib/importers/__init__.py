"""Importers that turn public CRM samples into the data contract's object files."""
