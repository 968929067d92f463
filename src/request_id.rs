//! The id of the request being served, available anywhere below the request middleware (the
//! error envelope quotes it, events record it).

tokio::task_local! {
    static REQUEST_ID: String;
}

/// The id of the request being served, or a placeholder outside of one.
pub fn current() -> String {
    REQUEST_ID
        .try_with(Clone::clone)
        .unwrap_or_else(|_| "req_unknown".to_owned())
}

/// Runs `work` as the request `id`.
pub async fn scope<F: std::future::Future>(id: String, work: F) -> F::Output {
    REQUEST_ID.scope(id, work).await
}
