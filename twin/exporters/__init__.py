"""Exporters: one pure ``*_map`` module and one adapter module per protocol."""
