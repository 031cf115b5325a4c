#!/usr/bin/env python3
"""Validate JSON documents against imgform's JSON Schemas (draft 2020-12).

    python3 tests/validate_json.py SCHEMA DOC [DOC...]   validate documents
    python3 tests/validate_json.py --check-schemas      check every schema
    python3 tests/validate_json.py --batch FILE         many at once (below)

Every `*.schema.json` under schemas/ and state/schema/ is loaded into one
registry keyed by its `$id` (`urn:imgform:schema:...`), so schemas can refer
to each other (e.g. the plan schema uses the state schema's definitions).
SCHEMA is a path to one of those files. Exit status: 0 when every document is
valid, 1 with every validation error on stdout otherwise, 2 on bad usage.

--batch FILE: FILE holds a JSON list of [SCHEMA, DOCUMENT] pairs (SCHEMA a file
name in schemas/, DOCUMENT the JSON document itself); prints a JSON list with,
for each pair, null when the document is valid or the text of its errors.
One Python start-up for many documents.

Used by tests/json_schemas.rs; needs the `jsonschema` package
(>= 4.18, with `referencing`; scripts/install-test-deps.sh installs it).
"""

import json
import pathlib
import sys

try:
    import jsonschema
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT202012
except ImportError as e:
    sys.exit(f"validate_json.py needs jsonschema >= 4.18 ({e}); run scripts/install-test-deps.sh")

ROOT = pathlib.Path(__file__).resolve().parent.parent
SCHEMA_DIRS = [ROOT / "schemas", ROOT / "state" / "schema"]
Validator = jsonschema.Draft202012Validator


def load_all():
    schemas = {}
    for folder in SCHEMA_DIRS:
        for path in sorted(folder.glob("*.schema.json")):
            with open(path, encoding="utf-8") as f:
                schema = json.load(f)
            schemas[path.resolve()] = schema
    return schemas


def make_validator(schema, schemas):
    """A validator for `schema` that resolves every imgform `$id`, and a
    function looking a `$ref` up from `schema` (to check refs resolve)."""
    registry = Registry().with_resources(
        (s["$id"], Resource.from_contents(s, default_specification=DRAFT202012))
        for s in schemas.values()
    )
    validator = Validator(schema, registry=registry, format_checker=Validator.FORMAT_CHECKER)
    lookup = registry.resolver(base_uri=schema["$id"]).lookup
    return validator, lambda ref: lookup(ref).contents


def path_of(error):
    return "$" + "".join(f"[{p!r}]" if isinstance(p, str) else f"[{p}]" for p in error.absolute_path)


def report(error, indent="  "):
    lines = [f"{indent}at {path_of(error)}: {error.message}",
             f"{indent}  (schema: {'/'.join(str(p) for p in error.absolute_schema_path)})"]
    # Errors under allOf/anyOf/if-then: show the concrete causes.
    for sub in sorted(error.context or [], key=lambda e: list(e.absolute_schema_path)):
        lines.extend(report(sub, indent + "    "))
    return lines


def error_text(validator, doc):
    """Every validation error of `doc`, or None when it is valid."""
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
    if not errors:
        return None
    lines = [f"{len(errors)} error(s):"]
    for error in errors:
        lines.extend(report(error))
    return "\n".join(lines)


def batch(path, schemas):
    with open(path, encoding="utf-8") as f:
        pairs = json.load(f)
    validators = {}
    results = []
    for name, doc in pairs:
        schema_path = (ROOT / "schemas" / name).resolve()
        if schema_path not in schemas:
            print(f"{name} is not a schema in schemas/", file=sys.stderr)
            return 2
        if schema_path not in validators:
            validators[schema_path] = make_validator(schemas[schema_path], schemas)[0]
        results.append(error_text(validators[schema_path], doc))
    print(json.dumps(results))
    return 0


def check_schemas(schemas):
    bad = 0
    ids = {}
    for path, schema in schemas.items():
        rel = path.relative_to(ROOT)
        problems = []
        if schema.get("$schema") != "https://json-schema.org/draft/2020-12/schema":
            problems.append("$schema is not https://json-schema.org/draft/2020-12/schema")
        if not str(schema.get("$id", "")).startswith("urn:imgform:schema:"):
            problems.append("$id does not start with urn:imgform:schema:")
        elif schema["$id"] in ids:
            problems.append(f"$id {schema['$id']} is also used by {ids[schema['$id']]}")
        ids.setdefault(schema.get("$id"), rel)
        try:
            Validator.check_schema(schema)
        except jsonschema.exceptions.SchemaError as e:
            problems.append(f"not a valid draft 2020-12 schema: {e.message} at {path_of(e)}")
        # Every $ref must resolve.
        if not problems:
            _, lookup = make_validator(schema, schemas)
            for ref in sorted(set(refs(schema))):
                try:
                    lookup(ref)
                except Exception as e:  # noqa: BLE001 - any failure is a broken $ref
                    problems.append(f"$ref {ref} does not resolve: {e}")
        for p in problems:
            print(f"{rel}: {p}")
        bad += bool(problems)
        if not problems:
            print(f"{rel}: ok")
    return 1 if bad else 0


def refs(node):
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref" and isinstance(v, str):
                yield v
            else:
                yield from refs(v)
    elif isinstance(node, list):
        for v in node:
            yield from refs(v)


def main(argv):
    schemas = load_all()
    if argv[1:] == ["--check-schemas"]:
        return check_schemas(schemas)
    if len(argv) == 3 and argv[1] == "--batch":
        return batch(argv[2], schemas)
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    schema_path = pathlib.Path(argv[1]).resolve()
    if schema_path not in schemas:
        print(f"{argv[1]} is not one of {[str(p.relative_to(ROOT)) for p in schemas]}", file=sys.stderr)
        return 2
    validator, _ = make_validator(schemas[schema_path], schemas)
    status = 0
    for doc_path in argv[2:]:
        with open(doc_path, encoding="utf-8") as f:
            try:
                doc = json.load(f)
            except json.JSONDecodeError as e:
                print(f"{doc_path}: not JSON: {e}")
                status = 1
                continue
        errors = error_text(validator, doc)
        if errors:
            status = 1
            print(f"{doc_path}: INVALID against {schema_path.relative_to(ROOT)}\n{errors}")
        else:
            print(f"{doc_path}: valid against {schema_path.relative_to(ROOT)}")
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv))
