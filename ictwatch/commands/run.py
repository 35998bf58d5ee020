"""`ictwatch run`: the daemon (live capture, followed logs, the report web page, metrics and health)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ictwatch.commands.common import migrate_or_spool, say_spooled

if TYPE_CHECKING:
    from ictwatch import settings
    from ictwatch.control import Runner
    from rules.engine import Engine


def register(sub: argparse._SubParsersAction) -> None:
    """Add `run`."""
    live = sub.add_parser("run", help="capture live on an interface through the policy into the store")
    live.add_argument("--config", required=True, type=Path)
    live.add_argument("--interface", help="overrides collector.interface")
    live.add_argument("--no-web", action="store_true", help="do not start the report web page")
    live.set_defaults(func=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    """The daemon: live capture through the policy into the store, with the report web page and the
    metrics and health endpoint beside it, until SIGTERM or SIGINT (then what is pending is stored or
    spooled). SIGHUP reloads the configuration, policy, directory, register and lists between two batches;
    if they fail to load, the ones in force stay and the failure is logged and shown in the metrics. The
    commands that need the store run inside it, through its command socket (ictwatch/control.py), and it
    runs clause I1's iPad check each school day itself."""
    import signal
    import threading

    from collector.capture.live import CaptureToolError, LiveCaptureSource
    from ictwatch import settings, status
    from ictwatch.commands.ipads import clock, daily
    from ictwatch.commands.spool import in_daemon
    from ictwatch.commands.web import web_server
    from ictwatch.metrics import RELOAD_SUCCESS, policy_in_force
    from ictwatch.pipeline import run_live
    from rules.config import ConfigError

    loaded = settings.load(args.config)
    engine = loaded.engine()  # the category lists are read here: lists that cannot be read stop start-up
    cfg = loaded.settings.collector
    interface = args.interface or cfg.interface or ("pipe" if cfg.capture_tool == "pipe" else None)
    if not interface:
        raise ConfigError(args.config, "collector.interface", None, "no interface to capture on")
    if cfg.capture_tool == "pipe" and cfg.capture_pipe is None:
        raise ConfigError(args.config, "collector.capture_pipe", None, "capture_tool pipe needs the FIFO's path")
    pipe = str(loaded.path.parent / cfg.capture_pipe) if cfg.capture_pipe else None
    capture_filter = cfg.capture_filter
    if cfg.line_rate:
        from collector.capture.linerate import capture_filter as line_rate_filter

        capture_filter = line_rate_filter(cfg.capture_filter)
    source = LiveCaptureSource(interface, capture_filter, cfg.capture_tool, pipe=pipe)
    hangup, stopping = threading.Event(), threading.Event()
    in_force = [loaded]
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: source.stop())
    signal.signal(signal.SIGHUP, lambda *_: hangup.set())

    def reload(current: Engine) -> Engine | None:
        if not hangup.is_set():
            return None
        hangup.clear()
        try:
            again = settings.load(args.config)
            fresh = again.engine()
        except (ConfigError, OSError) as exc:
            RELOAD_SUCCESS.set(0)
            logging.getLogger("ictwatch").error("reload refused, the configuration in force stays: %s", exc)
            return None
        policy_in_force(fresh.version)
        in_force[0] = again
        logging.getLogger("ictwatch").warning("reloaded: policy %s (was %s)", fresh.version, current.version)
        return fresh

    policy_in_force(engine.version)  # the first load took
    store, spool = loaded.open_store(), loaded.open_spool()
    servers: list[tuple[Any, Any]] = []
    try:
        migrate_or_spool(store)
        in_daemon(spool)
        servers.append((_control(loaded, lambda argv: args.in_daemon(argv, args.config)), None))
        servers.append((status.serve(loaded.settings.metrics.listen), None))
        print(f"metrics and health on http://{loaded.settings.metrics.listen}/", file=sys.stderr, flush=True)
        if not args.no_web:
            servers.append(web_server(loaded))
        for server, _ in servers:
            threading.Thread(target=server.serve_forever, daemon=True).start()
        threading.Thread(target=daily, args=(lambda: in_force[0], stopping, clock()), daemon=True,
                         name="ipad-check").start()
        print(f"capturing on {interface} with {source.tool}" if source.tool != "pipe" else
              f"capturing on the pipe {pipe}", file=sys.stderr, flush=True)
        flows = None
        if cfg.line_rate and cfg.flow_source == "conntrack":
            from collector.logs.conntrack import ConntrackFlows

            flows = ConntrackFlows()
        summary = run_live(source, engine, store, spool=spool, reload=reload, follow=_followed(loaded),
                           capture_flows=not cfg.line_rate, flows=flows)
    except CaptureToolError as exc:
        print(f"ictwatch: {exc}", file=sys.stderr)
        return 1
    finally:
        stopping.set()
        for server, app in servers:
            server.shutdown()
            server.server_close()
            if app is not None:
                app.close()
        store.close()
        spool.close()
    print(f"captured {summary.packets} packets, {summary.observations} observations, stored {summary.stored} "
          f"activities ({summary.verdicts['breach']} breaches); the capture tool dropped {summary.dropped}")
    say_spooled(summary.spooled, loaded)
    return 0

def _control(loaded: settings.Loaded, runner: Runner) -> Any:
    """The command socket, running each caller's command with `runner` (`cli.in_daemon`)."""
    from ictwatch.control import ControlServer
    from rules.config import ConfigError

    path = loaded.socket_path
    try:
        server = ControlServer(path, runner)
    except OSError as exc:
        raise ConfigError(loaded.path, "control.socket", str(path), exc.strerror or str(exc)) from None
    print(f"commands on {path}", file=sys.stderr, flush=True)
    return server


def _followed(loaded: settings.Loaded) -> tuple[Any, ...]:
    """The configured logs to follow, each with its checkpoint beside the spool."""
    from collector.logs.followed import followed_logs

    cfg = loaded.settings.collector
    logs = followed_logs(cfg, loaded.path.parent, loaded.spool_path.parent / "checkpoints")
    for log, configured in zip(logs, cfg.follow, strict=True):
        print(f"following {log.follower.path} ({configured.format})", file=sys.stderr, flush=True)
    for warning in loaded.request_size_warnings():  # at start-up only: a reload follows no new logs
        logging.getLogger("ictwatch").warning("%s", warning)
    return logs
