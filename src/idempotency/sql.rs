//! The two statements that write an idempotency key, each written once, as the start of a
//! `sqlx::query!` that other statements may continue: a customer read continues the claim (one
//! round trip for both), a customer write continues into the save. sqlx checks each statement
//! as one literal against the database, so these are macros that emit the whole `query!` with
//! the caller's SQL appended; a test below fails if the text of either appears anywhere else.
//!
//! Like every statement of this service, both bind their tenant for the row-level security
//! policies before they touch a row (see `customers::repo`).

/// `sqlx::query!` of a statement that first claims an idempotency key, in the CTE `claim`
/// (one row when this transaction now owns the key), then goes on with `$rest`.
///
/// Parameters `$1`–`$6` are the claim's (`$1` org and `$2` mode are the tenant, which the rest
/// may use too); the rest's own start at `$7`.
///
/// An insert that meets the uncommitted row of a request still running blocks until that
/// request's transaction ends, then sees its committed row, so a duplicate never runs twice; an
/// expired row is taken over. The wait is bounded by `lock_timeout`, set in the same statement
/// before the insert (the WHERE of the SELECT runs first) and set back to 0 in RETURNING, which
/// runs only for a claimed key and only after any wait: the request's own work is never cut off
/// by the bound meant for duplicates (the statement timeout still bounds it).
macro_rules! query_claiming {
    ($claim:expr, $rest:tt $(, $arg:expr)* $(,)?) => {
        sqlx::query!(
            "WITH claim AS (
                 INSERT INTO idempotency_keys (org_id, mode, key, fingerprint, expires_at)
                 SELECT $1, $2, $3, $4, now() + make_interval(secs => $5)
                  WHERE set_config('app.tenant', $2 || '/' || $1, true) IS NOT NULL
                    AND set_config('lock_timeout', $6, true) IS NOT NULL
                 ON CONFLICT (org_id, mode, key) DO UPDATE
                    SET fingerprint = EXCLUDED.fingerprint, status_code = NULL, body = NULL,
                        location = NULL, etag = NULL, created_at = now(),
                        expires_at = EXCLUDED.expires_at
                  WHERE idempotency_keys.expires_at <= now()
                 RETURNING set_config('lock_timeout', '0', true) IS NOT NULL AS claimed
             ) " + $rest,
            $claim.org(),
            $claim.mode(),
            $claim.key(),
            $claim.fingerprint(),
            $claim.retention_secs(),
            $claim.wait_ms()
            $(, $arg)*
        )
    };
}

/// `sqlx::query!` of a write statement whose CTEs (`[$ctes]`: string literals joined by `+`,
/// which must define one CTE named `written`) are followed by the CTE `saved`: it stores the
/// request's reply under its key, in the same statement (so the same transaction) as the write,
/// and only when `written` wrote a row. A write without a key passes a NULL key, which matches
/// no row: nothing is saved. Then comes `$select`.
///
/// Parameters `$1`–`$7` are the save's (`$1` org and `$2` mode are the tenant, which the rest
/// may use too); the statement's own start at `$8`.
macro_rules! query_saving {
    ($save:expr, [$($ctes:tt)+], $select:tt $(, $arg:expr)* $(,)?) => {
        sqlx::query!(
            "WITH " + $($ctes)+ + ",
             saved AS (
                 UPDATE idempotency_keys
                    SET status_code = $4, body = $5, location = $6, etag = $7
                  WHERE org_id = $1 AND mode = $2
                    AND (SELECT set_config('app.tenant', $2 || '/' || $1, true)) IS NOT NULL
                    AND key = $3
                    AND EXISTS (SELECT 1 FROM written)
                 RETURNING 1
             ) " + $select,
            $save.org(),
            $save.mode(),
            $save.key(),
            $save.status(),
            $save.body(),
            $save.location(),
            $save.etag()
            $(, $arg)*
        )
    };
}

pub(crate) use {query_claiming, query_saving};

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// Every `.rs` file under `dir`, with its text.
    fn sources(dir: &Path, out: &mut Vec<(String, String)>) {
        for entry in std::fs::read_dir(dir).expect("src/ is readable") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                sources(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).expect("a source file");
                out.push((path.display().to_string(), text));
            }
        }
    }

    /// The claim and the save exist once, here: a second copy (which could drift from this
    /// one) or none at all fails.
    #[test]
    fn the_claim_and_the_save_are_written_once() {
        let mut files = Vec::new();
        sources(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
            &mut files,
        );
        for statement in [
            "INSERT INTO idempotency_keys",
            "UPDATE idempotency_keys",
            "ON CONFLICT (org_id, mode, key)",
        ] {
            let found: Vec<&str> = files
                .iter()
                .flat_map(|(path, text)| {
                    text.lines()
                        .filter(|line| line.trim_start().starts_with(statement))
                        .map(move |_| path.as_str())
                })
                .collect();
            assert_eq!(found.len(), 1, "{statement:?} is written in {found:?}");
            assert!(found[0].ends_with("idempotency/sql.rs"), "{found:?}");
        }
    }
}
