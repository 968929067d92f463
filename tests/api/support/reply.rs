//! [`Reply`]: a response read to the end, so that answers can be compared byte for byte and
//! looked at more than once.

use reqwest::header::HeaderMap;
use reqwest::{RequestBuilder, Response};
use serde_json::Value;

use super::assertions::check_error;

#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

/// Sends the request and reads the whole answer; panics if there is none.
pub async fn send(request: RequestBuilder) -> Reply {
    Reply::of(request.send().await.expect("request sent")).await
}

/// Sends the request and reads the whole answer, if there is one (a server killed mid-answer
/// leaves none, or one without its body).
pub async fn try_send(request: RequestBuilder) -> Result<Reply, reqwest::Error> {
    Reply::read(request.send().await?).await
}

impl Reply {
    /// Fallible: a server killed mid-answer leaves a response without its body.
    pub async fn read(response: Response) -> Result<Self, reqwest::Error> {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.bytes().await?.to_vec();
        Ok(Reply {
            status,
            headers,
            body,
        })
    }

    pub async fn of(response: Response) -> Self {
        Self::read(response).await.expect("a body")
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Whether it carries `Idempotent-Replayed: true`.
    pub fn replayed(&self) -> bool {
        self.header("idempotent-replayed") == Some("true")
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    /// The `id` of the customer in the body.
    pub fn id(&self) -> String {
        self.json()["id"]
            .as_str()
            .unwrap_or_else(|| panic!("no id in {}", self.text()))
            .to_owned()
    }

    /// The version in the strong ETag `"<version>"`.
    pub fn version(&self) -> Option<i64> {
        self.header("etag")?
            .strip_prefix('"')?
            .strip_suffix('"')?
            .parse()
            .ok()
    }

    pub fn error_code(&self) -> Option<String> {
        let body: Value = serde_json::from_slice(&self.body).ok()?;
        body["error"]["code"].as_str().map(str::to_owned)
    }

    /// Checks the error envelope (see [`check_error`]); returns the `error` object.
    pub fn error(&self, status: u16, code: &str) -> Value {
        check_error(self.status, &self.headers, &self.text(), status, code)
    }

    /// The error object without its request id, to compare two answers.
    pub fn error_shape(&self) -> Value {
        let mut error = self.json()["error"].clone();
        error.as_object_mut().map(|o| o.remove("requestId"));
        error
    }

    /// The status, every header and the body, as one text.
    pub fn transcript(&self) -> String {
        let mut record = format!("{}\n", self.status);
        for (name, value) in &self.headers {
            record.push_str(&format!(
                "{name}: {}\n",
                String::from_utf8_lossy(value.as_bytes())
            ));
        }
        record.push_str(&self.text());
        record
    }

    /// A refusal for want of the database: 503 `service_unavailable` in the JSON envelope, with
    /// a `Retry-After` of at least a second and an `X-Request-Id`.
    pub fn check_unavailable(&self) -> Result<(), String> {
        if self.status != 503 {
            return Err(format!(
                "expected 503, got {}: {}",
                self.status,
                self.text()
            ));
        }
        if self.error_code().as_deref() != Some("service_unavailable") {
            return Err(format!("503 without service_unavailable: {}", self.text()));
        }
        let retry_after = self.header("retry-after").map(str::trim);
        if !retry_after.is_some_and(|v| v.parse::<u64>().is_ok_and(|s| s >= 1)) {
            return Err(format!(
                "503 without a usable Retry-After (got {retry_after:?})"
            ));
        }
        if !self.headers.contains_key("x-request-id") {
            return Err("503 without X-Request-Id".into());
        }
        Ok(())
    }
}
