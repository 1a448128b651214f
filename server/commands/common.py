"""What every `hanzo` command shares: help that shows each flag's default, one-line errors
naming the flag or file, and JSON reports that say where they were made."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hanzo.loadtest.reports import write_report  # noqa: F401 (the commands' report writer)


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
