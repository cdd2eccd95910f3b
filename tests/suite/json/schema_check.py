#!/usr/bin/env python3
"""Check vmdisk's --json output against doc/schema/, with python3-jsonschema.

  schema_check.py validate SCHEMA FILE   FILE's JSON against SCHEMA
  schema_check.py lint SCHEMA            SCHEMA itself: a draft-07 or
                                         2020-12 schema, valid under its
                                         metaschema, every object closed
                                         (additionalProperties: false) and
                                         listing its required fields
  schema_check.py examples DOC NAME      the ```json examples of DOC's
                                         section naming doc/schema/NAME.json
                                         (at least one) against that schema

Each validation uses the validator of the draft the schema declares
($schema). Exit 0 when all is well, else 1 with one line saying why.
"""
import json
import re
import sys

import jsonschema
from jsonschema import validators

DRAFTS = {
    "http://json-schema.org/draft-07/schema#",
    "https://json-schema.org/draft/2020-12/schema",
}


def load(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def validate(schema, doc):
    """None when DOC is valid, else the first error in words."""
    cls = validators.validator_for(schema)
    cls.check_schema(schema)
    errors = sorted(cls(schema).iter_errors(doc), key=lambda e: list(e.path))
    if not errors:
        return None
    e = errors[0]
    where = "/".join(str(p) for p in e.absolute_path) or "(top)"
    return "%s: %s" % (where, e.message)


def lint(schema, where="(top)"):
    """Problems of SCHEMA's own shape, as a list of strings."""
    out = []
    if not isinstance(schema, dict):
        return out
    if schema.get("type") == "object" or "properties" in schema:
        if schema.get("additionalProperties") is not False:
            out.append("%s: additionalProperties is not false" % where)
        if "required" not in schema:
            out.append("%s: no required list" % where)
        props = schema.get("properties", {})
        for r in schema.get("required", []):
            if r not in props:
                out.append("%s: required %s is not a property" % (where, r))
        for k, v in props.items():
            if "description" not in v and where == "(top)":
                out.append("%s: property %s has no description" % (where, k))
            out += lint(v, "%s.%s" % (where, k))
    if isinstance(schema.get("items"), dict):
        out += lint(schema["items"], where + "[]")
    return out


def examples(doc_path, name):
    with open(doc_path, encoding="utf-8") as f:
        text = f.read()
    target = "doc/schema/%s.json" % name
    for section in re.split(r"\n(?=## )", text):
        # A section's schema is the first doc/schema/ file it names.
        if not section.startswith("## "):
            continue
        m = re.search(r"doc/schema/([A-Za-z0-9_-]+)\.json", section)
        if not m or m.group(1) != name:
            continue
        blocks = re.findall(r"```json\n(.*?)```", section, re.S)
        if not blocks:
            return "the section of %s has no ```json example" % target
        schema = load(target)
        for i, b in enumerate(blocks, 1):
            try:
                doc = json.loads(b)
            except ValueError as e:
                return "example %d is not JSON: %s" % (i, e)
            why = validate(schema, doc)
            if why:
                return "example %d: %s" % (i, why)
        return None
    return "no section of %s names %s" % (doc_path, target)


def main(argv):
    if len(argv) == 4 and argv[1] == "validate":
        try:
            doc = load(argv[3])
        except ValueError as e:
            why = "not JSON: %s" % e
        else:
            why = validate(load(argv[2]), doc)
    elif len(argv) == 3 and argv[1] == "lint":
        schema = load(argv[2])
        problems = []
        if schema.get("$schema") not in DRAFTS:
            problems.append("$schema is not draft-07 or 2020-12")
        else:
            try:
                validators.validator_for(schema).check_schema(schema)
            except jsonschema.SchemaError as e:
                problems.append("not a valid schema: %s" % e.message)
        problems += lint(schema)
        why = "; ".join(problems) or None
    elif len(argv) == 4 and argv[1] == "examples":
        why = examples(argv[2], argv[3])
    else:
        print(__doc__.strip().splitlines()[0], file=sys.stderr)
        return 2
    if why:
        print(why)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
