//! One conformance suite that every engine must pass: point and range semantics,
//! paging, clear_range, atomic add, size limits, and isolation under concurrency.
//! `conformance_suite!` stamps the tests for one engine.

use std::any::Any;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use gatehouse_storage::limits::{MAX_KEY_SIZE, MAX_VALUE_SIZE};
use gatehouse_storage::{
    KeyRange, RangeOptions, StorageError, Store, Tx, TxError, decode_counter, decode_lanes,
};

/// A store and whatever must live as long as it (a temporary directory).
pub struct Harness {
    pub store: Store,
    pub _guard: Box<dyn Any + Send>,
}

type R<T> = Result<T, TxError<String>>;

async fn put(store: &Store, key: &[u8], value: &[u8]) {
    store
        .run(|tx| async move { tx.set(key, value).map_err(TxError::from) })
        .await
        .map_err(|e: TxError<String>| e.to_string())
        .expect("put");
}

async fn get(store: &Store, key: &[u8]) -> Option<Vec<u8>> {
    store
        .run(|tx| async move { tx.get(key).await.map_err(TxError::<String>::from) })
        .await
        .expect("get")
}

async fn keys(store: &Store, range: &KeyRange, options: RangeOptions) -> Vec<Vec<u8>> {
    store
        .run(|tx| async move {
            let page = tx.get_range(range, options).await?;
            R::Ok(page.entries.into_iter().map(|(k, _)| k).collect())
        })
        .await
        .expect("range")
}

fn k(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

pub async fn point_operations(h: Harness) {
    let s = &h.store;
    assert_eq!(get(s, b"a").await, None);
    put(s, b"a", b"1").await;
    assert_eq!(get(s, b"a").await, Some(k("1")));
    put(s, b"a", b"2").await;
    assert_eq!(get(s, b"a").await, Some(k("2")));
    put(s, b"", b"empty key is a key").await;
    assert_eq!(get(s, b"").await, Some(k("empty key is a key")));
    s.run(|tx| async move { tx.clear(b"a").map_err(TxError::<String>::from) })
        .await
        .unwrap();
    assert_eq!(get(s, b"a").await, None);
}

pub async fn reads_see_own_writes(h: Harness) {
    let s = &h.store;
    put(s, b"k1", b"old").await;
    put(s, b"k3", b"old").await;
    let seen = s
        .run(|tx| async move {
            tx.set(b"k1", b"new")?;
            tx.set(b"k2", b"new")?;
            tx.clear(b"k3")?;
            tx.atomic_add(b"n", 5)?;
            let one = tx.get(b"k1").await?;
            let three = tx.get(b"k3").await?;
            let n = tx.get(b"n").await?.map(|v| decode_counter(&v));
            let range = tx
                .get_range(&KeyRange::new(k("k"), k("l")), RangeOptions::default())
                .await?;
            R::Ok((one, three, n, range.entries))
        })
        .await
        .unwrap();
    assert_eq!(seen.0, Some(k("new")));
    assert_eq!(seen.1, None);
    assert_eq!(seen.2, Some(5));
    assert_eq!(seen.3, vec![(k("k1"), k("new")), (k("k2"), k("new"))]);
}

pub async fn range_order_paging_and_reverse(h: Harness) {
    let s = &h.store;
    s.run(|tx| async move {
        for i in 0..25u32 {
            tx.set(format!("r/{i:03}").as_bytes(), &i.to_le_bytes())?;
        }
        tx.set(b"q", b"outside")?;
        tx.set(b"s", b"outside")?;
        R::Ok(())
    })
    .await
    .unwrap();
    let range = KeyRange::prefix(b"r/");
    let all = keys(s, &range, RangeOptions::default()).await;
    let expected: Vec<Vec<u8>> = (0..25).map(|i| k(&format!("r/{i:03}"))).collect();
    assert_eq!(all, expected);

    let mut reversed = expected.clone();
    reversed.reverse();
    assert_eq!(
        keys(s, &range, RangeOptions::default().reversed()).await,
        reversed
    );

    for reverse in [false, true] {
        let mut options = RangeOptions::limit(7);
        options.reverse = reverse;
        let mut paged = Vec::new();
        let mut next = Some(range.clone());
        let mut pages = 0;
        while let Some(current) = next {
            let page = s
                .run(|tx| {
                    let current = &current;
                    async move { R::Ok(tx.get_range(current, options).await?) }
                })
                .await
                .unwrap();
            assert!(page.entries.len() <= 7);
            paged.extend(page.entries.into_iter().map(|(k, _)| k));
            next = page.next;
            pages += 1;
        }
        assert_eq!(pages, 4, "25 entries in pages of 7");
        assert_eq!(
            paged,
            if reverse {
                reversed.clone()
            } else {
                expected.clone()
            }
        );
    }

    // An exact fit has no next page.
    let page = s
        .run(|tx| async move {
            R::Ok(
                tx.get_range(&KeyRange::prefix(b"r/"), RangeOptions::limit(25))
                    .await?,
            )
        })
        .await
        .unwrap();
    assert_eq!(page.entries.len(), 25);
    assert_eq!(page.next, None);

    assert!(keys(s, &range, RangeOptions::limit(0)).await.is_empty());
    assert!(
        keys(
            s,
            &KeyRange::new(k("r/5"), k("r/5")),
            RangeOptions::default()
        )
        .await
        .is_empty()
    );
    let backwards = s
        .run(|tx| async move {
            R::Ok(
                tx.get_range(&KeyRange::new(k("z"), k("a")), RangeOptions::default())
                    .await?,
            )
        })
        .await;
    assert_eq!(backwards, Err(TxError::Storage(StorageError::InvalidRange)));
}

pub async fn range_reads_merge_buffered_writes(h: Harness) {
    let s = &h.store;
    s.run(|tx| async move {
        for key in ["m/a", "m/c", "m/e", "m/g"] {
            tx.set(key.as_bytes(), b"stored")?;
        }
        R::Ok(())
    })
    .await
    .unwrap();
    let (forward, backward, page) = s
        .run(|tx| async move {
            tx.set(b"m/b", b"buffered")?;
            tx.clear(b"m/c")?;
            tx.clear_range(&KeyRange::new(k("m/f"), k("m/h")))?;
            tx.set(b"m/g2", b"after clear")?;
            tx.atomic_add(b"m/e", 1)?;
            let r = KeyRange::prefix(b"m/");
            let f = tx.get_range(&r, RangeOptions::default()).await?;
            let b = tx.get_range(&r, RangeOptions::default().reversed()).await?;
            let p = tx.get_range(&r, RangeOptions::limit(2)).await?;
            R::Ok((f.entries, b.entries, p))
        })
        .await
        .unwrap();
    let e_after_add = {
        let mut bytes = [0u8; 8];
        bytes[..6].copy_from_slice(b"stored");
        (i64::from_le_bytes(bytes) + 1).to_le_bytes().to_vec()
    };
    let expected = vec![
        (k("m/a"), k("stored")),
        (k("m/b"), k("buffered")),
        (k("m/e"), e_after_add),
        (k("m/g2"), k("after clear")),
    ];
    assert_eq!(forward, expected);
    let mut rev = expected.clone();
    rev.reverse();
    assert_eq!(backward, rev);
    assert_eq!(page.entries, expected[..2].to_vec());
    assert_eq!(
        page.next,
        Some(KeyRange::new(k("m/b\0"), KeyRange::prefix(b"m/").end))
    );
    // And all of it was committed as read.
    assert_eq!(
        keys(s, &KeyRange::prefix(b"m/"), RangeOptions::default())
            .await
            .len(),
        4
    );
}

pub async fn clear_range_is_half_open(h: Harness) {
    let s = &h.store;
    s.run(|tx| async move {
        for key in ["c/1", "c/2", "c/3", "c/4", "d"] {
            tx.set(key.as_bytes(), b"x")?;
        }
        R::Ok(())
    })
    .await
    .unwrap();
    s.run(|tx| async move { R::Ok(tx.clear_range(&KeyRange::new(k("c/2"), k("c/4")))?) })
        .await
        .unwrap();
    assert_eq!(
        keys(
            s,
            &KeyRange::new(k(""), k("\u{7f}")),
            RangeOptions::default()
        )
        .await,
        vec![k("c/1"), k("c/4"), k("d")]
    );
}

/// `tasks` tasks at once, each running `add` in `times` transactions of its own.
async fn add_concurrently(
    s: &Store,
    tasks: usize,
    times: usize,
    add: fn(&Tx) -> Result<(), StorageError>,
) {
    let tasks: Vec<_> = (0..tasks)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move {
                for _ in 0..times {
                    s.run(|tx| async move { R::Ok(add(&tx)?) }).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
}

pub async fn atomic_add(h: Harness) {
    let s = &h.store;
    for delta in [5, -2, 10] {
        s.run(|tx| async move { R::Ok(tx.atomic_add(b"counter", delta)?) })
            .await
            .unwrap();
    }
    assert_eq!(
        get(s, b"counter").await.map(|v| decode_counter(&v)),
        Some(13)
    );

    // Concurrent adders never conflict and lose nothing.
    add_concurrently(s, 8, 25, |tx| tx.atomic_add(b"counter", 1)).await;
    assert_eq!(
        get(s, b"counter").await.map(|v| decode_counter(&v)),
        Some(213)
    );
}

pub async fn atomic_add_lanes(h: Harness) {
    let s = &h.store;
    // Two transactions, the second adding twice to the same key (buffered).
    s.run(|tx| async move { R::Ok(tx.atomic_add_lanes(b"row", &[1, 100, 20, 7])?) })
        .await
        .unwrap();
    s.run(|tx| async move {
        tx.atomic_add_lanes(b"row", &[1, 50, 0, 3])?;
        tx.atomic_add_lanes(b"row", &[1, 0, 5, 0])?;
        // A transaction reads its own pending additions.
        let seen = tx.get(b"row").await?.map(|v| decode_lanes::<4>(&v));
        assert_eq!(seen, Some([3, 150, 25, 10]));
        R::Ok(())
    })
    .await
    .unwrap();
    let row = get(s, b"row").await.unwrap();
    assert_eq!(row.len(), 32);
    assert_eq!(decode_lanes::<4>(&row), [3, 150, 25, 10]);
    // A lane stays apart from the next even when it grows past 32 bits.
    s.run(|tx| async move { R::Ok(tx.atomic_add_lanes(b"row", &[u32::MAX.into(), 0, 0, 1])?) })
        .await
        .unwrap();
    assert_eq!(
        get(s, b"row").await.map(|v| decode_lanes::<4>(&v)),
        Some([3 + i64::from(u32::MAX), 150, 25, 11])
    );
    // Range reads see them too, and a one-lane counter reads as its lane 0.
    s.run(|tx| async move { R::Ok(tx.atomic_add(b"row2", 9)?) })
        .await
        .unwrap();
    let page = s
        .run(|tx| async move {
            R::Ok(
                tx.get_range(&KeyRange::new(k("row"), k("row3")), RangeOptions::default())
                    .await?,
            )
        })
        .await
        .unwrap();
    let lanes: Vec<[i64; 2]> = page.entries.iter().map(|(_, v)| decode_lanes(v)).collect();
    assert_eq!(lanes, vec![[3 + i64::from(u32::MAX), 150], [9, 0]]);

    // Concurrent adders never conflict and lose nothing.
    add_concurrently(s, 4, 20, |tx| tx.atomic_add_lanes(b"many", &[1, 2, 3])).await;
    assert_eq!(
        get(s, b"many").await.map(|v| decode_lanes::<3>(&v)),
        Some([80, 160, 240])
    );

    // What not every engine can add exactly is refused, and writes nothing.
    for deltas in [&[][..], &[1, -1], &[0; 17]] {
        let refused = s
            .run(|tx| async move { R::Ok(tx.atomic_add_lanes(b"bad", deltas)?) })
            .await;
        assert!(
            matches!(refused, Err(TxError::Storage(StorageError::InvalidAdd(_)))),
            "{deltas:?}: {refused:?}"
        );
    }
    assert_eq!(get(s, b"bad").await, None);
}

pub async fn size_limits(h: Harness) {
    let s = &h.store;
    let max_key = vec![b'k'; MAX_KEY_SIZE];
    let max_value = vec![b'v'; MAX_VALUE_SIZE];
    put(s, &max_key, &max_value).await;
    assert_eq!(
        get(s, &max_key).await.map(|v| v.len()),
        Some(MAX_VALUE_SIZE)
    );

    let long_key = &vec![b'k'; MAX_KEY_SIZE + 1];
    let r = s
        .run(|tx| async move { R::Ok(tx.set(long_key, b"v")?) })
        .await;
    assert_eq!(
        r,
        Err(TxError::Storage(StorageError::KeyTooLarge {
            size: MAX_KEY_SIZE + 1,
            limit: MAX_KEY_SIZE
        }))
    );
    let long_value = &vec![b'v'; MAX_VALUE_SIZE + 1];
    let r = s
        .run(|tx| async move { R::Ok(tx.set(b"big", long_value)?) })
        .await;
    assert!(matches!(
        r,
        Err(TxError::Storage(StorageError::ValueTooLarge { .. }))
    ));

    // 10 MB of writes in one transaction is refused, and nothing of it lands.
    let value = vec![b'v'; 99_000];
    let r = s
        .run(|tx| {
            let value = &value;
            async move {
                for i in 0..110u32 {
                    tx.set(format!("bulk/{i:04}").as_bytes(), value)?;
                }
                R::Ok(())
            }
        })
        .await;
    assert!(
        matches!(
            r,
            Err(TxError::Storage(StorageError::TransactionTooLarge { .. }))
        ),
        "{r:?}"
    );
    assert!(
        keys(s, &KeyRange::prefix(b"bulk/"), RangeOptions::default())
            .await
            .is_empty()
    );
    assert_eq!(get(s, b"big").await, None);
}

pub async fn abort_discards_writes(h: Harness) {
    let s = &h.store;
    let r: R<()> = s
        .run(|tx| async move {
            tx.set(b"doomed", b"x")?;
            Err(TxError::Abort("changed my mind".to_string()))
        })
        .await;
    assert_eq!(r, Err(TxError::Abort("changed my mind".to_string())));
    assert_eq!(get(s, b"doomed").await, None);
}

/// N tasks each read a counter and write it back plus one: no update is lost.
pub async fn no_lost_updates(h: Harness) {
    let s = &h.store;
    let attempts = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let s = s.clone();
            let attempts = attempts.clone();
            tokio::spawn(async move {
                for _ in 0..20 {
                    s.run(|tx| {
                        let attempts = &attempts;
                        async move {
                            attempts.fetch_add(1, Ordering::Relaxed);
                            let n = tx.get(b"rmw").await?.map_or(0, |v| decode_counter(&v));
                            tokio::task::yield_now().await;
                            tx.set(b"rmw", &(n + 1).to_le_bytes())?;
                            R::Ok(())
                        }
                    })
                    .await
                    .unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(get(s, b"rmw").await.map(|v| decode_counter(&v)), Some(160));
    assert!(attempts.load(Ordering::Relaxed) >= 160);
}

/// N tasks each read the members of a set and add one if fewer than K: the set
/// never ends with more than K members (no write skew).
pub async fn no_write_skew(h: Harness) {
    const CAP: usize = 5;
    let s = &h.store;
    let tasks: Vec<_> = (0..12u32)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move {
                s.run(|tx| async move {
                    let members = tx
                        .get_range(&KeyRange::prefix(b"team/"), RangeOptions::default())
                        .await?;
                    tokio::task::yield_now().await;
                    if members.entries.len() < CAP {
                        tx.set(format!("team/{i:02}").as_bytes(), b"member")?;
                        return R::Ok(true);
                    }
                    R::Ok(false)
                })
                .await
                .unwrap()
            })
        })
        .collect();
    let mut joined = 0;
    for t in tasks {
        joined += usize::from(t.await.unwrap());
    }
    assert_eq!(joined, CAP);
    assert_eq!(
        keys(s, &KeyRange::prefix(b"team/"), RangeOptions::default())
            .await
            .len(),
        CAP
    );
}

/// Reads inside one attempt come from one snapshot, even while others commit.
pub async fn repeatable_reads(h: Harness) {
    let s = &h.store;
    put(s, b"snap", b"before").await;
    let outer = s.clone();
    let r = s
        .run(|tx: Tx| {
            let outer = &outer;
            async move {
                let first = tx.get(b"snap").await?;
                put(outer, b"snap", b"after").await;
                let second = tx.get(b"snap").await?;
                R::Ok((first, second))
            }
        })
        .await
        .unwrap();
    assert_eq!(r.0, r.1);
}

/// A transaction older than the lifetime limit cannot commit; the retry loop
/// runs the closure again in a fresh transaction.
pub async fn transaction_lifetime_limit(h: Harness) {
    let s = &h.store;
    let attempts = AtomicUsize::new(0);
    s.run(|tx| {
        let attempts = &attempts;
        async move {
            let attempt = attempts.fetch_add(1, Ordering::SeqCst);
            tx.set(b"slow", format!("attempt {attempt}").as_bytes())?;
            if attempt == 0 {
                tokio::time::sleep(gatehouse_storage::limits::MAX_TRANSACTION_DURATION).await;
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            R::Ok(())
        }
    })
    .await
    .unwrap();
    assert_eq!(attempts.load(Ordering::SeqCst), 2);
    assert_eq!(get(s, b"slow").await, Some(k("attempt 1")));
}

/// Versionstamped keys sort in commit order: a task's sequential commits keep
/// their order among everyone's, keys of one transaction share a stamp, and
/// none is lost.
pub async fn versionstamped_keys_follow_commit_order(h: Harness) {
    let s = &h.store;
    let tasks: Vec<_> = (0..6u8)
        .map(|task| {
            let s = s.clone();
            tokio::spawn(async move {
                for i in 0..8u8 {
                    s.run(|tx| async move {
                        for part in 0..2u8 {
                            let suffix = tx.next_local_sequence().to_be_bytes();
                            tx.set_versionstamped_key(b"vs/", &suffix, &[task, i, part])?;
                        }
                        // Also contend on a counter, as real transactions do.
                        let n = tx.get(b"vs-count").await?.map_or(0, |v| decode_counter(&v));
                        tx.set(b"vs-count", &(n + 1).to_le_bytes())?;
                        R::Ok(())
                    })
                    .await
                    .unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let page = s
        .run(|tx| async move {
            R::Ok(
                tx.get_range(&KeyRange::prefix(b"vs/"), RangeOptions::default())
                    .await?,
            )
        })
        .await
        .unwrap();
    assert_eq!(page.entries.len(), 6 * 8 * 2);
    let mut last_i = [None::<u8>; 6];
    for pair in page.entries.chunks(2) {
        let ((k0, v0), (k1, v1)) = (&pair[0], &pair[1]);
        assert_eq!(k0.len(), 3 + 10 + 2);
        assert_eq!(k0[3..13], k1[3..13], "one transaction, one stamp");
        assert_eq!((&k0[13..], &k1[13..]), (&[0u8, 0][..], &[0u8, 1][..]));
        assert_eq!((v0[0], v0[1], v0[2]), (v1[0], v1[1], 0));
        assert_eq!(v1[2], 1);
        let (task, i) = (usize::from(v0[0]), v0[1]);
        assert!(
            last_i[task] < Some(i),
            "task {task}: {i} after {:?}",
            last_i[task]
        );
        last_i[task] = Some(i);
    }
    assert_eq!(
        get(s, b"vs-count").await.map(|v| decode_counter(&v)),
        Some(48)
    );

    // The stamp is taken at commit, not at begin: a transaction that began
    // first but commits last sorts last.
    let inner_done = std::sync::atomic::AtomicBool::new(false);
    let outer = s.clone();
    s.run(|tx| {
        let (outer, inner_done) = (&outer, &inner_done);
        async move {
            tx.get(b"vs-other").await?;
            if !inner_done.swap(true, Ordering::SeqCst) {
                outer
                    .run(|tx| async move { R::Ok(tx.set_versionstamped_key(b"vo/", b"", b"inner")?) })
                    .await
                    .unwrap();
            }
            R::Ok(tx.set_versionstamped_key(b"vo/", b"", b"outer")?)
        }
    })
    .await
    .unwrap();
    let order: Vec<Vec<u8>> = s
        .run(|tx| async move {
            R::Ok(
                tx.get_range(&KeyRange::prefix(b"vo/"), RangeOptions::default())
                    .await?,
            )
        })
        .await
        .unwrap()
        .entries
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    assert_eq!(order, vec![k("inner"), k("outer")]);
}

/// Runs `n` transactions at once, each `body(i, tx)` and then (on its
/// first attempt) waiting for all the others to get that far, so that they
/// reach their commits at the same moment. Returns how many attempts ran.
async fn at_one_moment<F, Fut>(s: &Store, n: usize, body: F) -> usize
where
    F: Fn(usize, Tx) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = R<()>> + Send + 'static,
{
    let body = Arc::new(body);
    let barrier = Arc::new(tokio::sync::Barrier::new(n));
    let attempts = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let (s, body) = (s.clone(), body.clone());
            let (barrier, attempts) = (barrier.clone(), attempts.clone());
            tokio::spawn(async move {
                let first = std::sync::atomic::AtomicBool::new(true);
                s.run(|tx| {
                    let (body, barrier, attempts, first) = (&body, &barrier, &attempts, &first);
                    async move {
                        attempts.fetch_add(1, Ordering::SeqCst);
                        body(i, tx).await?;
                        if first.swap(false, Ordering::SeqCst) {
                            barrier.wait().await;
                        }
                        R::Ok(())
                    }
                })
                .await
                .unwrap();
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    attempts.load(Ordering::SeqCst)
}

/// Transactions that reach their commit at the same moment (which the
/// embedded engine writes as one group): a read-modify-write among them
/// still sees every other's update, and blind writes all land.
pub async fn commits_at_the_same_moment(h: Harness) {
    const N: usize = 6;
    let s = &h.store;
    let attempts = at_one_moment(s, N, |i, tx| async move {
        let n = tx
            .get(b"same/count")
            .await?
            .map_or(0, |v| decode_counter(&v));
        tx.set(b"same/count", &(n + 1).to_le_bytes())?;
        tx.set(format!("same/{i}").as_bytes(), b"written")?;
        tx.set_versionstamped_key(b"same-vs/", b"", &[i as u8])?;
        R::Ok(())
    })
    .await;
    assert_eq!(
        get(s, b"same/count").await.map(|v| decode_counter(&v)),
        Some(N as i64)
    );
    // All read 0 first: one of them commits that, every other reads again.
    assert!(attempts >= 2 * N - 1, "{attempts} attempts");
    let written = keys(s, &KeyRange::prefix(b"same/"), RangeOptions::default()).await;
    assert_eq!(written.len(), N + 1);
    let stamped = keys(s, &KeyRange::prefix(b"same-vs/"), RangeOptions::default()).await;
    assert_eq!(stamped.len(), N);

    // Blind writers at the same moment: additions to one counter all count.
    at_one_moment(s, N, |i, tx| async move {
        tx.atomic_add(b"blind/sum", i as i64 + 1)?;
        tx.set(format!("blind/{i}").as_bytes(), b"written")?;
        R::Ok(())
    })
    .await;
    assert_eq!(
        get(s, b"blind/sum").await.map(|v| decode_counter(&v)),
        Some((N * (N + 1) / 2) as i64)
    );
    let blind = keys(s, &KeyRange::prefix(b"blind/"), RangeOptions::default()).await;
    assert_eq!(blind.len(), N + 1);
}

#[macro_export]
macro_rules! conformance_suite {
    ($engine:ident, $setup:expr) => {
        mod $engine {
            use super::*;

            macro_rules! case {
                ($name:ident) => {
                    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                    async fn $name() {
                        // `None`: the engine cannot run here and the harness said why.
                        let harness: Option<Harness> = $setup.await;
                        if let Some(harness) = harness {
                            super::$name(harness).await;
                        }
                    }
                };
            }

            case!(point_operations);
            case!(reads_see_own_writes);
            case!(range_order_paging_and_reverse);
            case!(range_reads_merge_buffered_writes);
            case!(clear_range_is_half_open);
            case!(atomic_add);
            case!(atomic_add_lanes);
            case!(size_limits);
            case!(abort_discards_writes);
            case!(no_lost_updates);
            case!(no_write_skew);
            case!(repeatable_reads);
            case!(transaction_lifetime_limit);
            case!(versionstamped_keys_follow_commit_order);
            case!(commits_at_the_same_moment);
        }
    };
}

conformance_suite!(memory, async {
    Some(Harness {
        store: Store::new(Arc::new(gatehouse_storage::memory::MemoryEngine::new())),
        _guard: Box::new(()),
    })
});

conformance_suite!(embedded, async {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = gatehouse_storage::embedded::EmbeddedEngine::open(dir.path()).expect("open");
    Some(Harness {
        store: Store::new(Arc::new(engine)),
        _guard: Box::new(dir),
    })
});

conformance_suite!(postgres, async {
    let server = gatehouse_storage::postgres::testing::TestPostgres::shared()?;
    let url = server.create_database().await;
    let engine = gatehouse_storage::postgres::PostgresEngine::connect(&url)
        .await
        .expect("connect");
    Some(Harness {
        store: Store::new(Arc::new(engine)),
        _guard: Box::new(()),
    })
});

// Runs only where a FoundationDB cluster is reachable: libfdb_c installed and
// `FDB_CLUSTER_FILE` naming the cluster. Each test clears the keyspace it uses
// first (`\x00`..`\xff`), so point it at a scratch cluster.
#[cfg(feature = "fdb")]
conformance_suite!(fdb, async {
    let Ok(file) = std::env::var("FDB_CLUSTER_FILE") else {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "skipping FoundationDB tests: FDB_CLUSTER_FILE is not set"
        );
        return None;
    };
    let engine = gatehouse_storage::fdb::FdbEngine::open(&file).expect("open FoundationDB");
    let store = Store::new(Arc::new(engine));
    store
        .run(|tx| async move { R::Ok(tx.clear_range(&KeyRange::new(vec![0x00], vec![0xff]))?) })
        .await
        .expect("clear the scratch keyspace");
    Some(Harness {
        store,
        _guard: Box::new(()),
    })
});
