//! The adaptive concurrency limit of the model clients.

use std::time::Duration;

use lrem_pipeline::client::aimd::Aimd;

#[test]
fn halves_on_overload_and_recovers_additively() {
    let a = Aimd::new(16, Duration::ZERO);
    a.on_overload();
    assert_eq!(a.limit(), 8);
    a.on_overload();
    assert_eq!(a.limit(), 4);
    for _ in 0..4 {
        a.on_success();
    }
    assert_eq!(a.limit(), 5);
    for _ in 0..1000 {
        a.on_success();
    }
    assert_eq!(a.limit(), 16, "never above the configured maximum");
}

#[test]
fn a_burst_of_429s_counts_once() {
    let a = Aimd::new(16, Duration::from_secs(60));
    for _ in 0..10 {
        a.on_overload();
    }
    assert_eq!(a.limit(), 8);
}

#[tokio::test]
async fn never_more_in_flight_than_the_limit() {
    let a = Aimd::new(2, Duration::ZERO);
    let p1 = a.acquire().await;
    let _p2 = a.acquire().await;
    let waiting = tokio::spawn({
        let a = a.clone();
        async move { a.acquire().await }
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(!waiting.is_finished());
    assert_eq!(a.in_flight(), 2);
    drop(p1);
    let _p3 = tokio::time::timeout(Duration::from_secs(1), waiting).await.unwrap().unwrap();
    assert_eq!(a.in_flight(), 2);
}
