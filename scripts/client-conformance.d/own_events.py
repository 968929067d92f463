"""The event routes of the own client (contract section 10), with typed calls only: a customer's
history (listCustomerEvents), the tenant's feed (listEvents) and getCustomer with asOf.

They run after the customer scenarios of own_suite, whose writes (recorded by history.History
from the wire) are the changes the events must describe.
"""

import datetime
import os
import time

from own_client.api.customers import get_customer
from own_client.api.events import list_customer_events, list_events
from own_client.models import Customer, Error, EventList, EventType
from own_client.types import UNSET

from compare import json_differences
from history import instant
from own_errors import check_error
from tracker import MAX_PAGES

UNKNOWN_ID = "cus_00000000000000000000000000"
# The feed holds an event back while a transaction that began before it is still open anywhere
# on the database server (other databases included), so a walk that has not seen every event
# yet polls again, until this many seconds after the first walk began (one deadline for all the
# walks: once the feed is caught up, every later walk finds its events at once).
FEED_DEADLINE = float(os.environ.get("CLIENT_CONFORMANCE_FEED_DEADLINE", "30"))
MILLISECOND = datetime.timedelta(milliseconds=1)
MICROSECOND = datetime.timedelta(microseconds=1)
# The instants are sent in these offsets in turn (the same instant in another spelling).
OFFSETS = (
    datetime.UTC,
    datetime.timezone(datetime.timedelta(hours=5, minutes=30)),
    datetime.timezone(datetime.timedelta(hours=-8)),
)


def run(context):
    histories(context)
    feed(context)
    as_of(context)
    errors(context)


# -- history ------------------------------------------------------------------------------------


def histories(context):
    """Each customer's events, newest first, in pages of 2 and of 100: exactly one event per
    version this test made, in version order, each holding what the write answered."""
    history = context.history
    for customer_id, versions in history.by_customer.items():
        want = [version.key for version in reversed(versions)]
        for limit in (2, 100):
            scenario = f"history of {len(versions)} versions, limit {limit}"
            pages = walk_history(context, scenario, customer_id, limit)
            got = []
            for page in pages:
                for event in page_events(page):
                    history.check_event(scenario, page, event)
                    got.append((event.get("customerId"), event.get("version")))
            context.suite.check(
                "listCustomerEvents",
                scenario,
                got == want,
                f"the pages hold the versions {[v for _, v in got]} of {customer_id}, expected "
                f"(newest first) {[v for _, v in want]}",
                pages[-1].exchange if pages else None,
            )


def walk_history(context, scenario, customer_id, limit):
    suite = context.suite
    pages, cursors, cursor = [], set(), UNSET
    for _ in range(MAX_PAGES):
        page = suite.call(
            scenario,
            list_customer_events,
            customer_id,
            limit=limit,
            cursor=cursor,
            expect=200,
            model=EventList,
        )
        pages.append(page)
        body = page.body if isinstance(page.body, dict) else {}
        events = body.get("data") or []
        following = body.get("nextCursor")
        suite.check(
            page.operation,
            scenario,
            len(events) <= limit and body.get("hasMore") is (following is not None),
            f"{len(events)} events with limit {limit}, hasMore {body.get('hasMore')!r}, "
            f"nextCursor {following!r} (hasMore is true exactly when there is a next page)",
            page.exchange,
        )
        if following is None:
            return pages
        if not suite.check(
            page.operation,
            scenario,
            following not in cursors,
            f"nextCursor {following!r} was already given",
            page.exchange,
        ):
            return pages
        cursors.add(following)
        cursor = following
    suite.check("listCustomerEvents", scenario, False, f"more than {MAX_PAGES} pages")
    return pages


def page_events(page):
    body = page.body
    return (body.get("data") or []) if isinstance(body, dict) else []


# -- the feed -----------------------------------------------------------------------------------


def feed(context):
    """The tenant's feed from the start, following nextCursor until an empty page: every event
    of the tenant exactly once, in the order the writes were made (they were made one after the
    other, so that is also their commit order); then the filters."""
    history = context.history
    everything = history.order
    context.feed_deadline = time.monotonic() + FEED_DEADLINE
    follow(context, "the feed from the start, limit 5", everything, limit=5)
    for kind in EventType:
        follow(
            context,
            f"the feed filtered by type {kind.value}",
            [version for version in everything if version.kind == kind.value],
            limit=2,
            type_=kind,
        )
    for customer_id, versions in history.by_customer.items():
        follow(
            context,
            f"the feed filtered by customerId ({len(versions)} versions)",
            versions,
            limit=100,
            customer_id=customer_id,
        )
    target = next(iter(history.by_customer), UNKNOWN_ID)
    follow(
        context,
        "the feed filtered by customerId and type customer.created",
        [v for v in history.by_customer.get(target, []) if v.kind == "customer.created"],
        limit=100,
        customer_id=target,
        type_=EventType.CUSTOMER_CREATED,
    )
    follow(
        context, "the feed filtered by an unknown customerId", [], limit=100, customer_id=UNKNOWN_ID
    )


def follow(context, scenario, expected, limit, **filters):
    """Follows the feed from the start (no `after`) with `filters`, page after page, until it has
    given at least as many events as `expected` and then an empty page; an empty page before
    that is polled again (with a growing pause) until context.feed_deadline. Then the events must be
    exactly `expected` (Versions, in this order), each checked against its version."""
    suite, history = context.suite, context.history
    seen, cursors, after = [], set(), UNSET
    pause, polls, started = 0.02, 0, time.monotonic()
    for _ in range(MAX_PAGES + 1000):
        page = suite.call(
            scenario, list_events, limit=limit, after=after, expect=200, model=EventList, **filters
        )
        body = page.body if isinstance(page.body, dict) else None
        if body is None:
            return
        events = body.get("data") or []
        following = body.get("nextCursor")
        suite.check(
            page.operation,
            scenario,
            len(events) <= limit
            and isinstance(following, str)
            and following
            and (not body.get("hasMore") or len(events) == limit),
            f"{len(events)} events with limit {limit}, hasMore {body.get('hasMore')!r}, "
            f"nextCursor {following!r} (every page of the feed has a cursor, also an empty one)",
            page.exchange,
        )
        for event in events:
            history.check_event(scenario, page, event)
            seen.append(event)
        if events:
            if not suite.check(
                page.operation,
                scenario,
                following not in cursors,
                f"nextCursor {following!r} was already given",
                page.exchange,
            ):
                return
            cursors.add(following)
        elif len(seen) >= len(expected):
            suite.check(
                page.operation,
                scenario,
                body.get("hasMore") is False,
                f"an empty page with hasMore {body.get('hasMore')!r}",
                page.exchange,
            )
            break
        elif time.monotonic() > context.feed_deadline:
            suite.check(
                page.operation,
                scenario,
                False,
                f"the feed gave {len(seen)} of {len(expected)} events and nothing more in "
                f"{FEED_DEADLINE:.0f} s of polling (a transaction open on the database server "
                "holds events back: set CLIENT_CONFORMANCE_FEED_DEADLINE to wait longer)",
                page.exchange,
            )
            break
        else:
            time.sleep(pause)  # caught up before every event is visible: poll again
            pause = min(pause * 2, 0.25)
            polls += 1
        after = following if isinstance(following, str) and following else after
    if polls:
        print(
            f"== client-conformance: [own] listEvents ({scenario}): events held back, "
            f"{polls} empty pages polled again over {time.monotonic() - started:.1f} s",
            flush=True,
        )
    got = [(event.get("customerId"), event.get("version")) for event in seen]
    want = [version.key for version in expected]
    suite.check(
        "listEvents",
        scenario,
        got == want,
        "the feed gave (customer, version) "
        + show_keys(got, want)
        + " (every event of the tenant exactly once, in the order the writes were made)",
    )


def show_keys(got, want):
    names = {}
    for customer_id, _ in want + got:
        names.setdefault(customer_id, f"c{len(names) + 1}")
    legend = ", ".join(f"{name}={customer_id}" for customer_id, name in names.items())
    return (
        f"{[f'{names[c]}/{v}' for c, v in got]}, expected {[f'{names[c]}/{v}' for c, v in want]} "
        f"({legend})"
    )


# -- as of an instant ---------------------------------------------------------------------------


def as_of(context):
    """getCustomer with asOf: at each version's updatedAt that version (the last whose updatedAt
    is at or before the instant), a microsecond before the next version's updatedAt still that
    version, a millisecond before creation 404, long after the last write the last version;
    each with that version's ETag. The instants are sent in several offsets."""
    history = context.history
    turn = 0
    for customer_id, versions in history.by_customer.items():
        instants = []
        for index, version in enumerate(versions):
            at = version.updated_at
            if at is None:
                continue
            instants.append((f"at version {index + 1}'s updatedAt", at))
            if index + 1 < len(versions) and versions[index + 1].updated_at is not None:
                instants.append(
                    (
                        f"between versions {index + 1} and {index + 2}",
                        versions[index + 1].updated_at - MICROSECOND,
                    )
                )
        created = instant(versions[0].customer.get("createdAt"))
        if created is not None:
            instants.append(
                ("a millisecond before the customer was created", created - MILLISECOND)
            )
        instants.append(
            (
                "a day after the last write",
                datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=1),
            )
        )
        for label, at in instants:
            turn += 1
            spelled = at.astimezone(OFFSETS[turn % len(OFFSETS)])
            read_as_of(context, f"asOf {label}", customer_id, spelled)


def read_as_of(context, scenario, customer_id, at):
    suite = context.suite
    version = context.history.as_of(customer_id, at)
    if version is None:
        outcome = suite.call(scenario, get_customer, customer_id, as_of=at, expect=404, model=Error)
        check_error(suite, scenario, outcome, "not_found")
        return
    outcome = suite.call(scenario, get_customer, customer_id, as_of=at, expect=200, model=Customer)
    if outcome.status != 200:
        return
    differences = json_differences(
        version.customer, outcome.body, f"version {version.number}", "asOf"
    )
    suite.check(
        outcome.operation,
        scenario,
        not differences,
        f"asOf gave another customer than version {version.number} (made by "
        f"'{version.scenario}'):\n      " + "\n      ".join(differences),
        outcome.exchange,
    )
    suite.check(
        outcome.operation,
        scenario,
        outcome.header("ETag") == version.etag,
        f"ETag {outcome.header('ETag')!r}, version {version.number} had {version.etag!r}",
        outcome.exchange,
    )


# -- errors -------------------------------------------------------------------------------------


def errors(context):
    suite, history = context.suite, context.history
    customer_id = next(iter(history.by_customer), UNKNOWN_ID)

    scenario = "asOf without an offset"
    naive = datetime.datetime(2026, 12, 1, 10, 30)  # isoformat(): 2026-12-01T10:30:00
    outcome = suite.call(scenario, get_customer, customer_id, as_of=naive, expect=400, model=Error)
    check_error(suite, scenario, outcome, "parameter_invalid", param="asOf")

    scenario = "asOf of an unknown id"
    outcome = suite.call(
        scenario,
        get_customer,
        UNKNOWN_ID,
        as_of=datetime.datetime.now(datetime.UTC),
        expect=404,
        model=Error,
    )
    check_error(suite, scenario, outcome, "not_found")

    scenario = "history of an unknown id"
    outcome = suite.call(scenario, list_customer_events, UNKNOWN_ID, expect=404, model=Error)
    check_error(suite, scenario, outcome, "not_found")

    # Cursors are bound to the customer (history) and to the filters (feed).
    others = [cid for cid, versions in history.by_customer.items() if len(versions) > 1]
    if len(others) >= 2:
        scenario = "a history cursor of another customer"
        first = suite.call(
            scenario, list_customer_events, others[0], limit=1, expect=200, model=EventList
        )
        cursor = first.body.get("nextCursor") if isinstance(first.body, dict) else None
        if cursor:
            outcome = suite.call(
                scenario, list_customer_events, others[1], cursor=cursor, expect=400, model=Error
            )
            check_error(suite, scenario, outcome, "invalid_cursor")
    scenario = "a feed cursor with other filters"
    first = suite.call(scenario, list_events, limit=1, expect=200, model=EventList)
    cursor = first.body.get("nextCursor") if isinstance(first.body, dict) else None
    if cursor:
        outcome = suite.call(
            scenario,
            list_events,
            after=cursor,
            type_=EventType.CUSTOMER_DELETED,
            expect=400,
            model=Error,
        )
        check_error(suite, scenario, outcome, "invalid_cursor")

    scenario = "the feed with a malformed token"
    outcome = suite.call(scenario, list_events, expect=401, model=Error, role="malformed token")
    check_error(suite, scenario, outcome, "unauthorized")
