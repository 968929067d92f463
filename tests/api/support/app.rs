//! The real server in process: `spawn_app()` starts it on port 0 against a fresh database.

use std::time::Duration;

use customers_api::configuration::{Secret, Settings};
use customers_api::startup::Application;
use reqwest::{Method, RequestBuilder, Response};
use serde_json::Value;
use sqlx::postgres::PgConnectOptions;
use sqlx::PgPool;

use super::database::{connect, fresh_database};
use super::logs::init_test_logs;
use super::tokens::{token, ADMIN, ORG};

/// Settings for a test server: port 0, one worker, the default development keys.
pub fn test_settings() -> Settings {
    let mut settings = Settings::load().expect("the default configuration loads");
    settings.server.host = "127.0.0.1".into();
    settings.server.port = 0;
    settings.server.workers = 1;
    settings.database.url = Secret::new("");
    settings.database.migrate_on_start = false;
    settings.database.max_connections = 20;
    settings
}

/// `test_settings()` with changes.
pub fn test_settings_with(configure: impl FnOnce(&mut Settings)) -> Settings {
    let mut settings = test_settings();
    configure(&mut settings);
    settings
}

/// A secret setting (a key, a cursor secret) of the given value.
pub fn secret(value: &str) -> Secret {
    Secret::new(value)
}

pub struct TestApp {
    pub address: String,
    pub port: u16,
    /// A pool of the test's database, for asserting what is stored.
    pub db: PgPool,
    pub db_options: PgConnectOptions,
    pub client: reqwest::Client,
    pub settings: Settings,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(configure: impl FnOnce(&mut Settings)) -> TestApp {
    let db_options = fresh_database().await;
    spawn_app_on(db_options, test_settings_with(configure)).await
}

/// For tests that send many requests as one tenant: the rate limit is not under test there.
pub async fn spawn_app_without_rate_limits() -> TestApp {
    spawn_app_with(|settings| settings.rate_limit.enabled = false).await
}

/// A server on an existing database (several servers may share one).
pub async fn spawn_app_on(db_options: PgConnectOptions, settings: Settings) -> TestApp {
    init_test_logs();
    let pool = customers_api::db::pool(db_options.clone(), &settings.database);
    let app = Application::build_with_pool(settings.clone(), pool)
        .await
        .expect("the application builds");
    let port = app.port();
    tokio::spawn(app.run_until_stopped());
    TestApp {
        address: format!("http://127.0.0.1:{port}"),
        port,
        db: connect(&db_options, 5).await,
        db_options,
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("a client"),
        settings,
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    /// A pool made as the service makes its own (its role, its settings), on this database.
    pub fn service_pool(&self) -> PgPool {
        customers_api::db::pool(self.db_options.clone(), &self.settings.database)
    }

    /// A request with an admin token of `ORG` in test mode.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.request_as(method, path, &token(ORG, "test", ADMIN))
    }

    pub fn request_as(&self, method: Method, path: &str, token: &str) -> RequestBuilder {
        self.client
            .request(method, self.url(path))
            .bearer_auth(token)
    }

    pub async fn create(&self, body: Value) -> Response {
        self.request(Method::POST, "/v1/customers")
            .json(&body)
            .send()
            .await
            .expect("request sent")
    }

    /// Creates a customer and returns its JSON; panics unless 201.
    pub async fn create_ok(&self, body: Value) -> Value {
        let response = self.create(body).await;
        assert_eq!(
            response.status(),
            201,
            "create failed: {:?}",
            response.text().await
        );
        response.json().await.expect("a JSON customer")
    }

    /// Creates a customer and returns its id; panics unless 201.
    pub async fn create_id(&self, body: Value) -> String {
        self.create_ok(body).await["id"]
            .as_str()
            .expect("an id")
            .to_owned()
    }

    pub async fn patch(&self, id: &str, body: Value) -> Response {
        self.request(Method::PATCH, &format!("/v1/customers/{id}"))
            .header("content-type", "application/merge-patch+json")
            .body(body.to_string())
            .send()
            .await
            .expect("request sent")
    }

    /// `POST /v1/customers` of a raw body sent as `application/json`.
    pub async fn post_raw(&self, body: impl Into<reqwest::Body>) -> Response {
        self.request(Method::POST, "/v1/customers")
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("request sent")
    }

    /// `PATCH /v1/customers/{id}` of a raw body sent as `application/merge-patch+json`.
    pub async fn patch_raw(&self, id: &str, body: impl Into<reqwest::Body>) -> Response {
        self.request(Method::PATCH, &format!("/v1/customers/{id}"))
            .header("content-type", "application/merge-patch+json")
            .body(body)
            .send()
            .await
            .expect("request sent")
    }

    pub async fn get(&self, id: &str) -> Response {
        self.request(Method::GET, &format!("/v1/customers/{id}"))
            .send()
            .await
            .expect("request sent")
    }

    pub async fn get_json(&self, id: &str) -> Value {
        let response = self.get(id).await;
        assert_eq!(response.status(), 200);
        response.json().await.expect("JSON")
    }

    /// `DELETE /v1/customers/{id}`, with `If-Match` when given.
    pub async fn delete(&self, id: &str, if_match: Option<&str>) -> Response {
        self.send_with_if_match(Method::DELETE, &format!("/v1/customers/{id}"), if_match)
            .await
    }

    /// `POST /v1/customers/{id}/activate`, with `If-Match` when given.
    pub async fn activate(&self, id: &str, if_match: Option<&str>) -> Response {
        self.send_with_if_match(
            Method::POST,
            &format!("/v1/customers/{id}/activate"),
            if_match,
        )
        .await
    }

    async fn send_with_if_match(
        &self,
        method: Method,
        path: &str,
        if_match: Option<&str>,
    ) -> Response {
        let mut request = self.request(method, path);
        if let Some(if_match) = if_match {
            request = request.header("if-match", if_match);
        }
        request.send().await.expect("request sent")
    }

    /// `method path` as `ORG` admin, without a body.
    pub async fn call(&self, method: Method, path: &str) -> Response {
        self.request(method, path)
            .send()
            .await
            .expect("request sent")
    }

    /// `GET path` without a token.
    pub async fn get_anonymous(&self, path: &str) -> Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("request sent")
    }

    /// `GET /v1/customers` with a raw query string (`?…` included, or empty).
    pub async fn list_raw(&self, query: &str) -> Response {
        self.request(Method::GET, &format!("/v1/customers{query}"))
            .send()
            .await
            .expect("request sent")
    }
}
