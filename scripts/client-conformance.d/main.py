"""Drives the generated clients against a running service; see scripts/client-conformance.

Usage: main.py --generated DIR --proxy-spec FILE --proxy-webhooks-spec FILE --own-spec FILE
               --service URL --proxy-token TOKEN --proxy-webhooks-token TOKEN
               --own-token TOKEN --own-write-token TOKEN --own-webhooks-token TOKEN
Exit status 0 when every check passed, 1 otherwise.
"""

import argparse
import json
import pathlib
import sys
import time

import compare


def parse_arguments():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--generated",
        required=True,
        type=pathlib.Path,
        help="directory holding the generated proxy_client and own_client",
    )
    parser.add_argument("--proxy-spec", required=True, type=pathlib.Path)
    parser.add_argument("--proxy-webhooks-spec", required=True, type=pathlib.Path)
    parser.add_argument("--own-spec", required=True, type=pathlib.Path)
    parser.add_argument("--service", required=True, help="e.g. http://127.0.0.1:8080")
    parser.add_argument(
        "--proxy-token", required=True, help="token of the tenant the Proxy client works in"
    )
    parser.add_argument(
        "--own-token",
        required=True,
        help="token of the tenant the own client works in (customers:admin)",
    )
    parser.add_argument(
        "--own-write-token",
        required=True,
        help="token of the same tenant with customers:write only (activate needs admin)",
    )
    parser.add_argument(
        "--proxy-webhooks-token",
        required=True,
        help="webhooks:manage token of a tenant with no customers, for Proxy's webhook client",
    )
    parser.add_argument(
        "--own-webhooks-token",
        required=True,
        help="webhooks:manage token of a tenant with no customers, for the own client",
    )
    return parser.parse_args()


def run_suite(module, arguments, spec_path, tokens):
    members = compare.date_time_members(json.loads(spec_path.read_text()))
    suite = module.make_suite(arguments.service, tokens, members)
    started = time.monotonic()
    module.run(suite)
    suite.seconds = time.monotonic() - started
    return suite


def summary(suites):
    lines = ["", "== client-conformance: summary"]
    for suite in suites:
        operations = ", ".join(f"{name} x{count}" for name, count in sorted(suite.calls.items()))
        lines.append(
            f"  {suite.name} client: {sum(suite.calls.values())} typed calls "
            f"({operations}) in {suite.seconds:.1f} s"
        )
        lines.append(
            f"  {suite.name} client: {suite.passed} checks passed, {len(suite.failures)} failed"
        )
    return "\n".join(lines)


def main():
    arguments = parse_arguments()
    sys.path.insert(0, str(arguments.generated))
    import own_suite  # the generated packages are importable only now
    import proxy_suite
    import proxy_webhooks_suite

    suites = [
        run_suite(proxy_suite, arguments, arguments.proxy_spec, {"admin": arguments.proxy_token}),
        run_suite(
            proxy_webhooks_suite,
            arguments,
            arguments.proxy_webhooks_spec,
            {"admin": arguments.proxy_webhooks_token},
        ),
        run_suite(
            own_suite,
            arguments,
            arguments.own_spec,
            {
                "admin": arguments.own_token,
                "write": arguments.own_write_token,
                "webhooks": arguments.own_webhooks_token,
            },
        ),
    ]
    print(summary(suites))
    failures = [failure for suite in suites for failure in suite.failures]
    if failures:
        print(f"\nclient-conformance: {len(failures)} checks FAILED:", file=sys.stderr)
        for failure in failures:
            print("  " + failure.splitlines()[0], file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
