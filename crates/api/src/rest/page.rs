//! The one list shape (SPEC §5): `?limit=&cursor=` in, `{"items": [...],
//! "next_cursor": "…" | null}` out. The paging rules live in
//! [`gatehouse_core::page`]; this is their HTTP face.

pub use gatehouse_core::page::Order;
use gatehouse_core::page::{Page, PageRequest};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::ApiError;

/// `limit` and `cursor`, for lists with no other parameter. Lists with
/// filters carry the same two fields in their own query type (serde cannot
/// flatten a query and still refuse unknown parameters).
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    /// Items in the page: 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u64>,
    /// The `next_cursor` of the previous page (leave out for the first).
    #[param(pattern = "^[0-9]{1,19}$")]
    pub cursor: Option<String>,
}

impl PageQuery {
    pub fn request(self) -> Result<PageRequest, ApiError> {
        request(self.limit, self.cursor)
    }
}

/// `limit` and `cursor` for the lists ordered by text (addresses, key IDs,
/// grants' subjects), whose cursors are text too.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct TextPageQuery {
    /// Items in the page: 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u64>,
    /// The `next_cursor` of the previous page (leave out for the first).
    #[param(pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]{1,512}$")]
    pub cursor: Option<String>,
}

impl TextPageQuery {
    pub fn request(self) -> Result<PageRequest, ApiError> {
        request(self.limit, self.cursor)
    }
}

/// A checked page request from a query's `limit` and `cursor`.
pub fn request(limit: Option<u64>, cursor: Option<String>) -> Result<PageRequest, ApiError> {
    PageRequest::new(limit, cursor).map_err(ApiError)
}

/// A page of a list.
#[derive(Serialize, ToSchema)]
pub struct List<T> {
    pub items: Vec<T>,
    /// Pass as `cursor` to read the next page; `null` on the last.
    pub next_cursor: Option<String>,
}

impl<T> List<T> {
    /// The page with each item turned into its answer shape.
    pub fn of<U: Into<T>>(page: Page<U>) -> Self {
        List {
            items: page.items.into_iter().map(Into::into).collect(),
            next_cursor: page.next_cursor,
        }
    }
}

impl<T> List<T> {
    /// A page of a whole list read from core, in `order` of `key` (unique).
    pub fn paged<U, K>(
        items: Vec<U>,
        request: &PageRequest,
        order: Order,
        key: impl Fn(&U) -> K,
    ) -> Result<Self, ApiError>
    where
        U: Into<T>,
        K: Ord + std::fmt::Display + std::str::FromStr,
    {
        Ok(List::of(
            Page::of(items, request, order, key).map_err(ApiError)?,
        ))
    }
}
