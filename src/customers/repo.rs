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
//! Writes go through two statements, [`insert`] and [`update`]; each also stores the reply of a
//! keyed request in the same statement (`idempotency::query_saving!`).

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgExecutor, Postgres, QueryBuilder};

use super::domain::{CustomerId, CustomerStatus, CustomerType, Version};
use super::model::Customer;
use crate::idempotency::{query_claiming, query_saving, Claim, ReadWithClaim, SaveReply};
use crate::tenant::Tenant;

pub async fn find(
    db: impl PgExecutor<'_>,
    tenant: &Tenant,
    id: &CustomerId,
) -> Result<Option<Customer>, sqlx::Error> {
    sqlx::query_as!(
        Customer,
        r#"SELECT id AS "id: CustomerId", type AS "kind: CustomerType",
                  status AS "status: CustomerStatus", email, phone, first_name, last_name,
                  policy, metadata, version AS "version: Version", created_at, updated_at
             FROM customers
            WHERE org_id = $1 AND mode = $2
              AND (SELECT set_config('app.tenant', $2 || '/' || $1, true)) IS NOT NULL
              AND id = $3"#,
        tenant.org,
        tenant.mode.as_str(),
        id.as_str()
    )
    .fetch_optional(db)
    .await
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
                      c.updated_at AS "updated_at?"
                 FROM (SELECT 1) AS one
                 LEFT JOIN customers c ON c.org_id = $1 AND c.mode = $2 AND c.id = $7
                WHERE (SELECT set_config('app.tenant', $2 || '/' || $1, true)) IS NOT NULL"#,
            self.0.as_str()
        )
        .fetch_one(conn)
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
            }),
            _ => None,
        };
        Ok((row.claimed, customer))
    }
}

/// What a write statement did.
pub struct Written {
    /// The customer was written (a compare-and-set can lose).
    pub written: bool,
    /// The reply was stored under the request's idempotency key.
    pub saved: bool,
}

/// Inserts a new customer, storing the reply of a keyed request in the same statement.
pub async fn insert(
    conn: &mut PgConnection,
    save: &SaveReply<'_>,
    new: &Customer,
) -> Result<Written, sqlx::Error> {
    let row = query_saving!(
        save,
        "written AS (
             INSERT INTO customers (org_id, mode, id, type, status, email, phone, first_name,
                                    last_name, policy, metadata, version, created_at, updated_at)
             SELECT $1, $2, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19
              WHERE set_config('app.tenant', $2 || '/' || $1, true) IS NOT NULL
             RETURNING 1
         )",
        r#"SELECT EXISTS (SELECT 1 FROM written) AS "written!",
                  EXISTS (SELECT 1 FROM saved) AS "saved!""#,
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
    .await?;
    Ok(Written {
        written: row.written,
        saved: row.saved,
    })
}

/// Compare-and-set: writes `next` only if the customer is still at version `expected` (and not
/// deleted: a deleted customer never changes), storing the reply of a keyed request in the
/// same statement. Not written means someone else changed it in between; the caller reads
/// again.
pub async fn update(
    conn: &mut PgConnection,
    save: &SaveReply<'_>,
    expected: Version,
    next: &Customer,
) -> Result<Written, sqlx::Error> {
    let row = query_saving!(
        save,
        "written AS (
             UPDATE customers
                SET status = $10, email = $11, phone = $12, first_name = $13, last_name = $14,
                    policy = $15, metadata = $16, version = $17, updated_at = $18
              WHERE org_id = $1 AND mode = $2
                AND (SELECT set_config('app.tenant', $2 || '/' || $1, true)) IS NOT NULL
                AND id = $8 AND version = $9
                AND status <> 'deleted'
             RETURNING 1
         )",
        r#"SELECT EXISTS (SELECT 1 FROM written) AS "written!",
                  EXISTS (SELECT 1 FROM saved) AS "saved!""#,
        next.id.as_str(),
        expected.get(),
        next.status.as_str(),
        next.email,
        next.phone,
        next.first_name,
        next.last_name,
        next.policy,
        next.metadata,
        next.version.get(),
        next.updated_at
    )
    .fetch_one(conn)
    .await?;
    Ok(Written {
        written: row.written,
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
) -> Result<Vec<Customer>, sqlx::Error> {
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
    q.build_query_as::<Customer>().fetch_all(db).await
}
