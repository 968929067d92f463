"""The checks of an error response of the own client: code, requestId, details."""

from own_client.models import Error, ErrorBody, ErrorDetails


def check_error(suite, scenario, outcome, code, params=None, param=None):
    """The parsed error has `code`, the request id of the response, `param` when given and,
    when `params` is given, a details.errors (parsed into the generated models) naming each of
    them."""
    if not isinstance(outcome.parsed, Error):
        return  # the call's own checks have reported it
    error = outcome.parsed.error
    problems = []
    if not isinstance(error, ErrorBody):
        problems.append(f"error parsed into {type(error).__name__}, expected ErrorBody")
    else:
        if error.code != code:
            problems.append(f"code {error.code!r}, expected {code!r}")
        if error.request_id != outcome.header("X-Request-Id"):
            problems.append(
                f"requestId {error.request_id!r}, X-Request-Id {outcome.header('X-Request-Id')!r}"
            )
        if param is not None and error.param != param:
            problems.append(f"param {error.param!r}, expected {param!r}")
        if params is not None:
            problems += detail_problems(error, params)
    suite.check(outcome.operation, scenario, not problems, "; ".join(problems), outcome.exchange)


def detail_problems(error, params):
    details = error.details
    if not isinstance(details, ErrorDetails):
        return [f"details parsed into {type(details).__name__}, expected ErrorDetails"]
    named = {field_error.param for field_error in details.errors}
    problems = []
    if not params <= named:
        problems.append(f"details.errors names {sorted(named)}, expected at least {sorted(params)}")
    if error.param not in named:
        problems.append(f"param {error.param!r} is not one of details.errors")
    return problems
