//! A SIGKILL in the middle of an attempt loses no delivery: another instance attempts it again
//! when the claim's lease ends (same webhook-id, so the receiver can deduplicate).

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use super::receiver::{Answer, Receiver};
use super::*;

#[tokio::test]
async fn a_delivery_cut_by_a_sigkill_is_attempted_again_by_another_instance() {
    let (_pool, database_url) = fresh_database_for_binaries().await;
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    // Short bounds, so that the lease (timeout + acquire + 2 × statement timeout) ends in 6 s.
    let env: Vec<(String, String)> = [
        ("CUSTOMERS_API__WEBHOOKS__ALLOW_HTTP", "true"),
        ("CUSTOMERS_API__WEBHOOKS__ALLOW_PRIVATE_NETWORKS", "true"),
        ("CUSTOMERS_API__WEBHOOKS__TIMEOUT", "3s"),
        ("CUSTOMERS_API__WEBHOOKS__POLL_INTERVAL", "100ms"),
        ("CUSTOMERS_API__DATABASE__ACQUIRE_TIMEOUT", "1s"),
        ("CUSTOMERS_API__DATABASE__STATEMENT_TIMEOUT", "1s"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let receiver = Receiver::start().await;
    // The first attempt hangs (until the kill); the next is answered at once.
    receiver.script([Answer::status(200).delayed(Duration::from_secs(60))]);

    let mut victim = Service::start_with_env(dir.path(), &database_url, "webhooks-victim", &env);
    victim.wait_ready(&client).await;
    let created: Value = client
        .post(victim.url("/v1/webhooks"))
        .bearer_auth(manage_token())
        .json(&json!({"url": receiver.url("/")}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let webhook_id = created["id"].as_str().unwrap().to_owned();
    let secret = created["secret"].as_str().unwrap().to_owned();
    let response = client
        .post(victim.url("/v1/customers"))
        .bearer_auth(token(ORG, "test", ADMIN))
        .json(&customer())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    receiver.wait_for(1, Duration::from_secs(20)).await;
    victim.sigkill().await;

    let mut survivor =
        Service::start_with_env(dir.path(), &database_url, "webhooks-survivor", &env);
    survivor.wait_ready(&client).await;
    let received = receiver.wait_for(2, Duration::from_secs(30)).await;
    assert_eq!(
        header(&received[0], "webhook-id"),
        header(&received[1], "webhook-id")
    );
    assert_eq!(received[0].body, received[1].body);
    verify(&received[1], &secret).unwrap();
    // The cut attempt left no outcome; the one that got through is recorded.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let log: Value = client
            .request(
                Method::GET,
                survivor.url(&format!("/v1/webhooks/{webhook_id}/deliveries")),
            )
            .bearer_auth(manage_token())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if log["data"][0]["status"] == "succeeded" {
            assert_eq!(log["data"].as_array().unwrap().len(), 1);
            assert_eq!(log["data"][0]["attempts"].as_array().unwrap().len(), 1);
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{log}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(survivor.terminate().await.success());
}
