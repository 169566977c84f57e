"""Running changeloop in production: history encryption, metrics, log context, health probes.

Nothing here is workflow logic; the worker, the shim and `starter/temporal.py` plug these in.
"""
