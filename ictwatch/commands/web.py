"""`ictwatch serve`: the report web page on its own (the daemon serves it too)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ictwatch.commands.common import desk

if TYPE_CHECKING:
    from ictwatch import settings


def register(sub: argparse._SubParsersAction) -> None:
    """Add `serve`."""
    sv = sub.add_parser("serve", help="the report web page (web.listen; TLS unless on loopback)")
    sv.add_argument("--config", required=True, type=Path)
    sv.set_defaults(func=cmd_serve)


def web_server(loaded: settings.Loaded) -> tuple[Any, Any]:
    """(server, app) for the report web page as configured; TLS unless it listens on loopback only."""
    from ictwatch.settings import split_listen
    from reports.accounts import Accounts
    from reports.web import Limits, WebApp, serve

    web = loaded.settings.web
    host, port = split_listen(web.listen)
    tls = None  # settings refuse a listener beyond loopback without them
    if web.tls_cert and web.tls_key:
        tls = (str(loaded.path.parent / web.tls_cert), str(loaded.path.parent / web.tls_key))
    store = loaded.open_store()
    store.migrate()
    cases = desk(loaded, store, explained=True)
    cases.audit.prepare()  # the chain's key made at first start, or a clear stop when it cannot be read
    app = WebApp(cases, Accounts(loaded.path.parent / web.accounts),
                 web.session_idle_minutes, loaded.open_spool, loaded.lists_path, len(loaded.categories))
    print(f"report web page on {'https' if tls else 'http'}://{web.listen}/", file=sys.stderr, flush=True)
    return serve(app, host, port, tls, Limits(web.request_timeout_s, web.max_connections)), app


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve the report web page until SIGTERM or SIGINT."""
    import signal
    import threading

    from ictwatch import settings

    server, app = web_server(settings.load(args.config))
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: threading.Thread(target=server.shutdown).start())
    try:
        server.serve_forever()
    finally:
        server.server_close()
        app.close()
    return 0

