//! Changing `webhooks.secrets_key`: with the old key among `webhooks.previous_secrets_keys`,
//! the stored secrets still open, every instance seals them again under the new key, and after
//! that the old key is not needed.

use std::time::Duration;

use customers_api::configuration::Settings;
use customers_api::tenant::{Mode, Tenant};
use customers_api::webhooks::secret::{SealedUnder, SecretBox};
use serde_json::json;

use super::receiver::Receiver;
use super::*;

const OLD_KEY: &str = "the old webhooks secrets key, thirty-two bytes or more";
const NEW_KEY: &str = "the new webhooks secrets key, thirty-two bytes or more";

/// Delivery settings with `key` as `webhooks.secrets_key` and `previous` as the previous keys.
fn keyed(key: &str, previous: &[&str]) -> Settings {
    test_settings_with(|s| {
        hooks_settings(s);
        s.webhooks.secrets_key = secret(key);
        s.webhooks.previous_secrets_keys = previous.iter().map(|k| secret(k)).collect();
    })
}

/// As [`keyed`], for an instance whose dispatcher and senders look only when woken (their poll
/// is an hour away): no write goes through it after its webhook is made.
fn keyed_idle(key: &str) -> Settings {
    let mut settings = keyed(key, &[]);
    settings.webhooks.poll_interval = Duration::from_secs(3600);
    settings
}

fn tenant() -> Tenant {
    Tenant {
        org: ORG.into(),
        mode: Mode::Test,
    }
}

async fn stored_sealed(app: &TestApp, webhook_id: &str) -> Vec<u8> {
    sqlx::query_scalar("SELECT sealed FROM webhook_secrets WHERE webhook_id = $1")
        .bind(webhook_id)
        .fetch_one(&app.db)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_new_secrets_key_seals_every_secret_again_and_the_old_key_can_go() {
    let db = fresh_database().await;
    // The instance of the old key.
    let old = spawn_app_on(db.clone(), keyed_idle(OLD_KEY)).await;
    let receiver = Receiver::start().await;
    let webhook = create_webhook(&old, json!({"url": receiver.url("/")})).await;
    let id = webhook["id"].as_str().unwrap().to_owned();
    let signing_secret = webhook["secret"].as_str().unwrap().to_owned();
    let sealed_before = stored_sealed(&old, &id).await;
    let tenant = tenant();
    let old_box = SecretBox::new(OLD_KEY, []);
    let new_box = SecretBox::new(NEW_KEY, []);
    assert!(old_box.open(&tenant, &id, &sealed_before).is_some());
    assert!(new_box.open(&tenant, &id, &sealed_before).is_none());

    // The new key, the old one as previous: the secret is sealed again at the first pass.
    let mut settings = keyed(NEW_KEY, &[OLD_KEY]);
    settings.idempotency.sweep_interval = Duration::from_millis(100);
    let rotated = spawn_app_on(db.clone(), settings).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let sealed_after = loop {
        let sealed = stored_sealed(&rotated, &id).await;
        if sealed != sealed_before {
            break sealed;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the secret was not sealed again"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let both = SecretBox::new(NEW_KEY, [OLD_KEY]);
    let (opened, under) = both.open_telling_key(&tenant, &id, &sealed_after).unwrap();
    assert_eq!(under, SealedUnder::Current);
    assert_eq!(opened.expose(), signing_secret, "the same secret");
    assert!(old_box.open(&tenant, &id, &sealed_after).is_none());

    // An instance with only the new key shows the secret and signs with it.
    let new = spawn_app_on(db, keyed(NEW_KEY, &[])).await;
    let shown = get_json_as_manager(&new, &format!("/v1/webhooks/{id}/secret")).await;
    assert_eq!(shown["secret"], signing_secret.as_str());
    new.create_id(customer()).await;
    let received = receiver.wait_for(1, Duration::from_secs(15)).await;
    verify(&received[0], &signing_secret).expect("signed with the webhook's secret");
    // The pass wrote nothing else: one secret, still the current one.
    let secrets: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM webhook_secrets WHERE webhook_id = $1 AND expires_at IS NULL",
    )
    .bind(&id)
    .fetch_one(&new.db)
    .await
    .unwrap();
    assert_eq!(secrets, 1);
}

/// A pass counts what it sealed again and what no key opens, and leaves the latter as it is.
#[tokio::test]
async fn a_pass_seals_only_what_a_previous_key_opens() {
    let db = fresh_database().await;
    let first = spawn_app_on(db.clone(), keyed_idle(OLD_KEY)).await;
    let under_old = create_webhook(&first, json!({"url": "http://127.0.0.1:9/a"})).await;
    // Sealed under a key the next instance does not know.
    let stranger = spawn_app_on(
        db.clone(),
        keyed_idle("a key nobody kept, thirty-two bytes or more"),
    )
    .await;
    let unreadable = create_webhook(&stranger, json!({"url": "http://127.0.0.1:9/b"})).await;
    let unreadable_id = unreadable["id"].as_str().unwrap();
    let unreadable_before = stored_sealed(&stranger, unreadable_id).await;

    // The passes are this test's own: no application runs with these settings.
    let settings = keyed(NEW_KEY, &[OLD_KEY]);
    let hooks = customers_api::webhooks::shared::Webhooks::new(settings.webhooks.clone());
    let pool = customers_api::db::pool(db, &settings.database);
    let stop = tokio_util::sync::CancellationToken::new();
    let found = customers_api::webhooks::reseal::pass(&pool, &hooks, &stop)
        .await
        .unwrap();
    assert_eq!(found.resealed, 1, "{found:?}");
    assert_eq!(found.unreadable, 1, "{found:?}");
    let again = customers_api::webhooks::reseal::pass(&pool, &hooks, &stop)
        .await
        .unwrap();
    assert_eq!(again.resealed, 0, "nothing left under the old key");
    assert_eq!(
        stored_sealed(&stranger, unreadable_id).await,
        unreadable_before,
        "what no key opens is left as it was"
    );
    let id = under_old["id"].as_str().unwrap();
    let sealed = stored_sealed(&first, id).await;
    assert_eq!(
        hooks
            .secrets
            .open_telling_key(&tenant(), id, &sealed)
            .unwrap()
            .1,
        SealedUnder::Current
    );
}
