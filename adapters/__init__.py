"""Adapters: implementations of the ports in ``application.ports``, one package per technology."""
