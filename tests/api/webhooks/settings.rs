//! The webhook settings the production profile refuses, as the development signing key; and
//! a deliveries budget that would stop deliveries for writes.

use customers_api::configuration::Profile;

use crate::support::*;

#[test]
fn the_production_profile_refuses_the_development_webhook_settings() {
    let mut settings = test_settings();
    settings.profile = Profile::Production;
    settings.auth.keys[0].secret = secret("a production signing key, thirty-two bytes or more");
    settings.pagination.cursor_secret = secret("a production cursor secret, thirty-two bytes+");
    let refused = settings.validate().unwrap_err();
    assert_eq!(refused.setting, "webhooks.secrets_key");
    settings.webhooks.secrets_key = secret("a production webhooks key, thirty-two bytes or more");
    settings
        .validate()
        .expect("production-worthy settings pass");
    for allow in [
        |s: &mut customers_api::configuration::Settings| s.webhooks.allow_http = true,
        |s: &mut customers_api::configuration::Settings| s.webhooks.allow_private_networks = true,
    ] {
        let mut settings = settings.clone();
        allow(&mut settings);
        let refused = settings.validate().unwrap_err();
        assert!(refused.setting.contains("webhooks.allow_"), "{refused}");
    }
    // The development profile takes them (the tests run so).
    settings.profile = Profile::Development;
    settings.webhooks.allow_http = true;
    settings.webhooks.allow_private_networks = true;
    settings.validate().unwrap();
}

#[test]
fn a_busy_deliveries_budget_of_zero_is_refused() {
    let mut settings = test_settings();
    settings.webhooks.busy_deliveries_per_second = 0;
    let refused = settings.validate().unwrap_err();
    assert_eq!(refused.setting, "webhooks.busy_deliveries_per_second");
    settings.webhooks.busy_deliveries_per_second = 1;
    // 0 writes a second: always busy, a fixed budget.
    settings.webhooks.busy_writes_per_second = 0;
    settings.validate().unwrap();
}
