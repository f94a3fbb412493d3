#!/usr/bin/env python3
"""Read one value from infra/samconfig.toml for deploy.sh and destroy.sh.

    samconfig_value.py FILE ENV stack_name        -> [ENV.deploy.parameters] stack_name
    samconfig_value.py FILE ENV region            -> [ENV.deploy.parameters] or [ENV.global.parameters]
    samconfig_value.py FILE ENV parameter NAME    -> NAME's value in parameter_overrides

Prints the value and exits 0, or prints nothing and exits 1 when it is not set. Works on
Python 3.8+: tomllib when there is one, else a reader for the flat key = value tables that
SAM CLI writes.
"""

from __future__ import annotations

import json
import re
import shlex
import sys


def load(path: str) -> dict:
    try:
        import tomllib  # Python 3.11+
    except ImportError:
        return load_flat(path)
    with open(path, "rb") as f:
        return tomllib.load(f)


def load_flat(path: str) -> dict:
    """[a.b.c] tables of key = "string" | true | false | number | ["string", ...] lines."""
    data: dict = {}
    table: dict = data
    for raw in open(path, encoding="utf-8"):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        header = re.fullmatch(r"\[([^\]]+)\]", line)
        if header:
            table = data
            for part in header.group(1).split("."):
                table = table.setdefault(part.strip().strip('"'), {})
            continue
        key, sep, value = line.partition("=")
        if not sep:
            continue
        value = value.strip()
        if value in ("true", "false"):
            parsed: object = value == "true"
        elif value.startswith("'"):
            parsed = value[1 : value.rindex("'")]
        else:
            # TOML basic strings, arrays of them and numbers read as JSON for what SAM writes.
            try:
                parsed = json.loads(value)
            except ValueError:
                parsed = value
        table[key.strip().strip('"')] = parsed
    return data


def parameter_overrides(value) -> dict[str, str]:
    """SAM writes 'A="x" B="y z"' (one string) or ["A=x", "B=y"] (a list)."""
    items = value if isinstance(value, list) else shlex.split(value or "")
    result = {}
    for item in items:
        for token in shlex.split(item) if isinstance(value, list) else [item]:
            key, sep, val = token.partition("=")
            if sep:
                result[key] = val
    return result


def main(argv: list[str]) -> int:
    if len(argv) < 4:
        print(__doc__, file=sys.stderr)
        return 2
    path, env, what = argv[1], argv[2], argv[3]
    try:
        config = load(path)
    except FileNotFoundError:
        return 1
    section = config.get(env, {})
    deploy = section.get("deploy", {}).get("parameters", {})
    glob = section.get("global", {}).get("parameters", {})
    if what == "parameter" and len(argv) == 5:
        value = parameter_overrides(deploy.get("parameter_overrides", glob.get("parameter_overrides"))).get(argv[4])
    elif what == "region":
        value = deploy.get("region") or glob.get("region")
    else:
        value = deploy.get(what) or glob.get(what)
    if value in (None, ""):
        return 1
    print(value)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
