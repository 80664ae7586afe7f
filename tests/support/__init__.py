"""Shared test helpers: scripted servers, fixed runs, model drivers (on pytest's pythonpath)."""
