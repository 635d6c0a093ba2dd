"""`softswitch media prompts`: speak the shipped prompts into the data dir now.

The relay generates a missing prompt with espeak-ng at first use; this
command does it beforehand (at install, in a package's post-install step)
so the first caller to reach voicemail does not wait for it, and shows
which prompts an operator replaced with recordings of their own.

numpy and `rtpmedia` are imported inside the command, so that the
signalling process, which imports this package, never loads them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from softswitch.cli import exitcodes
from softswitch.cli.listing import print_listing
from softswitch.cli.server_files import config_option, data_dir_option, server_files


@click.command()
@config_option
@data_dir_option
@click.option("--force", is_flag=True,
              help="Speak every prompt again, replacing files in DATA/prompts (recorded "
                   "greetings included).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list, for scripts.")
def prompts(config_path: Path | None, data_dir: Path | None, force: bool,
            as_json: bool) -> None:
    """Generate the shipped voicemail and echo-test prompts (espeak-ng) in DATA/prompts.

    Prompts already there are kept (an operator's own recording wins)
    unless --force.
    """
    from rtpmedia.prompts import PromptCache, PromptError

    files = server_files(config_path, data_dir)
    try:
        prepared = PromptCache(files.data_dir).all_shipped(force=force)
    except (PromptError, OSError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exitcodes.FAILED)
    if as_json:
        click.echo(json.dumps([{"name": p.name, "path": str(p.path), "seconds": p.seconds,
                                "generated": p.generated} for p in prepared], indent=2))
        return
    made = sum(p.generated for p in prepared)
    print_listing(f"{len(prepared)} prompts, {made} generated now",
                  ["name", "seconds", "status", "file"],
                  [[p.name, f"{p.seconds:.1f}", "generated" if p.generated else "kept",
                    str(p.path)] for p in prepared],
                  no_wrap=frozenset({"name", "seconds", "status"}))
