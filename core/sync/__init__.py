"""The Tarana base-station sync: a durable function, its commands, and the checks it makes.

``function.sync_functions`` builds the functions the runtime registers;
``commands`` holds what pages may ask for (start, cancel, confirm, retry);
``validate``, ``fetch`` and ``diff`` are the pure parts the steps are made of.
"""

from __future__ import annotations
