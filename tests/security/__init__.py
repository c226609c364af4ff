"""Security: secrets stay secret, settings and search input are inert, actions need an admin."""
