"""What every `hanzo` command shares: help that shows each flag's default, one-line errors
naming the flag or file, the feature store's flags."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path



class CommandError(Exception):
    """A mistake in how a command was called: printed as one line, exit status 2."""


class Parser(argparse.ArgumentParser):
    """An argument mistake in one line that names the command and the flag (not the usage
    block argparse prints)."""

    def error(self, message: str) -> None:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Appends "(default: X)" to a flag's help unless the help already says its default, or
    the default is None or False (nothing to show)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if ("default" in text or default in (None, False, argparse.SUPPRESS) or not action.option_strings
                or isinstance(action, (argparse._HelpAction, argparse._VersionAction))):
            return text
        return f"{text} (default: %(default)s)"


def add_command(sub: argparse._SubParsersAction, name: str, summary: str,
                description: str | None = None) -> argparse.ArgumentParser:
    # the description is printed as it is, the summary %-formatted by argparse
    return sub.add_parser(name, help=summary, description=description or summary.replace("%%", "%"),
                          formatter_class=HelpFormatter)


def stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def existing_file(flag: str, path: Path | None) -> Path | None:
    """`path` if it is a readable file; else a CommandError naming the flag."""
    if path is None:
        return None
    if not path.is_file():
        raise CommandError(f"{flag} {path}: no such file")
    return path


def positive(flag: str, value: float) -> None:
    if not value > 0:
        raise CommandError(f"{flag} must be > 0, not {value:g}")


def add_feature_arguments(parser: argparse.ArgumentParser) -> None:
    """Where the events and features live: the flags of `serve` and `ingest`."""
    parser.add_argument("--data-dir", type=Path, help="event log and feature store snapshots (default ./hanzo_data)")
    parser.add_argument("--catalog", type=Path, help="catalog.jsonl loaded into an empty store")
    parser.add_argument("--fsync", choices=["always", "interval", "never"],
                        help="when the log fsyncs: every batch (default), at most every 50 ms, or never")
    parser.add_argument("--feature-backend", choices=["embedded", "redis"],
                        help="where the online features live (default embedded)")
    parser.add_argument("--redis-url", help="for --feature-backend redis (default redis://127.0.0.1:6379/0)")


def feature_overrides(args: argparse.Namespace) -> dict:
    return dict(data_dir=args.data_dir, catalog=args.catalog, fsync=args.fsync, backend=args.feature_backend,
                redis_url=args.redis_url)
