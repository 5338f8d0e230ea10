"""One `error:` line (exit 2) for every bad command line of ``python -m csra_jax.main``,
before anything is imported, built or compiled: absl's flag errors are multi-line and
speak Python ("invalid literal for int() with base 10"), a missing config file surfaces
only when the config is first read, and an unusable workdir only at the first write."""

from __future__ import annotations

import os
import re
import sys
import tempfile

from absl import flags


def _unknown_field_message(error: Exception) -> str:
    text = str(error.args[0] if error.args else error)
    found = re.search(r'instead of "([\w.]+)"|Key "([\w.]+)"', text)
    name = (found.group(1) or found.group(2)) if found else text.strip("'\"\\")
    hint = re.search(r'Did you mean "([\w.]+)"', text)
    return (f"unknown config field {name!r}" + (f"; did you mean {hint.group(1)!r}?" if hint else "")
            + " (the fields are in csra_jax/config.py)")


_KINDS = {bool: "True or False", int: "a whole number", float: "a number", str: "a string",
          tuple: "a tuple such as (1, 2)"}


def _override(argv, field: str) -> str:
    """The text the user gave for ``--config.<field>`` (``=value`` or the next argument)."""
    flag = f"--config.{field}"
    for i, arg in enumerate(argv):
        if arg.startswith(flag + "="):
            return arg[len(flag) + 1:]
        if arg == flag and i + 1 < len(argv):
            return argv[i + 1]
    return "?"


def flag_error_message(error: Exception, argv, config=None) -> str:
    """absl's flag errors (one or more lines, Python-speak) -> one line for the user.
    ``config``: the config the overrides apply to (default: the ``--config`` flag's)."""
    text = str(error)
    required = re.match(r"flag --(\w+)=None: Flag --\1 must have a value other than None", text)
    if required:
        name = required.group(1)
        return f"--{name} is required: {flags.FLAGS[name].help}"
    field = re.match(r"flag --config\.([\w.]+)=", text)
    if field:
        name = field.group(1)
        config = flags.FLAGS["config"].value if config is None else config
        try:
            current = config
            for key in name.split("."):
                current = current[key]
        except (KeyError, AttributeError, TypeError):
            current = None
        if hasattr(current, "keys"):  # a ConfigDict: a group, not one value
            return (f"--config.{name}=...: config.{name} is a group of fields "
                    f"({', '.join(current.keys())}); set them one at a time, e.g. "
                    f"--config.{name}.{next(iter(current.keys()))}=...")
        kind = _KINDS.get(type(current), f"a {type(current).__name__}")
        return (f"--config.{name}={_override(argv, name)}: config.{name} takes {kind} "
                f"(the config has {current!r})")
    return text.splitlines()[0]


def _config_file(argv):
    """The path given with ``--config`` (a ``:arg`` suffix removed), or None."""
    for i, arg in enumerate(argv):
        if arg.startswith("--config="):
            return arg[len("--config="):].split(":", 1)[0]
        if arg == "--config" and i + 1 < len(argv):
            return argv[i + 1].split(":", 1)[0]
    return None


def fail(message: str):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def snake_case_config_field(arg: str) -> str:
    """``--config.batch-size=8`` -> ``--config.batch_size=8`` (config fields are snake_case;
    the other tools accept hyphenated flags too). Values are left alone."""
    if not arg.startswith("--config."):
        return arg
    name, eq, value = arg.partition("=")
    return "--config." + name[len("--config."):].replace("-", "_") + eq + value


def parse_flags(argv):
    """absl's parser, but every bad flag ends in one clear line (exit 2): a misspelt config
    field, a value of the wrong type, a missing config file, a missing --config/--workdir."""
    spelt = [argv[0]] + [snake_case_config_field(a) for a in argv[1:]]
    if argv is sys.argv:  # ml_collections reads the overrides from sys.argv itself
        sys.argv[:] = spelt
    argv = spelt
    path = _config_file(argv[1:])
    if path is not None and not os.path.isfile(path):
        what = "is a folder" if os.path.isdir(path) else "does not exist"
        fail(f"config file {path!r} {what}; pass a config .py file such as "
             "configs/demo.py (the paper rows are in configs/)")
    try:
        return flags.FLAGS(argv)
    except (AttributeError, KeyError) as e:  # locked ConfigDict: unknown field
        fail(_unknown_field_message(e))
    except flags.Error as e:
        fail(flag_error_message(e, argv))


def check_workdir(workdir: str) -> str:
    """Raises ValueError unless ``workdir`` is (or can become) a writable folder.

    Checked before anything is built: a run writes config.json, checkpoints, metrics and
    eval/ there (evaluating an existing run writes too). The test is a real write (an
    unnamed temporary file), so a read-only mount or missing permissions show up here,
    for root as well, where permission bits alone say nothing.
    """
    from csra_jax.run.paths import is_cloud
    if is_cloud(workdir):  # gs://...: no local folder to probe; the run reaches the bucket
        return workdir
    path = os.path.abspath(os.path.expanduser(workdir))
    existing = path
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        what = "is a file" if existing == path else f"is inside the file {existing!r}"
        raise ValueError(f"--workdir {workdir!r} {what}, not a folder; pass a folder (a new "
                         "one, or an earlier run's to resume it)")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as e:
        where = "" if existing == path else f" (its parent {existing!r} cannot be written)"
        raise ValueError(f"--workdir {workdir!r} is not writable{where}: "
                         f"{e.strerror or e}; the run writes config.json, checkpoints and "
                         "eval/ there: pass a writable folder (to evaluate a read-only run, "
                         "copy it first)") from None
    return path
