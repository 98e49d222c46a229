//! The open-file cache serves from memory, but never longer than `open_file_cache_valid`
//! after a file changed, never a file that was deleted, and not at all when turned off.

#[path = "common/mod.rs"]
mod common;

use common::{static_ini, Server, TempTree};
use std::time::Duration;

#[test]
fn a_rewritten_file_is_served_new_within_open_file_cache_valid() {
    let t = TempTree::new("ofc_rewrite");
    t.write("static/a.txt", "first");
    let s = Server::start_in(&t, &static_ini("open_file_cache_valid = 300ms", ""));
    assert_eq!(s.get("/static/a.txt").body, b"first");
    t.write("static/a.txt", "second, longer");
    std::thread::sleep(Duration::from_millis(450));
    let r = s.get("/static/a.txt");
    assert_eq!(r.body, b"second, longer");
    assert_eq!(r.header("content-length"), Some("14"));
}

#[test]
fn a_deleted_file_is_404_within_open_file_cache_valid() {
    let t = TempTree::new("ofc_delete");
    t.write("static/a.txt", "here");
    let s = Server::start_in(&t, &static_ini("open_file_cache_valid = 300ms", ""));
    assert_eq!(s.get("/static/a.txt").status, 200);
    std::fs::remove_file(t.join("static/a.txt")).unwrap();
    std::thread::sleep(Duration::from_millis(450));
    assert_eq!(s.get("/static/a.txt").status, 404);
}

#[test]
fn a_file_that_appears_is_served_within_open_file_cache_valid() {
    let t = TempTree::new("ofc_appear");
    t.mkdir("static");
    let s = Server::start_in(&t, &static_ini("open_file_cache_valid = 300ms", ""));
    assert_eq!(s.get("/static/new.txt").status, 404);
    t.write("static/new.txt", "new");
    std::thread::sleep(Duration::from_millis(450));
    assert_eq!(s.get("/static/new.txt").body, b"new");
}

#[test]
fn with_the_cache_off_a_change_is_seen_at_once() {
    let t = TempTree::new("ofc_off");
    t.write("static/a.txt", "first");
    let s = Server::start_in(&t, &static_ini("open_file_cache = off", ""));
    assert_eq!(s.get("/static/a.txt").body, b"first");
    t.write("static/a.txt", "second");
    assert_eq!(s.get("/static/a.txt").body, b"second");
}

#[test]
fn cached_small_and_large_files_keep_their_bytes_and_validators() {
    let t = TempTree::new("ofc_bytes");
    t.write_pattern("static/small.bin", 3000, 3);
    t.write_pattern("static/large.bin", 300_000, 4);
    let s = Server::start_in(&t, &static_ini("", ""));
    for _ in 0..3 {
        let small = s.get("/static/small.bin");
        assert_eq!(small.body, common::pattern(3000, 3));
        assert_eq!(
            small.header("etag").map(str::to_owned),
            Some(common::nginx_etag(&t.join("static/small.bin")))
        );
        let large = s.get("/static/large.bin");
        assert_eq!(large.body, common::pattern(300_000, 4));
    }
}
