"""Every webhook operation of the client generated from the service's own /openapi.json, with
typed calls only, as the role "webhooks" (a token with webhooks:manage of a tenant of its own
with no customers: no event is ever delivered; the URLs are under .invalid besides)."""

import datetime

from own_client.api.webhooks import (
    create_webhook,
    delete_webhook,
    get_webhook,
    get_webhook_secret,
    list_webhook_deliveries,
    list_webhooks,
    recover_webhook,
    retry_webhook_delivery,
    rotate_webhook_secret,
    update_webhook,
)
from own_client.models import (
    DeliveryList,
    Error,
    EventType,
    RecoverIn,
    RecoverOut,
    RotateIn,
    WebhookIn,
    WebhookList,
    WebhookOut,
    WebhookPatch,
    WebhookSecretOut,
)

ROLE = "webhooks"


def run(context):
    suite = context.suite

    def call(scenario, *arguments, **keywords):
        return suite.call(scenario, *arguments, role=ROLE, **keywords)

    created = call(
        "create",
        create_webhook,
        body=WebhookIn(
            url="https://own.webhooks.invalid/hooks", events=[EventType.CUSTOMER_CREATED]
        ),
        expect=201,
        model=WebhookOut,
    )
    body = created.body or {}
    webhook_id, secret = body.get("id"), body.get("secret")
    if webhook_id is None:
        return
    call("get", get_webhook, webhook_id, expect=200, model=WebhookOut)
    call("list", list_webhooks, expect=200, model=WebhookList)
    call(
        "patch",
        update_webhook,
        webhook_id,
        body=WebhookPatch(description="ledger"),
        if_match=created.header("ETag"),
        expect=200,
        model=WebhookOut,
    )
    shown = call("secret", get_webhook_secret, webhook_id, expect=200, model=WebhookSecretOut)
    suite.check(
        shown.operation,
        "secret",
        (shown.body or {}).get("secret") == secret,
        "GET …/secret shows the secret of the create",
        shown.exchange,
    )
    rotated = call(
        "rotate",
        rotate_webhook_secret,
        webhook_id,
        body=RotateIn(grace_period=0),
        expect=200,
        model=WebhookOut,
    )
    new_secret = (rotated.body or {}).get("secret")
    suite.check(
        rotated.operation,
        "rotate",
        isinstance(new_secret, str) and new_secret.startswith("whsec_") and new_secret != secret,
        "a rotation answers a new secret",
        rotated.exchange,
    )
    call("deliveries", list_webhook_deliveries, webhook_id, expect=200, model=DeliveryList)
    call(
        "retry of an unknown delivery",
        retry_webhook_delivery,
        webhook_id,
        "dlv_00000000000000000000000000",
        expect=404,
        model=Error,
    )
    recovered = call(
        "recover",
        recover_webhook,
        webhook_id,
        body=RecoverIn(since=datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)),
        expect=202,
        model=RecoverOut,
    )
    suite.check(
        recovered.operation,
        "recover",
        (recovered.body or {}).get("deliveries") == 0,
        "a tenant with no events recovers nothing",
        recovered.exchange,
    )
    call("delete", delete_webhook, webhook_id, expect=200, model=WebhookOut)
