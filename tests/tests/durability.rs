//! `kill -9` of drayd during writes loses no acknowledged write.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dray_sdk::{ClientError, ReleaseCreate};
use dray_tests::Rack;
use rand::Rng;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_during_200_env_changes_loses_no_acknowledged_release() {
    let rack = Rack::start().await;
    let client = rack.client();
    client.app_create("durable").await.unwrap();
    let rack = Arc::new(Mutex::new(rack));
    let done = Arc::new(AtomicBool::new(false));

    // The killer: SIGKILL drayd at random moments and start it again.
    let killer = {
        let rack = rack.clone();
        let done = done.clone();
        std::thread::spawn(move || {
            let mut kills = 0;
            while !done.load(Ordering::SeqCst) {
                let pause = rand::rng().random_range(5..60);
                std::thread::sleep(Duration::from_millis(pause));
                let mut r = rack.lock().unwrap_or_else(|p| p.into_inner());
                r.kill9();
                kills += 1;
                std::thread::sleep(Duration::from_millis(rand::rng().random_range(0..50)));
                r.spawn();
            }
            kills
        })
    };

    let mut acked = Vec::new();
    let mut failures = 0;
    for i in 0..200 {
        loop {
            let opts = ReleaseCreate {
                env: Some(format!("N={i}\nSTEP=step-{i}")),
                ..Default::default()
            };
            match client.release_create("durable", &opts).await {
                Ok(r) => {
                    acked.push((r.id, i));
                    break;
                }
                Err(ClientError::Connect { .. }) | Err(ClientError::Decode { .. }) => {
                    failures += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err(e) => {
                    // A request cut off mid-reply surfaces as a connection error too; anything
                    // else is a real failure.
                    panic!("release {i} failed: {e}");
                }
            }
        }
    }
    done.store(true, Ordering::SeqCst);
    let kills = killer.join().expect("killer thread");
    assert!(kills >= 5, "the agent was killed only {kills} times");
    assert!(
        failures > 0,
        "no request ever hit a dead agent: the test proved nothing"
    );

    let Ok(mutex) = Arc::try_unwrap(rack) else {
        panic!("the killer thread still holds the rack");
    };
    let mut r = mutex.into_inner().unwrap_or_else(|p| p.into_inner());
    r.kill9();
    r.spawn();
    r.wait_ready().await;
    let releases = r.client().releases("durable", Some(1000)).await.unwrap();
    for (id, i) in &acked {
        let rel = releases
            .iter()
            .find(|rel| &rel.id == id)
            .unwrap_or_else(|| {
                panic!("acknowledged release {id} (change {i}) was lost after {kills} kills")
            });
        assert_eq!(rel.env, format!("N={i}\nSTEP=step-{i}"));
    }
    assert_eq!(acked.len(), 200);
    eprintln!("200 acknowledged releases survived {kills} kill -9s ({failures} refused requests)");
}
