//! Customers decoded from the rows of the statements that list them (`repo::list`,
//! `repo::FIND_MANY_TO_SHOW`): by column position, with the columns' types checked once per
//! statement. sqlx's `FromRow` derive looked every column up by name in a hash map (82k
//! instructions of a list page of 50, docs/performance.md), and `Row::try_get` checks the
//! column's type again for every value (about as much again): the type is the statement's,
//! the same on every row.

use sqlx::postgres::PgRow;
use sqlx::{Column, Decode, Postgres, Row, Type, TypeInfo};

use super::domain::{CustomerStatus, CustomerType, Version, Xmin};
use super::model::Customer;
use crate::ids::CustomerId;

/// The columns, in this order; `xmin` only in some statements (`None` without it). A debug
/// build (the test suite) checks the names.
const COLUMNS: [&str; 13] = [
    "id",
    "kind",
    "status",
    "email",
    "phone",
    "first_name",
    "last_name",
    "policy",
    "metadata",
    "version",
    "created_at",
    "updated_at",
    "xmin",
];

/// The customers of `rows`, all from one statement.
pub fn customers<J>(rows: &[PgRow]) -> Result<Vec<Customer<J>>, sqlx::Error>
where
    J: for<'r> Decode<'r, Postgres> + Type<Postgres>,
{
    let Some(first) = rows.first() else {
        return Ok(Vec::new());
    };
    debug_assert!(
        first
            .columns()
            .iter()
            .map(Column::name)
            .eq(COLUMNS.iter().copied().take(first.len())),
        "the columns of a customer row"
    );
    check::<CustomerId>(first, 0)?;
    check::<CustomerType>(first, 1)?;
    check::<CustomerStatus>(first, 2)?;
    for text in 3..=6 {
        check::<String>(first, text)?;
    }
    check::<J>(first, 7)?;
    check::<J>(first, 8)?;
    check::<Version>(first, 9)?;
    check::<chrono::DateTime<chrono::Utc>>(first, 10)?;
    check::<chrono::DateTime<chrono::Utc>>(first, 11)?;
    let has_xmin = first.len() > 12;
    if has_xmin {
        check::<Xmin>(first, 12)?;
    }
    rows.iter()
        .map(|row| {
            Ok(Customer {
                id: row.try_get_unchecked(0)?,
                kind: row.try_get_unchecked(1)?,
                status: row.try_get_unchecked(2)?,
                email: row.try_get_unchecked(3)?,
                phone: row.try_get_unchecked(4)?,
                first_name: row.try_get_unchecked(5)?,
                last_name: row.try_get_unchecked(6)?,
                policy: row.try_get_unchecked(7)?,
                metadata: row.try_get_unchecked(8)?,
                version: row.try_get_unchecked(9)?,
                created_at: row.try_get_unchecked(10)?,
                updated_at: row.try_get_unchecked(11)?,
                xmin: if has_xmin {
                    row.try_get_unchecked(12)?
                } else {
                    None
                },
            })
        })
        .collect()
}

/// `Row::try_get`'s type check of column `index`, made once for the statement: the error it
/// gives for a value of a type `T` cannot decode.
fn check<T: Type<Postgres>>(row: &PgRow, index: usize) -> Result<(), sqlx::Error> {
    let ty = row.column(index).type_info();
    if ty.is_null() || T::compatible(ty) {
        return Ok(());
    }
    Err(sqlx::Error::ColumnDecode {
        index: format!("{index:?}"),
        source: sqlx::error::mismatched_types::<Postgres, T>(ty),
    })
}
