"""Durable orchestration: deterministic code only. No I/O, no clocks, no randomness here."""
