"""The four Webhook operations of the client generated from Proxy's OpenAPI file (cut down to
them: tests/fixtures/proxy-webhooks-openapi.json), with typed calls only.

The webhooks live in a tenant of their own that has no customers, so no event is ever delivered
to their URLs (which are under .invalid, a name that never resolves, besides).
"""

from proxy_webhooks_client import AuthenticatedClient, api
from proxy_webhooks_client.api.webhooks import (
    create_webhook,
    delete_webhook,
    get_webhook,
    list_webhooks,
)
from proxy_webhooks_client.models import (
    CreateWebhookRequest,
    CreateWebhookRequestMetadata,
    Error,
    ListWebhooksResponse200,
    Webhook,
)
from proxy_webhooks_client.types import UNSET

from harness import Suite

UNKNOWN_ID = "whk_00000000000000000000000000"


def make_suite(base_url, tokens, date_time_members):
    def client(hooks, token):
        return AuthenticatedClient(
            base_url=f"{base_url}/v1", token=token, httpx_args={"event_hooks": hooks}
        )

    return Suite("proxy-webhooks", client, tokens, date_time_members)


def run(suite):
    created = suite.call(
        "create",
        create_webhook,
        body=CreateWebhookRequest(
            url="https://proxy.webhooks.invalid/hooks",
            events=["customer.updated", "customer.deleted"],
            metadata=CreateWebhookRequestMetadata.from_dict({"team": "risk"}),
        ),
        expect=201,
        model=Webhook,
    )
    webhook = created.parsed
    webhook_id = (created.body or {}).get("id")
    secret = webhook.secret if isinstance(webhook, Webhook) else UNSET
    suite.check(
        created.operation,
        "create",
        isinstance(secret, str) and secret.startswith("whsec_"),
        f"the created webhook's secret is {secret!r}, expected whsec_…",
        created.exchange,
    )
    keyed = CreateWebhookRequest(url="https://proxy.webhooks.invalid/keyed", enabled=True)
    first = suite.call(
        "create with a key",
        create_webhook,
        body=keyed,
        idempotency_key="proxy-hook-1",
        expect=201,
        model=Webhook,
    )
    again = suite.call(
        "create with a key, again",
        create_webhook,
        body=keyed,
        idempotency_key="proxy-hook-1",
        expect=201,
        model=Webhook,
    )
    suite.check_replay("create with a key, again", first, again)
    if webhook_id is None:
        return
    updated = suite.call(
        "update by id",
        create_webhook,
        body=CreateWebhookRequest(id=webhook_id, url="https://proxy.webhooks.invalid/v2"),
        expect=200,
        model=Webhook,
    )
    body = updated.body or {}
    suite.check(
        updated.operation,
        "update by id",
        body.get("url") == "https://proxy.webhooks.invalid/v2"
        and body.get("events") == ["customer.updated", "customer.deleted"]
        and "secret" not in body,
        "POST with id must replace the url, keep the events and show no secret",
        updated.exchange,
    )
    got = suite.call("get", get_webhook, webhook_id, expect=200, model=Webhook)
    suite.check(
        got.operation,
        "get",
        "secret" not in (got.body or {}),
        "GET shows no secret",
        got.exchange,
    )
    listed = suite.call("list", list_webhooks, expect=200, model=ListWebhooksResponse200)
    items = (listed.body or {}).get("data", [])
    suite.check(
        listed.operation,
        "list",
        webhook_id in [w.get("id") for w in items] and all("secret" not in w for w in items),
        "the list holds the webhook, without secrets",
        listed.exchange,
    )
    deleted = suite.call("delete", delete_webhook, webhook_id, expect=200, model=Webhook)
    suite.check(
        deleted.operation,
        "delete",
        (deleted.body or {}).get("enabled") is False
        and (deleted.body or {}).get("disabledReason") == "manual",
        "DELETE disables the webhook (manual)",
        deleted.exchange,
    )
    for module in (get_webhook, delete_webhook):
        suite.call("unknown id", module, UNKNOWN_ID, expect=404, model=Error)
    suite.call(
        "an http url",
        create_webhook,
        body=CreateWebhookRequest(url="http://proxy.webhooks.invalid/"),
        expect=400,
        model=Error,
    )
    suite.check_coverage(api)
