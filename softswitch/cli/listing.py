"""Printing a listing: a table for people, one record per line for scripts.

On a terminal, a rich table (text folds, numbers stay on one line). On a
pipe, a header line and then one tab-separated line per record: no box
drawing and no wrapping, so `grep`, `cut` and `awk` see whole records.
`--json` is handled by each command.
"""

from __future__ import annotations

import sys

import click


def _cell(value: str) -> str:
    return value.replace("\t", " ").replace("\n", " ")


def print_listing(title: str, columns: list[str], rows: list[list[str]],
                  no_wrap: frozenset[str] = frozenset()) -> None:
    if not sys.stdout.isatty():
        click.echo("\t".join(columns))
        for row in rows:
            click.echo("\t".join(_cell(cell) for cell in row))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for column in columns:
        table.add_column(column, no_wrap=column in no_wrap,
                         overflow="ellipsis" if column in no_wrap else "fold")
    for row in rows:
        table.add_row(*row)
    Console().print(table)
