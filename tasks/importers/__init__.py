"""Importers: turn formats that users already have into the project's data contracts. Pure functions."""
