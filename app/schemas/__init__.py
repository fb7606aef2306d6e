"""msgspec Structs: the one schema that validates, serializes and documents.

Inputs (``*In``) forbid unknown fields, so ``{"role": "admin"}`` in a
register body is a 422, never a silent privilege; outputs (``*Out``) list
exactly the fields a client may see.
"""
