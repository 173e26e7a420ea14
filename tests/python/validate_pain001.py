"""Validates a pain.001.001.09 file against the ISO 20022 XSD that the `sepaxml` package
ships (sepaxml/schemas/pain.001.001.09.xsd), using lxml.

Usage: python3 validate_pain001.py FILE.xml
Prints "valid" and exits 0, or prints each schema error (line: message) and exits 1.
Exit code 2 means the tool could not run (missing packages, schema or file).
"""

import importlib.resources
import sys

SCHEMA_PACKAGE = "sepaxml"
SCHEMA_NAME = "pain.001.001.09.xsd"


def schema_path():
    """Finds the XSD inside the installed sepaxml package, wherever that is installed."""
    root = importlib.resources.files(SCHEMA_PACKAGE)
    for candidate in (root / "schemas" / SCHEMA_NAME, root / SCHEMA_NAME):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{SCHEMA_NAME} not found in the {SCHEMA_PACKAGE} package at {root}")


def main(argv):
    if len(argv) != 2:
        print(f"usage: {argv[0]} FILE.xml", file=sys.stderr)
        return 2
    try:
        from lxml import etree
    except ImportError as error:
        print(f"lxml is missing: {error}", file=sys.stderr)
        return 2
    try:
        with importlib.resources.as_file(schema_path()) as path:
            schema = etree.XMLSchema(etree.parse(str(path)))
    except (ImportError, FileNotFoundError) as error:
        print(f"cannot load the schema: {error}", file=sys.stderr)
        return 2
    try:
        document = etree.parse(argv[1])
    except OSError as error:
        print(f"cannot read {argv[1]}: {error}", file=sys.stderr)
        return 2
    except etree.XMLSyntaxError as error:
        print(f"not well-formed XML: {error}")
        return 1
    if schema.validate(document):
        print("valid")
        return 0
    for error in schema.error_log:
        print(f"{error.line}: {error.message}")
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
