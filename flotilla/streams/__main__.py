"""The scheduler service's entry point: ``python -m flotilla.streams`` runs one Faust worker with
the settings of the FLOTILLA_* variables (``flotilla worker`` starts it so)."""

from flotilla.settings import load_settings
from flotilla.streams.worker import run_worker

run_worker(load_settings())
