"""The --json shapes (doc/schema/*.json) checked with a real validator
(python3-jsonschema), for the tests of the module's results."""
import json
import os

import jsonschema

SCHEMAS = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                       "..", "..", "doc", "schema")


def valid(shape, doc):
    """Raise jsonschema.ValidationError unless doc has the shape."""
    with open(os.path.join(SCHEMAS, shape + ".json")) as f:
        schema = json.load(f)
    jsonschema.validators.validator_for(schema)(schema).validate(doc)
