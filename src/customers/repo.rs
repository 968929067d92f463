//! All SQL about customers. Every statement is scoped by tenant (org_id, mode), and also binds
//! that tenant for the row-level security policies of migration 3, in the statement itself:
//!
//! ```sql
//! AND (SELECT set_config('app.tenant', $2 || '/' || $1, true)) IS NOT NULL
//! ```
//!
//! The condition refers to no row, so PostgreSQL evaluates it once, as a gate ("One-Time
//! Filter") before the scan below it starts: the policy, checked on every row, always sees the
//! binding. `is_local` ends it with the statement's transaction, so it never outlives the
//! request. No extra round trip; and a statement that forgot it finds nothing.
//!
//! Writes go through two statements, [`insert`] and [`update`]; each also records the change's
//! event and stores the reply of a keyed request, in the same statement.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgExecutor, Postgres, QueryBuilder};
use tracing::Instrument;

use super::domain::{CustomerStatus, CustomerType, Version, Xmin};
use super::json_text::StoredJson;
use super::model::{Customer, ListedCustomer};
use super::rows;
use crate::events::EventRecord;
use crate::idempotency::{query_claiming, query_saving, Claim, ReadWithClaim, SaveReply};
use crate::ids::CustomerId;
use crate::tenant::Tenant;

/// The SELECT of one customer by id, with its JSON members either decoded (`"policy, metadata"`
/// into a [`Customer`]) or as stored text (into a [`ListedCustomer`]).
macro_rules! select_by_id {
    ($out:ty, $json_members:tt, $db:expr, $tenant:expr, $id:expr) => {
        sqlx::query_as!(
            $out,
            r#"SELECT id AS "id: CustomerId", type AS "kind: CustomerType",
                      status AS "status: CustomerStatus", email, phone, first_name, last_name, "#
                + $json_members
                + r#", version AS "version: Version", created_at, updated_at,
                      xmin::text::bigint AS "xmin: Xmin"
                 FROM customers
                WHERE org_id = $1 AND mode = $2
                  AND (SELECT set_config('app.tenant', $2 || '/' || $1, true)) IS NOT NULL
                  AND id = $3"#,
            $tenant.org,
            $tenant.mode.as_str(),
            $id.as_str()
        )
        .fetch_optional($db)
        .instrument(crate::statement_span!("customers.find"))
        .await
    };
}

/// The customer, to work with (merge, validate, compare).
pub async fn find(
    db: impl PgExecutor<'_>,
    tenant: &Tenant,
    id: &CustomerId,
) -> Result<Option<Customer>, sqlx::Error> {
    select_by_id!(Customer, "policy, metadata", db, tenant, id)
}

/// The customer, to show it (GET): its policy and metadata passed through as stored, not decoded
/// and encoded again.
pub async fn find_to_show(
    db: impl PgExecutor<'_>,
    tenant: &Tenant,
    id: &CustomerId,
) -> Result<Option<ListedCustomer>, sqlx::Error> {
    select_by_id!(
        ListedCustomer,
        r#"policy AS "policy: StoredJson", metadata AS "metadata: StoredJson""#,
        db,
        tenant,
        id
    )
}

/// [`find_many_to_show`]'s statement. One probe of the primary key per id (`LATERAL … OFFSET 0`
/// keeps each probe a subquery of its own, equal on all three key columns): `id = ANY($3)` was
/// planned, without statistics, as a scan of the tenant's whole key range with the ids as a
/// filter (tests/api/coalesce.rs checks the plan).
pub(super) const FIND_MANY_TO_SHOW: &str = "\
    SELECT c.* FROM unnest($3::text[]) AS wanted(id) \
      CROSS JOIN LATERAL ( \
        SELECT id, type AS kind, status, email, phone, first_name, last_name, policy, metadata, \
               version, created_at, updated_at, xmin::text::bigint AS xmin \
          FROM customers \
         WHERE org_id = $1 AND mode = $2 AND id = wanted.id \
        OFFSET 0) AS c \
     WHERE (SELECT set_config('app.tenant', $2 || '/' || $1, true)) IS NOT NULL";

/// Several customers of one tenant, to show them (a batch of coalesced GETs,
/// [`super::coalesce`]): those of `ids` that exist, in any order (one row per id asked, so an
/// id asked twice comes twice). One tenant per statement, bound as in every statement here,
/// before any row is read.
pub async fn find_many_to_show(
    db: impl PgExecutor<'_>,
    tenant: &Tenant,
    ids: &[&str],
) -> Result<Vec<ListedCustomer>, sqlx::Error> {
    let rows = sqlx::query(FIND_MANY_TO_SHOW)
        .bind(&tenant.org)
        .bind(tenant.mode.as_str())
        .bind(ids)
        .fetch_all(db)
        .instrument(crate::statement_span!("customers.find_many"))
        .await?;
    rows::customers(&rows)
}

/// Locks the customer's row until the transaction ends: used when optimistic writes keep
/// losing to concurrent writers, so that a write always makes progress.
pub async fn lock(
    db: impl PgExecutor<'_>,
    tenant: &Tenant,
    id: &CustomerId,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        r#"SELECT 1 AS "locked!"
             FROM customers
            WHERE org_id = $1 AND mode = $2
              AND (SELECT set_config('app.tenant', $2 || '/' || $1, true)) IS NOT NULL
              AND id = $3
              FOR UPDATE"#,
        tenant.org,
        tenant.mode.as_str(),
        id.as_str()
    )
    .fetch_optional(db)
    .instrument(crate::statement_span!("customers.lock"))
    .await?;
    Ok(())
}

/// [`find`] in the statement that claims a write's idempotency key: one round trip for both.
pub struct FindClaiming<'a>(pub &'a CustomerId);

impl ReadWithClaim for FindClaiming<'_> {
    type Output = Option<Customer>;

    async fn read_with_claim(
        self,
        conn: &mut PgConnection,
        claim: &Claim,
    ) -> Result<(bool, Option<Customer>), sqlx::Error> {
        let row = query_claiming!(
            claim,
            r#"SELECT EXISTS (SELECT 1 FROM claim) AS "claimed!",
                      c.id AS "id?: CustomerId", c.type AS "kind?: CustomerType",
                      c.status AS "status?: CustomerStatus", c.email, c.phone, c.first_name,
                      c.last_name, c.policy, c.metadata AS "metadata?",
                      c.version AS "version?: Version", c.created_at AS "created_at?",
                      c.updated_at AS "updated_at?", c.xmin::text::bigint AS "xmin?: Xmin"
                 FROM (SELECT 1) AS one
                 LEFT JOIN customers c ON c.org_id = $1 AND c.mode = $2 AND c.id = $7
                WHERE (SELECT set_config('app.tenant', $2 || '/' || $1, true)) IS NOT NULL"#,
            self.0.as_str()
        )
        .fetch_one(conn)
        .instrument(crate::statement_span!("customers.claim_and_find"))
        .await?;
        let customer = match (
            row.id,
            row.kind,
            row.status,
            row.metadata,
            row.version,
            row.created_at,
            row.updated_at,
        ) {
            (
                Some(id),
                Some(kind),
                Some(status),
                Some(metadata),
                Some(version),
                Some(created_at),
                Some(updated_at),
            ) => Some(Customer {
                id,
                kind,
                status,
                email: row.email,
                phone: row.phone,
                first_name: row.first_name,
                last_name: row.last_name,
                policy: row.policy,
                metadata,
                version,
                created_at,
                updated_at,
                xmin: row.xmin,
            }),
            _ => None,
        };
        Ok((row.claimed, customer))
    }
}

/// `idempotency::query_saving!` of a customer write: the CTE `written` (`$mutation`, which
/// must return the row's `id`, `version`, `updated_at`, `event_xid` and `xmin` as a bigint —
/// the transaction that wrote it, see [`Xmin`]), then the CTE `event`,
/// which records the change's event in the same statement, then the save of the reply.
///
/// Parameters: `$1`–`$7` the save's (`$1`, `$2` the tenant), `$8` the event's id, `$9` its
/// type, `$10` its JSON (NULL only where event recording is switched off for a benchmark),
/// `$11` the request's trace context (NULL unless traces are exported); the mutation's own
/// start at `$12`.
macro_rules! query_writing {
    ($save:expr, $event:expr, $mutation:tt $(, $arg:expr)* $(,)?) => {
        query_saving!(
            $save,
            [
                "written AS (" + $mutation + "),
                 event AS (
                     INSERT INTO customer_events (org_id, mode, customer_id, version, id, type,
                                                  occurred_at, feed_xid, body, traceparent)
                     SELECT $1, $2, w.id, w.version, $8, $9, w.updated_at, w.event_xid,
                            $10::text::json, $11
                       FROM written w
                      WHERE $10::text IS NOT NULL
                        AND set_config('app.tenant', $2 || '/' || $1, true) IS NOT NULL
                 )"
            ],
            r#"SELECT (SELECT xmin FROM written) AS "xmin: Xmin",
                      EXISTS (SELECT 1 FROM saved) AS "saved!""#,
            $event.id(),
            $event.kind(),
            $event.body(),
            $event.traceparent()
            $(, $arg)*
        )
    };
}

/// What a write statement did.
pub struct Written {
    /// The transaction that wrote the customer; `None`: not written (a compare-and-set lost).
    pub xmin: Option<Xmin>,
    /// The reply was stored under the request's idempotency key.
    pub saved: bool,
}

/// Inserts a new customer with the event of its creation, storing the reply of a keyed
/// request in the same statement.
pub async fn insert(
    conn: &mut PgConnection,
    save: &SaveReply<'_>,
    event: &EventRecord<'_>,
    new: &Customer,
) -> Result<Written, sqlx::Error> {
    let row = query_writing!(
        save,
        event,
        "INSERT INTO customers (org_id, mode, id, type, status, email, phone, first_name,
                                last_name, policy, metadata, version, created_at, updated_at,
                                event_xid)
         SELECT $1, $2, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23,
                pg_current_xact_id()::text::bigint
          WHERE set_config('app.tenant', $2 || '/' || $1, true) IS NOT NULL
         RETURNING id, version, updated_at, event_xid, xmin::text::bigint AS xmin",
        new.id.as_str(),
        new.kind.as_str(),
        new.status.as_str(),
        new.email,
        new.phone,
        new.first_name,
        new.last_name,
        new.policy,
        new.metadata,
        new.version.get(),
        new.created_at,
        new.updated_at
    )
    .fetch_one(conn)
    .instrument(crate::statement_span!("customers.insert"))
    .await?;
    Ok(Written {
        xmin: row.xmin,
        saved: row.saved,
    })
}

/// Compare-and-set: writes `next` only if the customer's row is still the one `expected` names
/// — the same version, written by the same transaction ([`Xmin`]), so a remembered guess of
/// the same number but other content never wins (the service never makes a next version of a
/// deleted customer, and the version proves it has not been deleted since it was read), with
/// the change's event and the reply of a keyed request in the same statement. The statement states no status condition: one would let it be planned
/// on the listing index of live customers (see migration 5). Not written means someone else changed it in between;
/// the caller reads again.
pub async fn update(
    conn: &mut PgConnection,
    save: &SaveReply<'_>,
    event: &EventRecord<'_>,
    expected: (Version, Xmin),
    next: &Customer,
) -> Result<Written, sqlx::Error> {
    let row = query_writing!(
        save,
        event,
        "UPDATE customers
            SET status = $14, email = $15, phone = $16, first_name = $17, last_name = $18,
                policy = $19, metadata = $20, version = $21, updated_at = $22,
                event_xid = GREATEST(pg_current_xact_id()::text::bigint, event_xid)
          WHERE org_id = $1 AND mode = $2
            AND (SELECT set_config('app.tenant', $2 || '/' || $1, true)) IS NOT NULL
            AND id = $12 AND version = $13 AND xmin::text::bigint = $23
         RETURNING id, version, updated_at, event_xid, xmin::text::bigint AS xmin",
        next.id.as_str(),
        expected.0.get(),
        next.status.as_str(),
        next.email,
        next.phone,
        next.first_name,
        next.last_name,
        next.policy,
        next.metadata,
        next.version.get(),
        next.updated_at,
        expected.1.get()
    )
    .fetch_one(conn)
    .instrument(crate::statement_span!("customers.update"))
    .await?;
    Ok(Written {
        xmin: row.xmin,
        saved: row.saved,
    })
}

/// The filters of a listing beyond the tenant.
#[derive(Debug, Default)]
pub struct ListFilter {
    pub status: Option<CustomerStatus>,
    pub kind: Option<CustomerType>,
    pub email: Option<String>,
}

/// One page, newest first, by keyset: strictly after `after` = (created_at, id) of the last
/// customer of the previous page. The WHERE clause is built from fixed fragments so that each
/// filter combination matches its index (the default listing uses the partial index on
/// `status <> 'deleted'`), and a page costs the same however deep it is.
pub async fn list(
    db: impl PgExecutor<'_>,
    tenant: &Tenant,
    filter: &ListFilter,
    after: Option<(DateTime<Utc>, &str)>,
    limit: i64,
) -> Result<Vec<ListedCustomer>, sqlx::Error> {
    let mut q: QueryBuilder<Postgres> = QueryBuilder::new(
        "SELECT id, type AS kind, status, email, phone, first_name, last_name, policy, metadata, \
                version, created_at, updated_at \
           FROM customers WHERE org_id = ",
    );
    q.push_bind(&tenant.org)
        .push(" AND mode = ")
        .push_bind(tenant.mode.as_str())
        .push(" AND (SELECT set_config('app.tenant', ")
        .push_bind(tenant.binding())
        .push(", true)) IS NOT NULL");
    match filter.status {
        Some(status) => q.push(" AND status = ").push_bind(status.as_str()),
        None => q.push(" AND status <> 'deleted'"),
    };
    if let Some(kind) = filter.kind {
        q.push(" AND type = ").push_bind(kind.as_str());
    }
    if let Some(email) = &filter.email {
        // email_lower, not lower(email): see migration 3 (leakproof conditions under RLS).
        q.push(" AND email_lower = lower(")
            .push_bind(email)
            .push(")");
    }
    if let Some((created_at, id)) = after {
        q.push(" AND (created_at, id) < (")
            .push_bind(created_at)
            .push(", ")
            .push_bind(id)
            .push(")");
    }
    q.push(" ORDER BY created_at DESC, id DESC LIMIT ")
        .push_bind(limit);
    let rows = q
        .build()
        .fetch_all(db)
        .instrument(crate::statement_span!("customers.list"))
        .await?;
    rows::customers(&rows)
}
