//! Authentication and tenancy (contract §7): bearer JWTs, scopes with implication, and the tenant
//! (org, mode) confining every read and write.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use reqwest::{Method, Response};
use serde_json::{json, Value};

use crate::helpers::*;

/// The development HS256 key of `config/default.toml`.
const DEV_KID: &str = "dev";
const DEV_SECRET: &str = "dev-signing-secret-do-not-use-in-production-0000";
const MISSING: &str = "cus_01JD7Q4X2V6W8Y9Z0A1B2C3D4E";

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

fn claims(org: &str, mode: &str, scope: &str) -> Value {
    json!({
        "sub": "tests",
        "org": org,
        "mode": mode,
        "scope": scope,
        "exp": now() + 3600,
        "iat": now(),
    })
}

fn sign(claims: &Value, kid: Option<&str>, alg: Algorithm, secret: &str) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    encode(
        &header,
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("a token")
}

/// Signed with the development key, as the service's own tokens are.
fn dev_token(claims: &Value) -> String {
    sign(claims, Some(DEV_KID), Algorithm::HS256, DEV_SECRET)
}

/// An unsigned token: `alg: none`, an empty signature.
fn unsigned(header: Value, claims: &Value) -> String {
    format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

async fn send(
    app: &TestApp,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Response {
    let mut request = app.client.request(method, app.url(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.expect("request sent")
}

async fn create_as(app: &TestApp, token: &str, body: Value) -> String {
    let response = send(app, Method::POST, "/v1/customers", Some(token), Some(body)).await;
    assert_eq!(response.status(), 201, "{:?}", response.text().await);
    let body: Value = response.json().await.unwrap();
    body["id"].as_str().unwrap().to_owned()
}

async fn list_ids(app: &TestApp, token: &str, query: &str) -> Vec<String> {
    let response = send(
        app,
        Method::GET,
        &format!("/v1/customers{query}"),
        Some(token),
        None,
    )
    .await;
    assert_eq!(response.status(), 200);
    let page: Value = response.json().await.unwrap();
    page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect()
}

/// (org, mode, version, status, email) as stored.
async fn stored(app: &TestApp, id: &str) -> (String, String, i64, String, Option<String>) {
    sqlx::query_as("SELECT org_id, mode, version, status, email FROM customers WHERE id = $1")
        .bind(id)
        .fetch_one(&app.db)
        .await
        .expect("the customer is stored")
}

/// A 401 with the envelope and `WWW-Authenticate: Bearer`.
async fn assert_401(response: Response, what: &str) {
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(response.status(), 401, "{what}");
    let error = error_body(response, 401, "unauthorized").await;
    assert_eq!(error["type"], "authentication_error", "{what}");
    let challenge = challenge.unwrap_or_else(|| panic!("{what}: no WWW-Authenticate"));
    assert!(
        challenge == "Bearer" || challenge.starts_with("Bearer "),
        "{what}: WWW-Authenticate: {challenge}"
    );
}

/// Every route refuses the Authorization header value `header` (None: no header) with 401, and
/// nothing is written.
async fn assert_refused_everywhere(app: &TestApp, header: Option<&str>, what: &str) {
    let id = app.create_ok(json!({"email": "keep@example.com"})).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let before = app.count_customers().await;
    for (method, path, body) in [
        (Method::GET, "/v1/customers".to_owned(), None),
        (
            Method::POST,
            "/v1/customers".to_owned(),
            Some(json!({"email": "new@example.com"})),
        ),
        (Method::GET, format!("/v1/customers/{id}"), None),
        (
            Method::PATCH,
            format!("/v1/customers/{id}"),
            Some(json!({"email": "changed@example.com"})),
        ),
        (Method::DELETE, format!("/v1/customers/{id}"), None),
        (Method::POST, format!("/v1/customers/{id}/activate"), None),
    ] {
        let mut request = app.client.request(method.clone(), app.url(&path));
        if let Some(header) = header {
            request = request.header("authorization", header);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        assert_401(response, &format!("{what}: {method} {path}")).await;
    }
    assert_eq!(app.count_customers().await, before, "{what}");
    assert_eq!(
        stored(app, &id).await,
        (
            ORG.into(),
            "test".into(),
            1,
            "pending".into(),
            Some("keep@example.com".into())
        ),
        "{what}"
    );
}

/// The token is refused with 401 on a read and on a write, and nothing is written.
async fn assert_token_refused(app: &TestApp, token: &str, what: &str) {
    let before = app.count_customers().await;
    let response = send(app, Method::GET, "/v1/customers", Some(token), None).await;
    assert_401(response, what).await;
    let response = send(
        app,
        Method::POST,
        "/v1/customers",
        Some(token),
        Some(json!({"email": "new@example.com"})),
    )
    .await;
    assert_401(response, what).await;
    assert_eq!(app.count_customers().await, before, "{what}");
}

#[tokio::test]
async fn a_token_signed_with_the_development_key_is_accepted() {
    // The control for the refusals below: the hand-made tokens are right but for one thing.
    let app = spawn_app().await;
    let token = dev_token(&claims(ORG, "test", ADMIN));
    let id = create_as(&app, &token, json!({"email": "a@example.com"})).await;
    assert_eq!(stored(&app, &id).await.0, ORG);
    assert_eq!(list_ids(&app, &token, "").await, vec![id.clone()]);
    // The helper's tokens and hand-made ones name the same tenant.
    assert_eq!(app.get_json(&id).await["id"], id.as_str());
    // Without a kid, the only configured key is used.
    let no_kid = sign(
        &claims(ORG, "test", READ),
        None,
        Algorithm::HS256,
        DEV_SECRET,
    );
    assert_eq!(list_ids(&app, &no_kid, "").await, vec![id.clone()]);
    // The scheme is case-insensitive (RFC 9110 §11.1).
    for scheme in ["bearer", "BEARER"] {
        let response = app
            .client
            .get(app.url(&format!("/v1/customers/{id}")))
            .header("authorization", format!("{scheme} {token}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{scheme}");
    }
}

#[tokio::test]
async fn a_missing_token_is_401_with_a_bearer_challenge() {
    let app = spawn_app().await;
    assert_refused_everywhere(&app, None, "no Authorization header").await;
}

#[tokio::test]
async fn a_malformed_token_is_401() {
    let app = spawn_app().await;
    let valid = token(ORG, "test", ADMIN);
    let basic = format!("Basic {}", URL_SAFE_NO_PAD.encode("user:pass"));
    let no_scheme = valid.clone();
    let two_tokens = format!("Bearer {valid} {valid}");
    let four_parts = format!("Bearer {valid}.abc");
    let not_json = format!(
        "Bearer {}.{}.{}",
        URL_SAFE_NO_PAD.encode("not json"),
        URL_SAFE_NO_PAD.encode("not json"),
        URL_SAFE_NO_PAD.encode("sig")
    );
    for header in [
        "",
        "Bearer",
        "Bearer ",
        "Bearer garbage",
        "Bearer a.b.c",
        "Bearer a.b",
        "Bearer ...",
        basic.as_str(),
        no_scheme.as_str(),
        two_tokens.as_str(),
        four_parts.as_str(),
        not_json.as_str(),
    ] {
        assert_refused_everywhere(&app, Some(header), &format!("Authorization: {header:?}")).await;
    }

    // Two Authorization headers are refused rather than guessed between.
    let response = app
        .client
        .get(app.url("/v1/customers"))
        .header("authorization", format!("Bearer {valid}"))
        .header("authorization", "Bearer garbage")
        .send()
        .await
        .unwrap();
    assert_401(response, "two Authorization headers").await;

    // Claims of the wrong shape, correctly signed.
    let mut bad_mode = claims(ORG, "test", ADMIN);
    bad_mode["mode"] = json!("staging");
    let mut no_org = claims(ORG, "test", ADMIN);
    no_org.as_object_mut().unwrap().remove("org");
    let mut empty_org = claims(ORG, "test", ADMIN);
    empty_org["org"] = json!("");
    for (what, claims) in [
        ("mode staging", bad_mode),
        ("no org", no_org),
        ("empty org", empty_org),
    ] {
        assert_token_refused(&app, &dev_token(&claims), what).await;
    }
}

#[tokio::test]
async fn an_expired_token_is_401_and_the_leeway_is_30_seconds() {
    let app = spawn_app().await;
    let mut expired = claims(ORG, "test", ADMIN);
    expired["exp"] = json!(now() - 3600);
    expired["iat"] = json!(now() - 7200);
    assert_token_refused(&app, &dev_token(&expired), "expired an hour ago").await;

    let mut just_past_leeway = claims(ORG, "test", ADMIN);
    just_past_leeway["exp"] = json!(now() - 90);
    assert_token_refused(&app, &dev_token(&just_past_leeway), "expired 90 s ago").await;

    let mut no_exp = claims(ORG, "test", ADMIN);
    no_exp.as_object_mut().unwrap().remove("exp");
    assert_token_refused(&app, &dev_token(&no_exp), "no exp").await;

    // Within the default leeway of 30 s a just-expired token still works.
    let mut within_leeway = claims(ORG, "test", ADMIN);
    within_leeway["exp"] = json!(now() - 5);
    create_as(&app, &dev_token(&within_leeway), json!({})).await;
    assert_eq!(app.count_customers().await, 1);
}

#[tokio::test]
async fn a_badly_signed_token_is_401() {
    let app = spawn_app().await;
    let good = claims(ORG, "test", ADMIN);
    let other_secret = sign(
        &good,
        Some(DEV_KID),
        Algorithm::HS256,
        "another-secret-of-the-same-length-as-the-dev-one",
    );
    assert_token_refused(&app, &other_secret, "signed with another secret").await;

    // A valid token whose payload was swapped for another tenant's.
    let valid = dev_token(&good);
    let parts: Vec<&str> = valid.split('.').collect();
    let forged_payload = URL_SAFE_NO_PAD.encode(claims("org_b", "live", ADMIN).to_string());
    let swapped = format!("{}.{forged_payload}.{}", parts[0], parts[2]);
    assert_token_refused(&app, &swapped, "payload swapped").await;

    let stripped = format!("{}.{}.", parts[0], parts[1]);
    assert_token_refused(&app, &stripped, "signature stripped").await;

    let mut signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
    signature[0] ^= 0x01;
    let flipped = format!(
        "{}.{}.{}",
        parts[0],
        parts[1],
        URL_SAFE_NO_PAD.encode(signature)
    );
    assert_token_refused(&app, &flipped, "one signature bit flipped").await;
}

#[tokio::test]
async fn an_alg_none_token_is_401() {
    let app = spawn_app().await;
    let claims = claims(ORG, "test", ADMIN);
    for header in [
        json!({"alg": "none", "typ": "JWT"}),
        json!({"alg": "none", "typ": "JWT", "kid": DEV_KID}),
        json!({"alg": "None", "typ": "JWT", "kid": DEV_KID}),
        json!({"alg": "NONE", "typ": "JWT"}),
    ] {
        let token = unsigned(header.clone(), &claims);
        assert_token_refused(&app, &token, &format!("unsigned, header {header}")).await;
        // With the dev key's signature attached anyway.
        let signature = dev_token(&claims).rsplit('.').next().unwrap().to_owned();
        let token = format!("{token}{signature}");
        assert_token_refused(&app, &token, &format!("header {header}, signed")).await;
    }
}

#[tokio::test]
async fn an_unknown_kid_or_an_algorithm_other_than_the_keys_is_401() {
    let app = spawn_app().await;
    let claims = claims(ORG, "test", ADMIN);
    for kid in ["other", "", "DEV", "dev ", "../dev"] {
        let token = sign(&claims, Some(kid), Algorithm::HS256, DEV_SECRET);
        assert_token_refused(&app, &token, &format!("kid {kid:?}")).await;
    }
    // The key's algorithm is HS256; the token does not get to choose another one.
    for alg in [Algorithm::HS384, Algorithm::HS512] {
        let token = sign(&claims, Some(DEV_KID), alg, DEV_SECRET);
        assert_token_refused(&app, &token, &format!("alg {alg:?}")).await;
    }
}

#[tokio::test]
async fn a_read_token_reads_but_cannot_write() {
    let app = spawn_app().await;
    let id = app.create_ok(json!({"email": "keep@example.com"})).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let read = token(ORG, "test", READ);

    assert_eq!(list_ids(&app, &read, "").await, vec![id.clone()]);
    let response = send(
        &app,
        Method::GET,
        &format!("/v1/customers/{id}"),
        Some(&read),
        None,
    )
    .await;
    assert_eq!(response.status(), 200);

    for (method, path, body) in [
        (
            Method::POST,
            "/v1/customers".to_owned(),
            Some(json!({"email": "new@example.com"})),
        ),
        (
            Method::PATCH,
            format!("/v1/customers/{id}"),
            Some(json!({"email": "changed@example.com"})),
        ),
        (Method::DELETE, format!("/v1/customers/{id}"), None),
        (Method::POST, format!("/v1/customers/{id}/activate"), None),
    ] {
        let response = send(&app, method.clone(), &path, Some(&read), body).await;
        let error = error_body(response, 403, "insufficient_scope").await;
        assert_eq!(error["type"], "permission_error", "{method} {path}");
    }
    assert_eq!(app.count_customers().await, 1);
    assert_eq!(
        stored(&app, &id).await,
        (
            ORG.into(),
            "test".into(),
            1,
            "pending".into(),
            Some("keep@example.com".into())
        )
    );
}

#[tokio::test]
async fn a_write_token_reads_and_writes_but_cannot_activate() {
    let app = spawn_app().await;
    let write = token(ORG, "test", WRITE);

    let id = create_as(&app, &write, json!({"email": "w@example.com"})).await;
    assert_eq!(list_ids(&app, &write, "").await, vec![id.clone()]);
    let path = format!("/v1/customers/{id}");
    let response = send(&app, Method::GET, &path, Some(&write), None).await;
    assert_eq!(response.status(), 200);

    let response = send(
        &app,
        Method::PATCH,
        &path,
        Some(&write),
        Some(json!({"email": "w2@example.com"})),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        stored(&app, &id).await,
        (
            ORG.into(),
            "test".into(),
            2,
            "pending".into(),
            Some("w2@example.com".into())
        )
    );

    let response = send(
        &app,
        Method::POST,
        &format!("{path}/activate"),
        Some(&write),
        None,
    )
    .await;
    let error = error_body(response, 403, "insufficient_scope").await;
    assert_eq!(error["type"], "permission_error");
    assert_eq!(stored(&app, &id).await.2, 2);
    assert_eq!(stored(&app, &id).await.3, "pending");

    let response = send(&app, Method::DELETE, &path, Some(&write), None).await;
    assert_eq!(response.status(), 200);
    assert_eq!(stored(&app, &id).await.3, "deleted");
}

#[tokio::test]
async fn an_admin_token_does_everything() {
    let app = spawn_app().await;
    let admin = token(ORG, "test", ADMIN);
    let id = create_as(&app, &admin, json!({})).await;
    let path = format!("/v1/customers/{id}");
    assert_eq!(list_ids(&app, &admin, "").await, vec![id.clone()]);
    let response = send(&app, Method::GET, &path, Some(&admin), None).await;
    assert_eq!(response.status(), 200);
    let response = send(
        &app,
        Method::PATCH,
        &path,
        Some(&admin),
        Some(json!({"email": "a@example.com"})),
    )
    .await;
    assert_eq!(response.status(), 200);
    let response = send(
        &app,
        Method::POST,
        &format!("{path}/activate"),
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        stored(&app, &id).await,
        (
            ORG.into(),
            "test".into(),
            3,
            "active".into(),
            Some("a@example.com".into())
        )
    );
    let response = send(&app, Method::DELETE, &path, Some(&admin), None).await;
    assert_eq!(response.status(), 200);
    assert_eq!(stored(&app, &id).await.3, "deleted");
}

#[tokio::test]
async fn scopes_are_read_from_a_space_separated_list() {
    let app = spawn_app().await;
    // Several scopes: the highest counts.
    let both = dev_token(&claims(ORG, "test", "customers:read customers:write"));
    create_as(&app, &both, json!({})).await;
    let padded = dev_token(&claims(ORG, "test", "openid  customers:write profile"));
    create_as(&app, &padded, json!({})).await;
    assert_eq!(app.count_customers().await, 2);

    // No known scope: authenticated, but allowed nothing.
    for scope in [
        "",
        "customers",
        "customers:*",
        "admin",
        "customers:readwrite",
    ] {
        let token = dev_token(&claims(ORG, "test", scope));
        let response = send(&app, Method::GET, "/v1/customers", Some(&token), None).await;
        let error = error_body(response, 403, "insufficient_scope").await;
        assert_eq!(error["type"], "permission_error", "scope {scope:?}");
        let response = send(
            &app,
            Method::POST,
            "/v1/customers",
            Some(&token),
            Some(json!({})),
        )
        .await;
        error_body(response, 403, "insufficient_scope").await;
    }
    assert_eq!(app.count_customers().await, 2);
}

/// The error object without its request id, for comparing two answers.
async fn not_found_shape(response: Response) -> Value {
    let mut error = error_body(response, 404, "not_found").await;
    error.as_object_mut().unwrap().remove("requestId");
    error
}

#[tokio::test]
async fn another_orgs_customer_is_indistinguishable_from_a_missing_one() {
    let app = spawn_app().await;
    let org_b = token("org_b", "test", ADMIN);
    let theirs = create_as(&app, &org_b, json!({"email": "shared@example.com"})).await;
    let ours = app.create_ok(json!({"email": "shared@example.com"})).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let org_a = token(ORG, "test", ADMIN);

    let requests = |id: &str| {
        vec![
            (Method::GET, format!("/v1/customers/{id}"), None),
            (
                Method::PATCH,
                format!("/v1/customers/{id}"),
                Some(json!({"email": "stolen@example.com"})),
            ),
            (Method::DELETE, format!("/v1/customers/{id}"), None),
            (Method::POST, format!("/v1/customers/{id}/activate"), None),
        ]
    };
    for ((method, path, body), (_, missing_path, missing_body)) in
        requests(&theirs).into_iter().zip(requests(MISSING))
    {
        let theirs_error =
            not_found_shape(send(&app, method.clone(), &path, Some(&org_a), body).await).await;
        let missing_error = not_found_shape(
            send(
                &app,
                method.clone(),
                &missing_path,
                Some(&org_a),
                missing_body,
            )
            .await,
        )
        .await;
        assert_eq!(theirs_error, missing_error, "{method}");
    }
    // If-Match: * matches any *existing* customer; theirs does not exist for org A.
    let response = app
        .request_as(Method::PATCH, &format!("/v1/customers/{theirs}"), &org_a)
        .header("if-match", "*")
        .json(&json!({"email": "stolen@example.com"}))
        .send()
        .await
        .unwrap();
    not_found_shape(response).await;

    // Untouched.
    assert_eq!(
        stored(&app, &theirs).await,
        (
            "org_b".into(),
            "test".into(),
            1,
            "pending".into(),
            Some("shared@example.com".into())
        )
    );

    // Lists: each org sees its own only, whatever the filter.
    for query in [
        "",
        "?email=shared@example.com",
        "?status=pending",
        "?type=consumer",
    ] {
        assert_eq!(
            list_ids(&app, &org_a, query).await,
            vec![ours.clone()],
            "{query}"
        );
        assert_eq!(
            list_ids(&app, &org_b, query).await,
            vec![theirs.clone()],
            "{query}"
        );
    }

    // And org B still has full use of it.
    let response = send(
        &app,
        Method::GET,
        &format!("/v1/customers/{theirs}"),
        Some(&org_b),
        None,
    )
    .await;
    assert_eq!(response.status(), 200);
    // Org B cannot touch org A's either.
    let response = send(
        &app,
        Method::DELETE,
        &format!("/v1/customers/{ours}"),
        Some(&org_b),
        None,
    )
    .await;
    not_found_shape(response).await;
    assert_eq!(stored(&app, &ours).await.3, "pending");
    // Org B's deleted customers are not org A's either.
    let response = send(
        &app,
        Method::DELETE,
        &format!("/v1/customers/{theirs}"),
        Some(&org_b),
        None,
    )
    .await;
    assert_eq!(response.status(), 200);
    assert!(list_ids(&app, &org_a, "?status=deleted").await.is_empty());
}

#[tokio::test]
async fn test_mode_and_live_mode_never_mix() {
    let app = spawn_app().await;
    let test = token(ORG, "test", ADMIN);
    let live = token(ORG, "live", ADMIN);
    let in_test = create_as(&app, &test, json!({"email": "m@example.com"})).await;
    let in_live = create_as(&app, &live, json!({"email": "m@example.com"})).await;
    assert_eq!(stored(&app, &in_test).await.1, "test");
    assert_eq!(stored(&app, &in_live).await.1, "live");

    for (token, own, other) in [(&test, &in_test, &in_live), (&live, &in_live, &in_test)] {
        assert_eq!(list_ids(&app, token, "").await, vec![own.clone()]);
        assert_eq!(
            list_ids(&app, token, "?email=M@example.com").await,
            vec![own.clone()]
        );
        let path = format!("/v1/customers/{other}");
        let response = send(&app, Method::GET, &path, Some(token), None).await;
        not_found_shape(response).await;
        let response = send(
            &app,
            Method::PATCH,
            &path,
            Some(token),
            Some(json!({"email": "x@example.com"})),
        )
        .await;
        not_found_shape(response).await;
        let response = send(
            &app,
            Method::POST,
            &format!("{path}/activate"),
            Some(token),
            None,
        )
        .await;
        not_found_shape(response).await;
        let response = send(&app, Method::DELETE, &path, Some(token), None).await;
        not_found_shape(response).await;
        // The other mode's customer is untouched.
        let (_, _, version, status, email) = stored(&app, other).await;
        assert_eq!(
            (version, status, email),
            (1, "pending".into(), Some("m@example.com".into()))
        );
        // And one's own is reachable.
        let response = send(
            &app,
            Method::GET,
            &format!("/v1/customers/{own}"),
            Some(token),
            None,
        )
        .await;
        assert_eq!(response.status(), 200);
    }
}
