"""Hostile upstream input: bad records and bad portal answers, rejected or skipped with a reason."""
