"""The ``stockstream`` command-line tool (see ``cli.main``)."""
