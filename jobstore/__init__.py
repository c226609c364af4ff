"""Stationsync's storage: tables, migrations, the run/step/event store, station queries."""
