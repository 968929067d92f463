//! The delivery log's retention: ended deliveries (with their attempts) go, pending ones stay.

use std::time::Duration;

use serde_json::json;

use super::receiver::{Answer, Receiver};
use super::*;

#[tokio::test]
async fn ended_deliveries_past_the_log_retention_are_deleted_and_pending_ones_kept() {
    let app = spawn_app_with(|settings| {
        hooks_settings(settings);
        settings.webhooks.log_retention = Duration::from_secs(1);
        settings.webhooks.retry_schedule = vec![Duration::from_secs(3600)];
        settings.idempotency.sweep_interval = Duration::from_millis(200);
    })
    .await;
    let healthy = Receiver::start().await;
    let failing = Receiver::start().await;
    failing.otherwise(Answer::status(500));
    let ok = create_webhook(&app, json!({"url": healthy.url("/")})).await;
    let waiting = create_webhook(&app, json!({"url": failing.url("/")})).await;
    app.create_id(customer()).await;
    let ok_id = ok["id"].as_str().unwrap();
    let waiting_id = waiting["id"].as_str().unwrap();
    deliveries_until(&app, ok_id, |d| {
        d.len() == 1 && d[0]["status"] == "succeeded"
    })
    .await;
    deliveries_until(&app, waiting_id, |d| {
        d.first()
            .is_some_and(|d| d["attempts"].as_array().unwrap().len() == 1)
    })
    .await;
    // Past the retention, the succeeded one goes; the pending one (next attempt in an hour)
    // stays.
    deliveries_until(&app, ok_id, |d| d.is_empty()).await;
    let kept = get_json_as_manager(&app, &format!("/v1/webhooks/{waiting_id}/deliveries")).await;
    assert_eq!(kept["data"].as_array().unwrap().len(), 1);
    assert_eq!(kept["data"][0]["status"], "pending");
    let attempts: i64 = sqlx::query_scalar("SELECT count(*) FROM webhook_attempts")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(attempts, 1, "the deleted delivery's attempt went with it");
}
