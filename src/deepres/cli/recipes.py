"""``deepres recipes [NAME]``: the built-in training recipes, or one recipe's options."""

from __future__ import annotations

import argparse
import json
import textwrap

from deepres.train import list_recipes, load_recipe


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "recipes",
        help="list the built-in training recipes (or print one, to copy into a file)",
        description="Recipes set training options; `deepres train --recipe NAME|FILE` applies "
        "one, and options given on the command line override it. A recipe file is JSON or "
        "YAML with the option names of a run's config.json (itself a valid recipe).",
    )
    p.add_argument("name", nargs="?", help="print this recipe's options as JSON")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    if args.name:
        print(json.dumps(load_recipe(args.name), indent=2))
        return
    for name in list_recipes():
        description = load_recipe(name).get("description", "")
        print(name)
        print(textwrap.fill(description, 88, initial_indent="  ", subsequent_indent="  "))
