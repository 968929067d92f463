"""Loaded at start-up of the api-fuzz virtualenv's Python (a .pth file imports it).

Debian 12's CPython 3.11.2 sometimes raises SystemError "AST constructor recursion depth
mismatch" from ast.parse (a CPython bug, fixed in later 3.11 releases) while hypothesis parses
a lambda's source only to describe it in a repr. schemathesis then reports a "Runtime Error"
for the operation although no check failed, often enough to fail three runs in a row. The
description is cosmetic, so a lambda that cannot be described is described as unknown, which
is what hypothesis itself does when it cannot find the source. Nothing else changes.
"""

try:
    from hypothesis.internal import lambda_sources
except Exception:  # hypothesis not installed (yet): nothing to guard
    lambda_sources = None

if lambda_sources is not None:
    _describe = lambda_sources.lambda_description

    def lambda_description(f):
        try:
            return _describe(f)
        except SystemError:
            return "lambda: <unknown>"

    lambda_sources.lambda_description = lambda_description
