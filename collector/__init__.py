"""Collector: packets and logs in, Observations out. Imports no other ictwatch package."""
