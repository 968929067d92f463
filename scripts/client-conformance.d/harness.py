"""Typed calls through a generated client, and the checks every response goes through.

A `Suite` owns one generated client. `Suite.call` runs one generated API function
(`sync_detailed`) and checks its response: the status, that it parsed into the expected
generated model, that every attribute of the parsed model has a type the model declares (the
generated parsers silently keep the raw value when a union member fails to parse), and that
`to_dict()` gives back the JSON the service sent. The raw exchange is recorded by httpx event
hooks (observation only: every request is made by the generated functions), so a failure can
show the request and the response that caused it.
"""

import collections
import dataclasses
import json
import pathlib
import pkgutil
import traceback

import compare

BODY_SHOWN = 1500  # characters of a body shown in a failure message


@dataclasses.dataclass
class Exchange:
    """One HTTP request and its response, as they went over the wire."""

    method: str
    url: str
    request_headers: dict
    request_body: bytes
    status: int
    response_headers: dict
    response_body: bytes

    def request_json(self):
        return json.loads(self.request_body) if self.request_body else None

    def describe(self):
        shown = ("content-type", "if-match", "idempotency-key")
        lines = [f"    request:  {self.method} {self.url}"]
        lines += [f"              {k}: {v}" for k, v in self.request_headers.items() if k in shown]
        if self.request_body:
            lines.append(f"              {_clip(self.request_body)}")
        lines.append(f"    response: {self.status}")
        lines.append(f"              {_clip(self.response_body)}")
        return "\n".join(lines)


def _clip(body):
    text = body.decode("utf-8", errors="replace")
    return text if len(text) <= BODY_SHOWN else text[:BODY_SHOWN] + " ..."


class Capture:
    """httpx event hooks that keep the last exchange."""

    def __init__(self):
        self.last = None
        self._request = None

    def hooks(self):
        return {"request": [self._on_request], "response": [self._on_response]}

    def _on_request(self, request):
        self._request = request

    def _on_response(self, response):
        response.read()
        request = self._request
        self.last = Exchange(
            method=request.method,
            url=str(request.url),
            request_headers={k.lower(): v for k, v in request.headers.items()},
            request_body=request.content,
            status=response.status_code,
            response_headers={k.lower(): v for k, v in response.headers.items()},
            response_body=response.content,
        )


@dataclasses.dataclass
class Outcome:
    """What one typed call gave: the generated Response (None when the call raised) and the
    raw exchange (None when nothing was sent)."""

    operation: str
    response: object
    exchange: Exchange

    @property
    def parsed(self):
        return self.response.parsed if self.response is not None else None

    @property
    def body(self):
        """The response body as JSON (from the wire, so also when the typed call raised)."""
        if self.exchange is None or not self.exchange.response_body:
            return None
        try:
            return json.loads(self.exchange.response_body)
        except ValueError:
            return None

    @property
    def status(self):
        return self.exchange.status if self.exchange is not None else None

    def header(self, name):
        if self.exchange is None:
            return None
        return self.exchange.response_headers.get(name.lower())


def _operation_id(module_name):
    """create_customer -> createCustomer (the generator names a module after its operationId)."""
    head, *rest = module_name.split("_")
    return head + "".join(word.capitalize() for word in rest)


def operation_name(api_module):
    return _operation_id(api_module.__name__.rsplit(".", 1)[-1])


def all_operations(api_package):
    """Every operation module the generator produced, under every tag."""
    operations = set()
    for tag in pkgutil.iter_modules(api_package.__path__):
        tag_dir = pathlib.Path(api_package.__path__[0]) / tag.name
        operations |= {_operation_id(m.name) for m in pkgutil.iter_modules([str(tag_dir)])}
    return operations


class Suite:
    """The checks made with one generated client."""

    def __init__(self, name, client_factory, tokens, date_time_members):
        """client_factory(hooks, token) builds a generated AuthenticatedClient; tokens maps a
        role ("admin", "write") to a token; calls use the admin one unless told otherwise."""
        self.name = name
        self.capture = Capture()
        self.clients = {
            role: client_factory(self.capture.hooks(), token) for role, token in tokens.items()
        }
        self.clients["malformed token"] = client_factory(self.capture.hooks(), "not-a-token")
        self.date_time_members = date_time_members
        self.calls = collections.Counter()
        self.passed = 0
        self.failures = []

    # -- recording --------------------------------------------------------------------------

    def check(self, operation, scenario, condition, message, exchange=None):
        """Counts one check; on failure records and prints what went wrong."""
        if condition:
            self.passed += 1
            return True
        text = f"FAIL [{self.name}] {operation} ({scenario}): {message}"
        if exchange is not None:
            text += "\n" + exchange.describe()
        self.failures.append(text)
        print(text, flush=True)
        return False

    # -- typed calls --------------------------------------------------------------------------

    def call(self, scenario, api_module, *args, expect, model, role="admin", **kwargs):
        """Runs api_module.sync_detailed(*args, client=..., **kwargs) with the client of
        `role`; expects the status `expect` and a parsed instance of `model`; returns an
        Outcome."""
        operation = operation_name(api_module)
        self.calls[operation] += 1
        self.capture.last = None  # a call that raises before sending has no exchange
        try:
            response = api_module.sync_detailed(*args, client=self.clients[role], **kwargs)
        except Exception as error:  # any exception of a typed call is a finding
            self.check(
                operation,
                scenario,
                False,
                f"the typed call raised {describe_exception(error)}",
                self.capture.last,
            )
            return Outcome(operation, None, self.capture.last)
        exchange = self.capture.last
        self._check_response(operation, scenario, response, exchange, expect, model)
        return Outcome(operation, response, exchange)

    def _check_response(self, operation, scenario, response, exchange, status, model):
        if not self.check(
            operation,
            scenario,
            int(response.status_code) == status,
            f"expected status {status}, got {int(response.status_code)}",
            exchange,
        ):
            return False
        parsed = response.parsed
        if not self.check(
            operation,
            scenario,
            parsed is not None,
            f"status {status} did not parse (parsed is None)",
            exchange,
        ):
            return False
        if not self.check(
            operation,
            scenario,
            isinstance(parsed, model),
            f"parsed into {type(parsed).__name__}, expected {model.__name__}",
            exchange,
        ):
            return False
        problems = compare.model_type_problems(parsed, type(parsed).__name__)
        if not self.check(
            operation,
            scenario,
            not problems,
            "the parsed model holds values of types it does not declare "
            "(a member that failed to parse is kept raw):\n      " + "\n      ".join(problems),
            exchange,
        ):
            return False
        return self._check_round_trip(operation, scenario, parsed, exchange)

    def _check_round_trip(self, operation, scenario, parsed, exchange):
        try:
            body = json.loads(exchange.response_body)
        except ValueError as error:
            return self.check(
                operation, scenario, False, f"the body is not JSON: {error}", exchange
            )
        try:
            again = parsed.to_dict()
        except Exception as error:
            return self.check(
                operation,
                scenario,
                False,
                f"to_dict() raised {describe_exception(error)}",
                exchange,
            )
        differences = compare.json_differences(
            again, body, "to_dict()", "the body", self.date_time_members
        )
        return self.check(
            operation,
            scenario,
            not differences,
            "to_dict() does not round-trip to the body:\n      " + "\n      ".join(differences),
            exchange,
        )

    def check_replay(self, scenario, first, again):
        """`again` repeated `first` with the same Idempotency-Key: the stored status and body byte
        for byte, with Idempotent-Replayed: true (contract section 8)."""
        if first is None or first.status is None or not 200 <= first.status < 300:
            self.check(
                again.operation,
                scenario,
                False,
                "not run: the first request of the pair did not succeed",
            )
            return
        if again.exchange is None:
            return  # the call's own checks have reported it
        self.check(
            again.operation,
            scenario,
            again.status == first.status
            and again.exchange.response_body == first.exchange.response_body,
            "the replay is not the stored response byte for byte; the first response was:\n"
            + first.exchange.describe(),
            again.exchange,
        )
        self.check(
            again.operation,
            scenario,
            again.header("Idempotent-Replayed") == "true",
            f"Idempotent-Replayed is {again.header('Idempotent-Replayed')!r}, expected 'true'",
            again.exchange,
        )

    # -- coverage -----------------------------------------------------------------------------

    def check_coverage(self, api_package):
        """Every operation of the generated client must have been called."""
        generated = all_operations(api_package)
        missing = sorted(generated - set(self.calls))
        self.check(
            "*",
            "coverage",
            not missing,
            f"operations of the generated client that this test never calls: "
            f"{', '.join(missing)} (add scenarios for them)",
        )
        return generated


def describe_exception(error):
    """E.g. "TypeError: 'NoneType' object is not iterable, in CustomerName.from_dict
    (customer_name.py:68)": the exception and the last generated function it went through."""
    where = ""
    for frame, line in traceback.walk_tb(error.__traceback__):
        owner = frame.f_locals.get("cls") or frame.f_locals.get("self")
        if owner is not None and not isinstance(owner, type):
            owner = type(owner)
        function = frame.f_code.co_name
        qualified = f"{owner.__name__}.{function}" if owner is not None else function
        where = f", in {qualified} ({pathlib.Path(frame.f_code.co_filename).name}:{line})"
    return f"{type(error).__name__}: {error}{where}"
