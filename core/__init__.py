"""Stationsync's logic: engine, Tarana client and simulator, sync, settings, runtime."""
