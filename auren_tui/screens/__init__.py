"""Screens of ``auren top``."""
