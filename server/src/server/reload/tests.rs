use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::config::Protocol;

fn server() -> Server {
    Server::unbound(Config {
        listen: "127.0.0.1:7070".parse().unwrap(),
        handle_signals: false,
        ..Config::default()
    })
    .unwrap()
}

#[test]
fn new_settings_take_the_place_of_the_old_but_the_sockets_stay() {
    let mut s = server();
    let new = Config {
        listen: "0.0.0.0:7071".parse().unwrap(),
        max_procs: 7,
        ..Config::default()
    };
    let notes = s.swap_settings(new).unwrap();
    assert_eq!(s.cfg.max_procs, 7);
    assert_eq!(s.cfg.listen, "127.0.0.1:7070".parse().unwrap());
    assert!(!s.cfg.handle_signals);
    assert_eq!(notes.len(), 1);
    assert!(
        notes[0].contains("a new --listen takes a restart"),
        "{notes:?}"
    );
}

#[test]
fn what_takes_a_restart_refuses_the_reload_whole() {
    let mut s = server();
    let seed = Config {
        protocol: Protocol::Seed,
        max_procs: 7,
        ..Config::default()
    };
    assert!(s.swap_settings(seed).unwrap_err().contains("--protocol"));
    let login = Config {
        login: true,
        ..Config::default()
    };
    assert!(s.swap_settings(login).unwrap_err().contains("--login"));
    assert_ne!(s.cfg.max_procs, 7);
}

#[test]
fn a_reload_is_read_off_the_loop_and_swapped_in_when_it_is_done() {
    let mut s = server();
    // Without a loader: ignored.
    s.begin_reload();
    assert!(!s.reloads.running);
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = calls.clone();
    s.set_reload(Arc::new(move || {
        let n = counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        match n {
            0 => Ok(Config {
                max_procs: 7,
                ..Config::default()
            }),
            _ => Err("a bad file".into()),
        }
    }));
    // Two SIGHUPs at once: one reading, then one more.
    s.begin_reload();
    s.begin_reload();
    assert!(s.reloads.running && s.reloads.again);
    let limit = Instant::now() + Duration::from_secs(30);
    while calls.load(std::sync::atomic::Ordering::SeqCst) < 2 || s.reloads.running {
        assert!(Instant::now() < limit, "the reloads did not finish");
        s.take_reloaded();
        std::thread::yield_now();
    }
    // The first was swapped in; the second failed and changed nothing.
    assert_eq!(s.cfg.max_procs, 7);
    assert!(!s.reloads.again);
}
