#!/usr/bin/env python3
"""Validate an SBOM with its format's reference tools.

    validate_sbom.py cyclonedx FILE   CycloneDX 1.5 JSON, strict schema validation
                                      (cyclonedx-python-lib)
    validate_sbom.py spdx FILE        SPDX 2.3 JSON: parsed and fully validated
                                      (the SPDX project's spdx-tools)

Exit status 0 when valid, 1 with the errors on stdout otherwise. Runs in the
virtualenv scripts/install-test-deps.sh makes (/var/cache/imgform/sbom-venv).
"""

import sys


def cyclonedx(path):
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    with open(path, encoding="utf-8") as f:
        text = f.read()
    error = JsonStrictValidator(SchemaVersion.V1_5).validate_str(text)
    return [] if error is None else [str(error)]


def spdx(path):
    from spdx_tools.spdx.parser.parse_anything import parse_file
    from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document

    document = parse_file(path)
    return [m.validation_message for m in validate_full_spdx_document(document, "SPDX-2.3")]


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("cyclonedx", "spdx"):
        print(__doc__)
        return 2
    errors = {"cyclonedx": cyclonedx, "spdx": spdx}[sys.argv[1]](sys.argv[2])
    for e in errors:
        print(e)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
