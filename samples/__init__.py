"""Runnable samples for people who build on Stockstream (downstream teams, channels)."""
