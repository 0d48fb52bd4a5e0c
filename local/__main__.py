"""``python -m local``: serve Stockstream on this machine until SIGINT or SIGTERM.

Settings come from the environment (``application.settings``): ``STOCKSTREAM_DATA`` for
the data directory, ``PORT`` for the port, ``STOCKSTREAM_API_KEYS`` and
``STOCKSTREAM_ADMIN_KEYS`` for keys. ``--port``
and ``--host`` override them. Exit status 0 after a clean shutdown, 2 on bad settings.
"""

from __future__ import annotations

import argparse
import dataclasses
import signal
import sys
from types import FrameType

from application.settings import SettingsError, load
from local.host import DEFAULT_HOST, EmbeddedHost, InsecureBinding
from local.logs import configure_logging


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, help="TCP port (default: PORT or 7071; 0 = any)")
    parser.add_argument("--host", default=DEFAULT_HOST,
                        help="address to listen on (default 127.0.0.1; another address "
                             "needs STOCKSTREAM_API_KEYS or STOCKSTREAM_ADMIN_KEYS)")
    parser.add_argument("--data", help="data directory (default: STOCKSTREAM_DATA or ./data)")
    args = parser.parse_args(argv)
    configure_logging()
    try:
        settings = load()
        if args.data:
            settings = dataclasses.replace(settings, data_dir=type(settings.data_dir)(args.data))
        port = settings.port if args.port is None else args.port
        host = EmbeddedHost(settings, host=args.host, port=port)
    except (SettingsError, InsecureBinding, OSError) as error:
        print(f"python -m local: {error}", file=sys.stderr)
        return 2

    def ignore(signum: int, frame: FrameType | None) -> None:
        """uvicorn handles the signal, then re-raises it once it has stopped: let it pass."""

    # uvicorn installs its own handlers while serving and restores these afterwards.
    signal.signal(signal.SIGINT, ignore)
    signal.signal(signal.SIGTERM, ignore)
    host.run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
