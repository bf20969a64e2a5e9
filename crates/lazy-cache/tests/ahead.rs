//! Fetching ahead, behind readers: guesses skip what is cached or being
//! fetched, unrelated guesses wait until readers have not fetched for a
//! while, and an agreement counts readers' own fetches inside and outside
//! a guess.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use lazy_cache::{ChunkSource, HEAD_START};

use common::*;

#[tokio::test]
async fn fetching_ahead_skips_what_is_cached() {
    let dir = tempfile::tempdir().unwrap();
    let (cache, _) = open(dir.path(), u64::MAX);
    let chunks: Vec<Vec<u8>> = (0..4).map(|n| chunk(n, 10_000)).collect();
    let blob = Arc::new(MemoryBlob::new(&chunks));
    let source: Arc<dyn ChunkSource> = blob.clone();
    cache.ensure(&source, &blob.records[0..1]).await.unwrap();
    cache.settled().await;
    let fetched = cache.fetch_ahead(&source, &blob.records).await.unwrap();
    assert_eq!(fetched, 3, "chunk 0 was cached");
    assert_eq!(blob.request_count(), 2);
    assert_eq!(
        *blob.requests.lock().unwrap().last().unwrap(),
        blob.records[1].offset..blob.records[3].end()
    );
    assert_eq!(cache.fetch_ahead(&source, &blob.records).await.unwrap(), 0);
    assert_eq!(blob.request_count(), 2, "nothing left to fetch");
}

#[tokio::test]
async fn an_unrelated_guess_waits_until_readers_are_quiet() {
    let dir = tempfile::tempdir().unwrap();
    let (cache, _) = open(dir.path(), u64::MAX);
    let chunks: Vec<Vec<u8>> = (0..4).map(|n| chunk(n, 10_000)).collect();
    let mut blob = MemoryBlob::new(&chunks);
    blob.delay = Duration::from_millis(300);
    let blob = Arc::new(blob);
    let source: Arc<dyn ChunkSource> = blob.clone();
    let started = Instant::now();
    let reader = {
        let (cache, source, wanted) = (
            cache.clone(),
            Arc::clone(&source),
            blob.records[0..1].to_vec(),
        );
        tokio::spawn(async move { cache.ensure(&source, &wanted).await.map(|_| Instant::now()) })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let guess = cache
        .fetch_when_idle(&source, &blob.records[2..4])
        .await
        .unwrap();
    let reader_done = reader.await.unwrap().unwrap();
    assert_eq!(guess, 2);
    let requests = blob.requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert_eq!(
        requests[0],
        blob.records[0].offset..blob.records[0].end(),
        "the reader's first"
    );
    // The guess's request started about 100 ms after the reader's fetch
    // ended (a little before the reader got its bytes), and took 300 ms.
    assert!(started.elapsed() >= reader_done - started + Duration::from_millis(350));

    // A guess that may go at once (fetch_ahead) does not wait for readers.
    let dir = tempfile::tempdir().unwrap();
    let (cache, _) = open(dir.path(), u64::MAX);
    let started = Instant::now();
    let reader = {
        let (cache, source, wanted) = (
            cache.clone(),
            Arc::clone(&source),
            blob.records[0..1].to_vec(),
        );
        tokio::spawn(async move { cache.ensure(&source, &wanted).await.map(|_| ()) })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    cache
        .fetch_ahead(&source, &blob.records[2..4])
        .await
        .unwrap();
    reader.await.unwrap().unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(600),
        "in parallel: {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn an_agreement_counts_readers_fetches_inside_and_outside_the_guess() {
    let dir = tempfile::tempdir().unwrap();
    let (cache, _) = open(dir.path(), u64::MAX);
    let chunks: Vec<Vec<u8>> = (0..40).map(|n| chunk(n, 1000)).collect();
    let blob = Arc::new(MemoryBlob::new(&chunks));
    let source: Arc<dyn ChunkSource> = blob.clone();
    let agreement = cache.watch_guess(&blob.records[0..10]);
    assert!(agreement.right(), "nothing fetched yet");
    cache.ensure(&source, &blob.records[0..2]).await.unwrap();
    assert_eq!(agreement.counts(), (2, 0));
    // Guesses do not count: only what readers fetch themselves.
    let fetched = cache
        .fetch_guess(&source, &blob.records[2..10], &agreement, 0)
        .await
        .unwrap();
    assert_eq!(fetched, Some(8), "a right guess is fetched");
    cache.settled().await;
    assert_eq!(agreement.counts(), (2, 0));
    cache.ensure(&source, &blob.records[2..4]).await.unwrap();
    assert_eq!(
        agreement.counts(),
        (2, 0),
        "cached: not fetched by the reader"
    );
    cache.ensure(&source, &blob.records[10..20]).await.unwrap();
    assert_eq!(agreement.counts(), (2, 10));
    assert!(
        agreement.right(),
        "10 outside against 2 inside is still within the slack"
    );
    cache.ensure(&source, &blob.records[20..21]).await.unwrap();
    assert!(
        !agreement.right(),
        "11 outside against 2 inside: a wrong guess"
    );
    let requests = blob.request_count();
    let skipped = cache
        .fetch_guess(&source, &blob.records[25..30], &agreement, 0)
        .await
        .unwrap();
    assert_eq!(skipped, None, "a wrong guess is dropped");
    assert_eq!(blob.request_count(), requests, "and fetches nothing");
    drop(agreement);
    cache.ensure(&source, &blob.records[21..22]).await.unwrap();

    // Once wrong, wrong for good: readers that later fetch what the guess
    // holds do not bring back what was dropped.
    let agreement = cache.watch_guess(&blob.records[35..40]);
    cache.ensure(&source, &blob.records[22..31]).await.unwrap();
    assert!(!agreement.right(), "9 outside, none inside");
    cache.ensure(&source, &blob.records[35..40]).await.unwrap();
    assert_eq!(agreement.counts(), (5, 9));
    assert!(!agreement.right(), "still wrong with 5 inside");
}

#[tokio::test]
async fn a_guess_runs_ahead_only_as_far_as_readers_follow_it() {
    let dir = tempfile::tempdir().unwrap();
    let (cache, _) = open(dir.path(), u64::MAX);
    let chunks: Vec<Vec<u8>> = (0..8).map(|n| chunk(n, 1000)).collect();
    let blob = Arc::new(MemoryBlob::new(&chunks));
    let source: Arc<dyn ChunkSource> = blob.clone();
    let agreement = cache.watch_guess(&blob.records);
    // The head start goes at once.
    let first = cache.fetch_guess(&source, &blob.records[0..2], &agreement, 0);
    assert_eq!(first.await.unwrap(), Some(2));
    // A part beyond it waits until readers have read some of the guess.
    let later = {
        let (cache, source, agreement) =
            (cache.clone(), Arc::clone(&source), Arc::clone(&agreement));
        let wanted = blob.records[4..6].to_vec();
        tokio::spawn(async move {
            let fetched = cache
                .fetch_guess(&source, &wanted, &agreement, HEAD_START)
                .await;
            (fetched.unwrap(), Instant::now())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!later.is_finished(), "nobody has read the guess yet");
    assert_eq!(blob.request_count(), 1);
    let read_at = Instant::now();
    cache
        .read(&source, &blob.records[0..1], 0, 10)
        .await
        .unwrap();
    assert_eq!(agreement.followed(), u64::from(blob.records[0].stored_len));
    let (fetched, done) = later.await.unwrap();
    assert_eq!(fetched, Some(2));
    assert!(
        done - read_at < Duration::from_millis(200),
        "{:?}",
        done - read_at
    );

    // Readers that stop following leave the rest until they are quiet
    // (here: at once) after a second.
    let started = Instant::now();
    let rest = cache.fetch_guess(&source, &blob.records[6..8], &agreement, 10 * HEAD_START);
    assert_eq!(rest.await.unwrap(), Some(2));
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(blob.request_count(), 3);
}

#[tokio::test]
async fn readers_fetching_outside_a_guess_hold_it_back() {
    let dir = tempfile::tempdir().unwrap();
    let (cache, _) = open(dir.path(), u64::MAX);
    let chunks: Vec<Vec<u8>> = (0..8).map(|n| chunk(n, 1000)).collect();
    let blob = Arc::new(MemoryBlob::new(&chunks));
    let source: Arc<dyn ChunkSource> = blob.clone();
    let agreement = cache.watch_guess(&blob.records[0..4]);
    // Readers follow the guess a little, and fetch more outside it.
    cache
        .read(&source, &blob.records[0..1], 0, 10)
        .await
        .unwrap();
    cache
        .read(&source, &blob.records[4..6], 0, 10)
        .await
        .unwrap();
    let followed = agreement.followed();
    assert_eq!(followed, u64::from(blob.records[0].stored_len));
    assert!(agreement.missed() > followed, "{}", agreement.missed());
    // The head start no longer reaches a part just inside it.
    let started = Instant::now();
    let part = cache.fetch_guess(&source, &blob.records[1..2], &agreement, HEAD_START - 1);
    assert_eq!(part.await.unwrap(), Some(1));
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "waited for readers: {:?}",
        started.elapsed()
    );
}
