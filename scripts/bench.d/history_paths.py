"""The request paths of the `history` comparison of scripts/bench, from the running server.

Usage: history_paths.py BASE TOKEN CUSTOMER_ID
Prints one line per scenario, "name path", where the cursors come from the server itself (they
are signed): a rare type's first feed page and its caught-up poll, one customer's feed at the
middle of its history, asOf just after the customer's creation, and its history at a fifth of
its depth (20,000 versions: depth 4,000).
"""

import json
import sys
import urllib.parse
import urllib.request


def get(base, token, path):
    request = urllib.request.Request(base + path, headers={"Authorization": "Bearer " + token})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.load(response)


def follow(base, token, path, cursor_param, pages):
    """The path of the page after `pages` pages of `path` (each of limit 100)."""
    cursor = None
    for _ in range(pages):
        sep = "&" if "?" in path else "?"
        page = get(base, token, path + (f"{sep}{cursor_param}={cursor}" if cursor else ""))
        cursor = urllib.parse.quote(page["nextCursor"], safe="")
    return cursor


def main():
    base, token, customer = sys.argv[1:4]
    versions = get(base, token, f"/v1/customers/{customer}")
    # The customer's current state has its version in the ETag only; count from its history.
    first = get(base, token, f"/v1/customers/{customer}/events?limit=1")
    depth = first["data"][0]["version"]
    rare = "/v1/events?type=customer.deleted&limit=50"
    # The rare type's pages until caught up: its cursor is where a follower polls from.
    cursor, page = None, None
    while True:
        page = get(base, token, "/v1/events?type=customer.deleted&limit=100"
                   + (f"&after={cursor}" if cursor else ""))
        cursor = urllib.parse.quote(page["nextCursor"], safe="")
        if not page["data"]:
            break
    feed_cursor = follow(base, token, f"/v1/events?customerId={customer}&limit=100", "after",
                         max(1, depth // 200))
    history_cursor = follow(base, token, f"/v1/customers/{customer}/events?limit=100", "cursor",
                            max(1, depth // 500))
    created = versions["createdAt"]
    as_of = created.replace("Z", "").split(".")[0] + ".500Z"
    print("feed_rare", rare)
    print("feed_rare_poll", f"{rare}&after={cursor}")
    print("feed_customer", f"/v1/events?customerId={customer}&limit=50&after={feed_cursor}")
    print("as_of", f"/v1/customers/{customer}?asOf=" + urllib.parse.quote(as_of, safe=""))
    print("history_deep", f"/v1/customers/{customer}/events?limit=20&cursor={history_cursor}")


if __name__ == "__main__":
    main()
