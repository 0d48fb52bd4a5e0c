"""Baselines the HTTP benchmarks compare against: standalone ASGI apps that import nothing
of Stockstream's, each run as its own process on the same uvicorn (``python -m
bench.baselines.NAME --serve DIR``; the first line printed is the URL)."""
