//! One way to page through any list (SPEC §5): `limit` items after a
//! `cursor`, in a stable order, never more than [`MAX_LIMIT`] at a time.
//!
//! A cursor is the sort key of the last item of the previous page, as text.
//! Clients treat it as opaque; it stays valid when items are added or removed
//! (a page resumes after the key, wherever it now is), so walking a list to its
//! end sees every item that existed throughout exactly once.
//!
//! Large collections (users, organizations, every API key, audit events,
//! request logs) are paged in storage with a range read that starts after the
//! cursor. Lists bounded by their owner (an organization's teams, a user's
//! keys and sessions, the catalogue) are read whole and paged here by
//! [`Page::of`].
//!
//! A leaf: imports nothing of this crate but the error type.

use std::fmt::Display;
use std::str::FromStr;

use crate::{Error, Result};

/// Items in a page when the client does not say.
pub const DEFAULT_LIMIT: usize = 50;
/// The most items a page holds, whatever the client asks.
pub const MAX_LIMIT: usize = 500;
/// Cursors are sort keys; none of ours is longer.
const MAX_CURSOR_LEN: usize = 512;

/// Which page: at most `limit` items after `after`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    pub limit: usize,
    /// The cursor of the previous page; `None` for the first.
    pub after: Option<String>,
}

impl Default for PageRequest {
    fn default() -> Self {
        PageRequest {
            limit: DEFAULT_LIMIT,
            after: None,
        }
    }
}

impl PageRequest {
    /// Checks a client's `limit` (1 to [`MAX_LIMIT`], default
    /// [`DEFAULT_LIMIT`]) and `cursor` (non-empty, printable, short).
    pub fn new(limit: Option<u64>, cursor: Option<String>) -> Result<Self> {
        let limit = match limit {
            None => DEFAULT_LIMIT,
            Some(n) if (1..=MAX_LIMIT as u64).contains(&n) => n as usize,
            Some(_) => {
                return Err(Error::invalid_input(format!(
                    "limit must be 1 to {MAX_LIMIT}"
                )));
            }
        };
        if let Some(c) = &cursor
            && (c.is_empty() || c.len() > MAX_CURSOR_LEN || c.chars().any(|c| c.is_control()))
        {
            return Err(bad_cursor());
        }
        Ok(PageRequest {
            limit,
            after: cursor,
        })
    }

    /// The first page of `limit` items.
    pub fn first(limit: usize) -> Self {
        PageRequest {
            limit: limit.clamp(1, MAX_LIMIT),
            after: None,
        }
    }

    /// The cursor read as the list's sort key.
    pub fn after_key<K: FromStr>(&self) -> Result<Option<K>> {
        self.after
            .as_deref()
            .map(|c| c.parse().map_err(|_| bad_cursor()))
            .transpose()
    }
}

fn bad_cursor() -> Error {
    Error::invalid_input("cursor is not one this list gave: pass next_cursor unchanged")
}

/// One page of a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `cursor` for the next page; `None` on the last.
    pub next_cursor: Option<String>,
}

/// The order of a list by its sort key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    Ascending,
    /// Newest first, for lists keyed by (time-ordered) IDs.
    Descending,
}

impl<T> Page<T> {
    /// Pages a whole list by `key`, which must be unique within the list.
    pub fn of<K>(
        mut items: Vec<T>,
        request: &PageRequest,
        order: Order,
        key: impl Fn(&T) -> K,
    ) -> Result<Self>
    where
        K: Ord + Display + FromStr,
    {
        let after: Option<K> = request.after_key()?;
        items.sort_by(|a, b| {
            let ordering = key(a).cmp(&key(b));
            match order {
                Order::Ascending => ordering,
                Order::Descending => ordering.reverse(),
            }
        });
        let start = match &after {
            None => 0,
            Some(after) => items.partition_point(|item| match order {
                Order::Ascending => key(item) <= *after,
                Order::Descending => key(item) >= *after,
            }),
        };
        let mut items: Vec<T> = items.into_iter().skip(start).collect();
        let more = items.len() > request.limit;
        items.truncate(request.limit);
        let next_cursor = more
            .then(|| items.last().map(|item| key(item).to_string()))
            .flatten();
        Ok(Page { items, next_cursor })
    }

    /// A page read from storage: `items` holds up to `limit + 1` entries in
    /// order; the extra one, if there, says another page follows.
    pub fn from_lookahead<K: Display>(
        mut items: Vec<T>,
        limit: usize,
        key: impl Fn(&T) -> K,
    ) -> Self {
        let more = items.len() > limit;
        items.truncate(limit);
        Page::after_read(items, more, key)
    }

    /// A page of `items` read in order, `more` when another page follows:
    /// its cursor is the last item's `key`.
    pub fn after_read<K: Display>(items: Vec<T>, more: bool, key: impl Fn(&T) -> K) -> Self {
        let next_cursor = more
            .then(|| items.last().map(|item| key(item).to_string()))
            .flatten();
        Page { items, next_cursor }
    }

    /// The same page with each item changed.
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            items: self.items.into_iter().map(f).collect(),
            next_cursor: self.next_cursor,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn walk(items: &[u32], limit: usize, order: Order) -> Vec<Vec<u32>> {
        let mut pages = Vec::new();
        let mut request = PageRequest::first(limit);
        loop {
            let page = Page::of(items.to_vec(), &request, order, |n| *n).unwrap();
            pages.push(page.items);
            match page.next_cursor {
                Some(c) => request.after = Some(c),
                None => return pages,
            }
        }
    }

    #[test]
    fn walking_a_list_sees_each_item_once_in_order() {
        let items = [5, 1, 4, 2, 3];
        assert_eq!(
            walk(&items, 2, Order::Ascending),
            [vec![1, 2], vec![3, 4], vec![5]]
        );
        assert_eq!(
            walk(&items, 2, Order::Descending),
            [vec![5, 4], vec![3, 2], vec![1]]
        );
        // An exact fit ends without an empty page.
        assert_eq!(walk(&[1, 2], 2, Order::Ascending), [vec![1, 2]]);
        assert_eq!(walk(&[], 3, Order::Ascending), [Vec::<u32>::new()]);
    }

    #[test]
    fn a_cursor_survives_the_removal_of_its_item() {
        let request = PageRequest {
            limit: 10,
            after: Some("2".into()),
        };
        let page = Page::of(vec![1, 3, 4], &request, Order::Ascending, |n| *n).unwrap();
        assert_eq!(page.items, [3, 4]);
        assert_eq!(page.next_cursor, None);
    }

    #[test]
    fn limits_and_cursors_are_checked() {
        assert_eq!(PageRequest::new(None, None).unwrap().limit, DEFAULT_LIMIT);
        assert_eq!(PageRequest::new(Some(500), None).unwrap().limit, 500);
        for bad in [0, 501, u64::MAX] {
            assert!(PageRequest::new(Some(bad), None).is_err(), "{bad}");
        }
        for bad in ["", "a\nb", &"x".repeat(600)] {
            assert!(PageRequest::new(None, Some(bad.into())).is_err(), "{bad:?}");
        }
        let request = PageRequest::new(None, Some("abc".into())).unwrap();
        let err = Page::of(vec![1u32], &request, Order::Ascending, |n| *n).unwrap_err();
        assert_eq!(err.code(), crate::ErrorCode::InvalidInput);
    }

    #[test]
    fn lookahead_says_whether_more_follow() {
        let page = Page::from_lookahead(vec![1, 2, 3], 2, |n| *n);
        assert_eq!(
            (page.items, page.next_cursor),
            (vec![1, 2], Some("2".into()))
        );
        let page = Page::from_lookahead(vec![1, 2], 2, |n| *n);
        assert_eq!(page.next_cursor, None);
    }
}
