"""Application services: orchestrate the domain through the ports, never an SDK."""
