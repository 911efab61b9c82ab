#!/usr/bin/env python3
"""Replaces a CUDA profile's entries, conversions and ceilings by newer measurements of them.

`bitplan-cuda-profile --out P` merges by adding only what P lacks; after a fresh profile of some
workloads (say, measured in the same device call as whole-model chains, so that validation
compares numbers of one machine and hour), this puts its measurements into the main profile:
every entry (key, precision), conversion (from, to, elements) and ceiling (name) of --newer
replaces the one of --into with the same identity, or is appended, and --newer's `libraries`
(say, a newer cuDNN) become the profile's. Both must be of one device.

    python3 tools/merge_cuda_profile.py --into hw_profiles/h100.yaml --newer NEW.yaml

Dev-time tool; the standard library only. Profiles are JSON text (which bitplan reads as YAML).
"""
import argparse
import json
import os
import sys
from pathlib import Path

IDENTITY = {
    "entries": lambda e: (e["key"], e["precision"]),
    "conversions": lambda c: (c["from"], c["to"], c["elements"]),
    "ceilings": lambda c: c["name"],
}


def profile_text(doc):
    """The profiler's layout (profile_file.cpp): a top-level key a line, a list item a line."""
    compact = lambda value: json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    lines = []
    for key, value in doc.items():
        if isinstance(value, list):
            items = ",\n".join("  " + compact(item) for item in value)
            lines.append(f' {compact(key)}: [\n{items}\n ]' if value else f" {compact(key)}: []")
        else:
            lines.append(f" {compact(key)}: {compact(value)}")
    return "{\n" + ",\n".join(lines) + "\n}\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--into", required=True, help="the profile to update (rewritten atomically)")
    parser.add_argument("--newer", required=True, help="a profile of the same device, measured later")
    args = parser.parse_args()
    into, newer = (json.loads(Path(p).read_text()) for p in (args.into, args.newer))
    if into["device"]["name"] != newer["device"]["name"]:
        raise SystemExit(f"merge_cuda_profile: {args.newer} was measured on '{newer['device']['name']}', "
                         f"{args.into} on '{into['device']['name']}': a profile holds one device")
    if into.get("libraries") != newer.get("libraries"):
        print(f"libraries: {into.get('libraries')} -> {newer.get('libraries')}")
        into["libraries"] = newer["libraries"]
    for section, identity in IDENTITY.items():
        items = into.setdefault(section, [])
        position = {identity(item): i for i, item in enumerate(items)}
        replaced = appended = 0
        for item in newer.get(section, []):
            i = position.get(identity(item))
            if i is None:
                position[identity(item)] = len(items)
                items.append(item)
                appended += 1
            else:
                items[i] = item
                replaced += 1
        print(f"{section}: {replaced} replaced, {appended} appended")
    temporary = args.into + ".tmp"
    Path(temporary).write_text(profile_text(into))
    os.replace(temporary, args.into)
    return 0


if __name__ == "__main__":
    sys.exit(main())
