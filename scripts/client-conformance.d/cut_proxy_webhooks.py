"""Cuts Proxy's OpenAPI file down to its four Webhook operations and what they reference.

Usage: cut_proxy_webhooks.py PROXY_OPENAPI_JSON > tests/fixtures/proxy-webhooks-openapi.json
scripts/client-conformance checks that the fixture is this cut of the shared reference.
"""

import json
import sys

OPERATIONS = {"listWebhooks", "createWebhook", "getWebhook", "deleteWebhook"}


def cut(document):
    paths = {}
    for path, item in document["paths"].items():
        kept = {
            method: operation
            for method, operation in item.items()
            if isinstance(operation, dict) and operation.get("operationId") in OPERATIONS
        }
        if kept:
            if "parameters" in item:
                kept["parameters"] = item["parameters"]
            paths[path] = kept
    components = document.get("components", {})
    needed = set()

    def walk(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "$ref" and isinstance(value, str) and value.startswith("#/components/"):
                    _, _, kind, name = value.split("/", 3)
                    if (kind, name) not in needed:
                        needed.add((kind, name))
                        walk(components[kind][name])
                else:
                    walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(paths)
    out = {k: v for k, v in document.items() if k not in ("paths", "components", "tags")}
    out["info"] = dict(document["info"])
    out["info"]["description"] = (
        out["info"].get("description", "")
        + "\n\nCut down to the Webhook operations (listWebhooks, createWebhook, getWebhook, "
        "deleteWebhook) by scripts/client-conformance.d/cut_proxy_webhooks.py; nothing else "
        "changed."
    ).strip()
    out["paths"] = paths
    kept_components = {}
    for kind, name in sorted(needed):
        kept_components.setdefault(kind, {})[name] = components[kind][name]
    if "securitySchemes" in components:
        kept_components["securitySchemes"] = components["securitySchemes"]
    out["components"] = kept_components
    if "tags" in document:
        out["tags"] = [t for t in document["tags"] if t.get("name") == "Webhooks"]
    return out


if __name__ == "__main__":
    with open(sys.argv[1]) as source:
        json.dump(cut(json.load(source)), sys.stdout, indent=2)
