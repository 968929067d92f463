//! One tenant of the isolation workload: it keeps a model of its own customers, checks every
//! answer against it, and attacks the other tenants with what they published.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use reqwest::Method;
use serde_json::{json, Value};

use super::*;

pub(super) struct Worker<'a> {
    pub(super) app: &'a TestApp,
    pub(super) me: usize,
    pub(super) token: String,
    pub(super) rng: Rng,
    pub(super) shared: &'a Mutex<Shared>,
    pub(super) customers: Vec<Model>,
    pub(super) keyed: Vec<Keyed>,
    pub(super) used_keys: BTreeSet<String>,
    /// Every answer this tenant got, headers included, for the final cross-tenant check.
    pub(super) transcript: Vec<(String, String)>,
    pub(super) ops: BTreeMap<&'static str, usize>,
    pub(super) requests: usize,
}

impl Worker<'_> {
    async fn send(
        &mut self,
        what: &str,
        method: Method,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, String)],
    ) -> Reply {
        let mut request = self.app.request_as(method.clone(), path, &self.token);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let reply = send(request).await;
        assert!(
            reply.status < 500,
            "tenant {}: {what}: {method} {path} → {}: {}",
            self.me,
            reply.status,
            reply.text()
        );
        self.transcript
            .push((format!("{what}: {method} {path}"), reply.transcript()));
        self.requests += 1;
        reply
    }

    /// The very request of `keyed` again, with its key.
    async fn send_again(&mut self, what: &str, keyed: &Keyed) -> Reply {
        self.send(
            what,
            keyed.method.clone(),
            &keyed.path,
            keyed.body.as_ref(),
            &[("idempotency-key", keyed.key.clone())],
        )
        .await
    }

    fn secret(&self, s: &str) {
        self.shared.lock().expect("lock").secrets[self.me].insert(s.to_owned());
    }

    fn count(&mut self, op: &'static str) {
        *self.ops.entry(op).or_default() += 1;
    }

    fn what(&self, op: &str) -> String {
        format!(
            "tenant {} ({}/{}) {op}",
            self.me,
            ORGS[self.me / 2],
            MODES[self.me % 2]
        )
    }

    /// The customer as answered must be the model's, ETag included.
    fn check_customer(&self, reply: &Reply, model: &Model, what: &str) {
        let body = reply.json();
        assert_eq!(body["id"], model.id.as_str(), "{what}");
        assert_eq!(body["status"], model.status, "{what}");
        assert_eq!(body["metadata"]["marker"], model.marker.as_str(), "{what}");
        assert_eq!(
            body["metadata"].get("note").and_then(Value::as_str),
            model.note.as_deref(),
            "{what}"
        );
        assert_eq!(body["email"].as_str(), model.email.as_deref(), "{what}");
        assert_eq!(
            reply.header("etag"),
            Some(format!("\"{}\"", model.version).as_str()),
            "{what}: ETag"
        );
    }

    fn keyed_header(&mut self) -> Option<String> {
        self.rng
            .chance(50)
            .then(|| format!("iso-{}-{}", self.me, self.rng.hex()))
    }

    fn remember(
        &mut self,
        key: Option<String>,
        method: Method,
        path: &str,
        body: Option<Value>,
        reply: &Reply,
    ) {
        if let Some(key) = key {
            self.used_keys.insert(key.clone());
            let keyed = Keyed {
                key,
                method,
                path: path.to_owned(),
                body,
                status: reply.status,
                text: reply.text(),
            };
            self.shared.lock().expect("lock").keyed[self.me].push(keyed.clone());
            self.keyed.push(keyed);
        }
    }

    fn key_headers(key: &Option<String>) -> Vec<(&'static str, String)> {
        key.iter().map(|k| ("idempotency-key", k.clone())).collect()
    }

    async fn create(&mut self, key: Option<String>) {
        let what = self.what("create");
        let n = self.customers.len();
        let marker = format!("mk-t{}-{n}-{}", self.me, self.rng.hex());
        let email = match self.rng.below(10) {
            0 => None,
            1 => Some(SHARED_EMAIL.to_owned()),
            _ => Some(format!(
                "iso-t{}-{n}-{}@example.com",
                self.me,
                self.rng.hex()
            )),
        };
        self.secret(&marker);
        if let Some(email) = email.as_ref().filter(|e| *e != SHARED_EMAIL) {
            self.secret(email);
        }
        let body = json!({
            "email": email,
            "name": {"first": "Iso", "last": format!("T{}", self.me)},
            "metadata": {"marker": marker, "tenant": self.me}
        });
        let reply = self
            .send(
                &what,
                Method::POST,
                "/v1/customers",
                Some(&body),
                &Self::key_headers(&key),
            )
            .await;
        assert_eq!(reply.status, 201, "{what}: {}", reply.text());
        assert!(
            reply.header("idempotent-replayed").is_none(),
            "{what}: a fresh key is not a replay"
        );
        let created = reply.json();
        let id = created["id"].as_str().expect("an id").to_owned();
        self.secret(&id);
        assert_eq!(
            reply.header("location"),
            Some(format!("/v1/customers/{id}").as_str()),
            "{what}"
        );
        let model = Model {
            id: id.clone(),
            email: body["email"].as_str().map(str::to_owned),
            marker: body["metadata"]["marker"]
                .as_str()
                .expect("a marker")
                .to_owned(),
            note: None,
            status: "pending",
            version: 1,
        };
        self.check_customer(&reply, &model, &what);
        self.customers.push(model);
        self.shared.lock().expect("lock").ids[self.me].push(id);
        self.remember(key, Method::POST, "/v1/customers", Some(body), &reply);
    }

    /// One random step: an operation on one of its customers, a list, a replay, or an attack on
    /// another tenant's ids, keys and cursors.
    pub(super) async fn step(&mut self) {
        let roll = self.rng.below(100);
        if self.customers.is_empty() || roll < 18 {
            self.count("create");
            let key = self.keyed_header();
            return self.create(key).await;
        }
        let i = self.rng.below(self.customers.len());
        let model = self.customers[i].clone();
        let path = format!("/v1/customers/{}", model.id);
        match roll {
            18..=29 => self.get_one(&model, &path).await,
            30..=44 => self.patch_one(i, &model, &path).await,
            45..=49 => self.delete_one(i, &path).await,
            50..=55 => self.activate_one(i, &model, &path).await,
            56..=63 => self.list_pages().await,
            64..=67 => self.list_by_email(&model).await,
            68..=74 => self.replay_one().await,
            75..=89 => {
                self.count("foreign id");
                self.probe_foreign().await;
            }
            90..=94 => {
                self.count("foreign key");
                self.reuse_foreign_key().await;
            }
            95..=96 => self.foreign_cursor().await,
            _ => self.errors(&model, &path).await,
        }
    }

    async fn get_one(&mut self, model: &Model, path: &str) {
        self.count("get");
        let what = self.what("get");
        let reply = self.send(&what, Method::GET, path, None, &[]).await;
        assert_eq!(reply.status, 200, "{what}");
        self.check_customer(&reply, model, &what);
    }

    async fn patch_one(&mut self, i: usize, model: &Model, path: &str) {
        self.count("patch");
        let what = self.what("patch");
        let note = format!("nt-t{}-{}", self.me, self.rng.hex());
        self.secret(&note);
        let mut body = json!({"metadata": {"note": note}});
        let mut new_email = None;
        if self.rng.chance(30) {
            let email = format!("iso-t{}-p-{}@example.com", self.me, self.rng.hex());
            self.secret(&email);
            body["email"] = json!(email);
            new_email = Some(email);
        }
        let key = self.keyed_header();
        let mut headers = Self::key_headers(&key);
        let stale = self.rng.chance(10);
        if stale {
            headers.push(("if-match", format!("\"{}\"", model.version + 7)));
        } else if self.rng.chance(30) {
            headers.push(("if-match", format!("\"{}\"", model.version)));
        }
        let reply = self
            .send(&what, Method::PATCH, path, Some(&body), &headers)
            .await;
        if stale {
            assert_eq!(reply.status, 412, "{what}: {}", reply.text());
        } else if model.status == "deleted" {
            assert_eq!(reply.status, 409, "{what}: {}", reply.text());
        } else {
            assert_eq!(reply.status, 200, "{what}: {}", reply.text());
            let m = &mut self.customers[i];
            m.note = Some(note);
            if new_email.is_some() {
                m.email = new_email;
            }
            m.version += 1;
            let m = m.clone();
            self.check_customer(&reply, &m, &what);
        }
        self.remember(key, Method::PATCH, path, Some(body), &reply);
    }

    async fn delete_one(&mut self, i: usize, path: &str) {
        self.count("delete");
        let what = self.what("delete");
        let key = self.keyed_header();
        let reply = self
            .send(&what, Method::DELETE, path, None, &Self::key_headers(&key))
            .await;
        assert_eq!(reply.status, 200, "{what}: {}", reply.text());
        let m = &mut self.customers[i];
        if m.status != "deleted" {
            m.status = "deleted";
            m.version += 1;
        }
        let m = m.clone();
        self.check_customer(&reply, &m, &what);
        self.remember(key, Method::DELETE, path, None, &reply);
    }

    async fn activate_one(&mut self, i: usize, model: &Model, path: &str) {
        self.count("activate");
        let what = self.what("activate");
        let key = self.keyed_header();
        let activate = format!("{path}/activate");
        let reply = self
            .send(
                &what,
                Method::POST,
                &activate,
                None,
                &Self::key_headers(&key),
            )
            .await;
        if model.status == "deleted" {
            assert_eq!(reply.status, 409, "{what}: {}", reply.text());
        } else {
            assert_eq!(reply.status, 200, "{what}: {}", reply.text());
            let m = &mut self.customers[i];
            if m.status == "pending" {
                m.status = "active";
                m.version += 1;
            }
            let m = m.clone();
            self.check_customer(&reply, &m, &what);
        }
        self.remember(key, Method::POST, &activate, None, &reply);
    }

    async fn list_pages(&mut self) {
        self.count("list pages");
        let status = *self
            .rng
            .pick(&[None, Some("deleted"), Some("active"), Some("pending")])
            .expect("a filter");
        self.walk(status).await;
    }

    async fn list_by_email(&mut self, model: &Model) {
        self.count("list by email");
        let what = self.what("list by email");
        let email = model
            .email
            .clone()
            .unwrap_or_else(|| SHARED_EMAIL.to_owned());
        let query = format!(
            "/v1/customers?email={}",
            email.replace('@', "%40").replace('+', "%2B")
        );
        let reply = self.send(&what, Method::GET, &query, None, &[]).await;
        assert_eq!(reply.status, 200, "{what}");
        let mut expected: Vec<String> = self
            .customers
            .iter()
            .filter(|c| {
                c.status != "deleted"
                    && c.email.as_deref().map(str::to_lowercase) == Some(email.to_lowercase())
            })
            .map(|c| c.id.clone())
            .collect();
        expected.sort_by(|a, b| b.cmp(a));
        expected.truncate(50);
        let got: Vec<String> = reply.json()["data"]
            .as_array()
            .expect("data")
            .iter()
            .map(|c| c["id"].as_str().expect("an id").to_owned())
            .collect();
        assert_eq!(got, expected, "{what}");
    }

    async fn replay_one(&mut self) {
        self.count("replay");
        let Some(keyed) = self.rng.pick(&self.keyed).cloned() else {
            return;
        };
        let what = self.what("replay");
        let reply = self.send_again(&what, &keyed).await;
        assert_eq!(reply.status, keyed.status, "{what}");
        assert_eq!(
            reply.text(),
            keyed.text,
            "{what}: the stored body, byte for byte"
        );
        assert_eq!(reply.header("idempotent-replayed"), Some("true"), "{what}");
    }

    async fn foreign_cursor(&mut self) {
        self.count("foreign cursor");
        let other = self.other_tenant();
        let cursor = {
            let shared = self.shared.lock().expect("lock");
            self.rng.pick(&shared.cursors[other]).cloned()
        };
        if let Some(cursor) = cursor {
            let what = self.what("foreign cursor");
            let reply = self
                .send(
                    &what,
                    Method::GET,
                    &format!("/v1/customers?limit=2&cursor={cursor}"),
                    None,
                    &[],
                )
                .await;
            assert_eq!(reply.status, 400, "{what}: {}", reply.text());
            assert_eq!(reply.json()["error"]["code"], "invalid_cursor", "{what}");
        }
    }

    async fn errors(&mut self, model: &Model, path: &str) {
        self.count("errors");
        let what = self.what("errors");
        let reply = self
            .send(
                &what,
                Method::GET,
                &format!("/v1/customers/{MISSING_ID}"),
                None,
                &[],
            )
            .await;
        assert_eq!(reply.status, 404, "{what}");
        let reply = self
            .send(
                &what,
                Method::PATCH,
                path,
                Some(&json!({"email": "not an email"})),
                &[],
            )
            .await;
        if model.status == "deleted" {
            assert!(
                matches!(reply.status, 400 | 409),
                "{what}: {}",
                reply.text()
            );
        } else {
            assert_eq!(reply.status, 400, "{what}: {}", reply.text());
        }
        let reply = self
            .send(
                &what,
                Method::POST,
                "/v1/customers",
                Some(&json!({"org": ORGS[1 - self.me / 2]})),
                &[],
            )
            .await;
        assert_eq!(reply.status, 400, "{what}: {}", reply.text());
    }

    fn other_tenant(&mut self) -> usize {
        (self.me + 1 + self.rng.below(3)) % 4
    }

    /// Pages through the list; the ids must be exactly the model's, newest first.
    pub(super) async fn walk(&mut self, status: Option<&'static str>) {
        let what = self.what(&format!("list status={status:?}"));
        let limit = 1 + self.rng.below(7);
        let mut query = format!("limit={limit}");
        if let Some(s) = status {
            query.push_str(&format!("&status={s}"));
        }
        let mut got = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let q = match &cursor {
                Some(c) => format!("/v1/customers?{query}&cursor={c}"),
                None => format!("/v1/customers?{query}"),
            };
            let reply = self.send(&what, Method::GET, &q, None, &[]).await;
            assert_eq!(reply.status, 200, "{what}: {}", reply.text());
            let page = reply.json();
            for c in page["data"].as_array().expect("data") {
                got.push(c["id"].as_str().expect("an id").to_owned());
            }
            match page["nextCursor"].as_str() {
                Some(next) => {
                    self.shared.lock().expect("lock").cursors[self.me].push(next.to_owned());
                    cursor = Some(next.to_owned());
                }
                None => break,
            }
            assert!(
                got.len() <= self.customers.len(),
                "{what}: more customers than were made"
            );
        }
        let mut expected: Vec<String> = self
            .customers
            .iter()
            .filter(|c| match status {
                None => c.status != "deleted",
                Some(s) => c.status == s,
            })
            .map(|c| c.id.clone())
            .collect();
        expected.sort_by(|a, b| b.cmp(a));
        assert_eq!(got, expected, "{what}");
    }

    /// Another tenant's id is a 404 identical to a missing id's, on every route.
    async fn probe_foreign(&mut self) {
        let other = self.other_tenant();
        let id = {
            let shared = self.shared.lock().expect("lock");
            self.rng.pick(&shared.ids[other]).cloned()
        };
        let Some(id) = id else { return };
        let what = self.what(&format!("foreign id of tenant {other}"));
        let body = json!({"metadata": {"note": "stolen"}});
        let (method, suffix, body) = match self.rng.below(4) {
            0 => (Method::GET, "", None),
            1 => (Method::PATCH, "", Some(&body)),
            2 => (Method::DELETE, "", None),
            _ => (Method::POST, "/activate", None),
        };
        let mut headers = Vec::new();
        if self.rng.chance(30) {
            headers.push(("if-match", "*".to_owned()));
        }
        let theirs = self
            .send(
                &what,
                method.clone(),
                &format!("/v1/customers/{id}{suffix}"),
                body,
                &headers,
            )
            .await;
        let missing = self
            .send(
                &what,
                method.clone(),
                &format!("/v1/customers/{MISSING_ID}{suffix}"),
                body,
                &headers,
            )
            .await;
        assert_eq!(theirs.status, 404, "{what}: {method}: {}", theirs.text());
        assert_eq!(
            theirs.error_shape(),
            missing.error_shape(),
            "{what}: {method}"
        );
        assert!(
            theirs.header("etag").is_none() && theirs.header("location").is_none(),
            "{what}"
        );
    }

    /// Keys are per tenant: another tenant's key is free here, never replayed nor refused as
    /// reused.
    async fn reuse_foreign_key(&mut self) {
        let other = self.other_tenant();
        let keyed = {
            let shared = self.shared.lock().expect("lock");
            self.rng.pick(&shared.keyed[other]).cloned()
        };
        // A key this tenant already used is its own now; reusing it again is a replay.
        let Some(keyed) = keyed.filter(|k| !self.used_keys.contains(&k.key)) else {
            return;
        };
        let what = self.what(&format!("key of tenant {other}"));
        if keyed.path == "/v1/customers" {
            // The same key with this tenant's own body: a fresh create.
            return self.create(Some(keyed.key)).await;
        }
        // The very same request: the path names their customer, which does not exist here.
        let reply = self.send_again(&what, &keyed).await;
        assert_eq!(reply.status, 404, "{what}: {}", reply.text());
        assert!(reply.header("idempotent-replayed").is_none(), "{what}");
        assert_ne!(reply.text(), keyed.text, "{what}");
        self.remember(
            Some(keyed.key),
            keyed.method,
            &keyed.path,
            keyed.body,
            &reply,
        );
    }
}
