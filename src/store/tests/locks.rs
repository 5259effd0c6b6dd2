use std::fs;
use std::sync::mpsc;
use std::time::Duration;

use super::{env_id, temp_store};

#[test]
fn env_locks_on_different_ids_do_not_block_each_other() {
    let (_dir, store) = temp_store();
    let (a, b) = (env_id(1), env_id(2));
    let held_a = store.lock_env(&a).unwrap();
    let held_b = store.try_lock_env(&b).unwrap();
    assert!(held_b.is_some(), "a lock on {a} must not block {b}");
    assert!(
        store.try_lock_env(&a).unwrap().is_none(),
        "the same id is exclusive"
    );
    drop(held_a);
    assert!(
        store.try_lock_env(&a).unwrap().is_some(),
        "released on drop"
    );
}

#[test]
fn exclusive_store_lock_waits_for_shared_holders() {
    let (_dir, store) = temp_store();
    let shared1 = store.lock_store_shared().unwrap();
    let shared2 = store.lock_store_shared().unwrap();
    assert!(!shared1.is_exclusive());
    let (tx, rx) = mpsc::channel();
    let other = store.clone();
    let waiter = std::thread::spawn(move || {
        let lock = other.lock_store_exclusive().unwrap();
        tx.send(lock.is_exclusive()).unwrap();
    });
    assert!(
        rx.recv_timeout(Duration::from_millis(300)).is_err(),
        "must wait for shared holders"
    );
    drop(shared1);
    drop(shared2);
    assert_eq!(rx.recv_timeout(Duration::from_secs(10)), Ok(true));
    waiter.join().unwrap();
}

#[test]
fn run_markers_count_only_live_sessions() {
    let (_dir, store) = temp_store();
    let (a, b) = (env_id(3), env_id(4));
    assert_eq!(store.running_sessions(&a).unwrap(), 0);
    let m1 = store.mark_running(&a).unwrap();
    let m2 = store.mark_running(&a).unwrap();
    let m3 = store.mark_running(&b).unwrap();
    assert_ne!(m1.path(), m2.path());
    assert_eq!(store.running_sessions(&a).unwrap(), 2);

    // A marker left by a dead process: nobody holds its flock.
    let dir = store.run_dir().join(a.as_str());
    fs::write(dir.join("999999-0"), "").unwrap();
    assert_eq!(
        store.running_sessions(&a).unwrap(),
        2,
        "a stale marker is not a session"
    );

    let running = store.running_envs().unwrap();
    assert_eq!(running.get(&a), Some(&2));
    assert_eq!(running.get(&b), Some(&1));
    drop(m1);
    assert_eq!(store.running_sessions(&a).unwrap(), 1);
    drop((m2, m3));
    assert!(store.running_envs().unwrap().is_empty());
    assert!(
        dir.join("999999-0").exists(),
        "counting never removes anything"
    );
}

#[test]
fn running_envs_does_not_write() {
    let (_dir, store) = temp_store();
    let a = env_id(5);
    let dir = store.run_dir().join(a.as_str());
    fs::create_dir(&dir).unwrap();
    fs::write(dir.join("1-1"), "").unwrap();
    assert!(store.running_envs().unwrap().is_empty());
    assert!(
        dir.join("1-1").exists(),
        "listing must leave stale markers to gc"
    );
}

#[test]
fn session_records_include_live_and_stale_markers() {
    let (_dir, store) = temp_store();
    let a = env_id(6);
    let marker = store.mark_running(&a).unwrap();
    marker.record("123 456 0\n").unwrap();
    marker.record("77 88 77\n").unwrap();
    fs::write(store.run_dir().join(a.as_str()).join("1-1"), "5 6 0\n").unwrap();
    // Rewritten in place, never truncated: the shorter record is padded to the longer's size.
    assert_eq!(
        store.session_records(&a).unwrap(),
        ["5 6 0\n", "77 88 77 \n"]
    );
    assert!(store.session_records(&env_id(7)).unwrap().is_empty());
    drop(marker);
    assert_eq!(store.session_records(&a).unwrap(), ["5 6 0\n"]);
}

#[test]
fn the_names_lock_is_exclusive() {
    let (_dir, store) = temp_store();
    let held = store.lock_names().unwrap();
    assert!(held.is_exclusive());
    let (tx, rx) = mpsc::channel();
    let other = store.clone();
    let waiter = std::thread::spawn(move || {
        let _lock = other.lock_names().unwrap();
        tx.send(()).unwrap();
    });
    assert!(rx.recv_timeout(Duration::from_millis(300)).is_err());
    drop(held);
    assert!(rx.recv_timeout(Duration::from_secs(10)).is_ok());
    waiter.join().unwrap();
    assert!(
        store.verify().unwrap().is_clean(),
        "names.lock is a known file"
    );
}
