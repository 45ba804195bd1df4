"""``deepres recipes [NAME]``: the built-in training recipes, one recipe's options, or
(``--options``) every option a recipe may set, from the ``TrainConfig`` fields."""

from __future__ import annotations

import argparse
import json
import textwrap

from deepres.train.config import OptionSpec, list_recipes, load_recipe, option_specs


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "recipes",
        help="list the built-in training recipes (or print one, to copy into a file)",
        description="Recipes set training options; `deepres train --recipe NAME|FILE` applies "
        "one, and options given on the command line override it. A recipe file is JSON or "
        "YAML with the option names of a run's config.json (itself a valid recipe); "
        "`deepres recipes --options` lists them.",
    )
    p.add_argument("name", nargs="?", help="print this recipe's options as JSON")
    p.add_argument(
        "--options",
        action="store_true",
        help="list the options a recipe may set: each one's values, default and meaning",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    if args.options:
        for spec in option_specs():
            print(describe_option(spec))
        return
    if args.name:
        print(json.dumps(load_recipe(args.name), indent=2))
        return
    for name in list_recipes():
        description = load_recipe(name).get("description", "")
        print(name)
        print(textwrap.fill(description, 88, initial_indent="  ", subsequent_indent="  "))


def describe_option(spec: OptionSpec) -> str:
    """An option as ``name: its values (default ...; flag)`` and its help, indented."""
    head = f"{spec.name}: {spec.expected()} (default {json.dumps(spec.default)}; {spec.flag})"
    return head + "\n" + textwrap.fill(spec.help, 88, initial_indent="  ", subsequent_indent="  ")
