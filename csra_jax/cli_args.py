"""One flag spelling for every command line tool: ``--snake_case``, as absl spells
``python -m csra_jax.main --workdir`` and ``--config.batch_size`` and as the config fields
are named. The hyphenated spelling (``--top-k``, ``--num-classes``) is accepted as an
alias, so older commands keep working, but ``--help`` lists one name per flag."""

from __future__ import annotations

import argparse
from typing import List, Sequence

ALIAS_NOTE = "Flags are spelt --like_this; --like-this is accepted as well."


def parser(module: str, description: str, **kwargs) -> argparse.ArgumentParser:
    """An ArgumentParser whose usage line names the tool as users type it."""
    epilog = kwargs.pop("epilog", None)
    return argparse.ArgumentParser(
        prog=f"python -m {module}", description=description,
        epilog=ALIAS_NOTE if epilog is None else f"{epilog}\n\n{ALIAS_NOTE}", **kwargs)


def _option_names(p: argparse.ArgumentParser) -> set:
    return {s for action in p._actions for s in action.option_strings}


def snake_case_flags(p: argparse.ArgumentParser, argv: Sequence[str]) -> List[str]:
    """``argv`` with each ``--hyphen-ated`` flag that ``p`` knows as ``--hyphen_ated``
    respelt; values, positionals and unknown flags are left for argparse to judge."""
    known, out, rest = _option_names(p), [], False
    for arg in argv:
        if rest or not arg.startswith("--"):
            rest = rest or arg == "--"
            out.append(arg)
            continue
        name, eq, value = arg.partition("=")
        snake = "--" + name[2:].replace("-", "_")
        out.append((snake if snake in known and name not in known else name) + eq + value)
    return out


def parse(p: argparse.ArgumentParser, argv: Sequence[str]) -> argparse.Namespace:
    return p.parse_args(snake_case_flags(p, argv))
