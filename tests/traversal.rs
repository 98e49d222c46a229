//! Path traversal: no request — plain or encoded dot segments, double encoding, encoded slashes,
//! NUL, backslashes, overlong UTF-8, the alias off-by-slash (`/files../`), symlinks under
//! `disable_symlinks = on` — may read a file outside the mapped directory. A secret file sits
//! beside the served directory; its content must never appear in any response.
//! Also proves the positive side: dot segments inside the tree are normalised and served.

mod common;
use common::*;

const SECRET: &str = "TOPSECRET-7f3a9c1e-do-not-serve";
const HELLO: &str = "hello from static\n";

/// `{DIR}/static/` is served; `{DIR}/secret.txt`, `{DIR}/static_private/secret.txt` and
/// `{DIR}/outside/secret.txt` are not.
fn site(name: &str) -> TempTree {
    let t = TempTree::new(name);
    t.write("static/hello.txt", HELLO);
    t.write("static/sub/inner.txt", "inner");
    t.write("www/docs/page.txt", "page");
    t.write("secret.txt", SECRET);
    t.write("static_private/secret.txt", SECRET);
    t.write("outside/secret.txt", SECRET);
    t.write("www/secret.txt", SECRET);
    t
}

/// `/static/` alias (correct), `/files` alias `{DIR}/static/` (the off-by-slash misconfiguration),
/// `/docs/` root `{DIR}/www`.
fn traversal_ini(location_extra: &str) -> String {
    ini(
        "",
        &format!(
            "[location:/static/]\nalias = {{DIR}}/static/\n{extra}\n\n\
             [location:/files]\nalias = {{DIR}}/static/\n{extra}\n\n\
             [location:/docs/]\nroot = {{DIR}}/www\n{extra}\n",
            extra = location_extra
        ),
    )
}

/// Sends `GET target` raw and asserts a 400/403/404 that does not contain the secret (nor
/// /etc/passwd).
fn assert_refused(port: u16, target: &[u8]) {
    let mut req = b"GET ".to_vec();
    req.extend_from_slice(target);
    req.extend_from_slice(b" HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    let mut c = Client::connect(port);
    let _ = c.try_send(&req);
    let (raw, _) = c.read_until_close(std::time::Duration::from_secs(5));
    let text = String::from_utf8_lossy(&raw);
    let shown = String::from_utf8_lossy(target);
    assert!(
        !text.contains(SECRET),
        "{} SERVED THE SECRET: {:?}",
        shown,
        text
    );
    assert!(!text.contains("root:x:0:0"), "{} served /etc/passwd", shown);
    let status = text.get(9..12).unwrap_or("");
    assert!(
        raw.is_empty() || ["400", "403", "404"].contains(&status),
        "{} -> {:?}",
        shown,
        text.lines().next().unwrap_or("")
    );
}

fn assert_all_refused(name: &str, targets: &[&str]) {
    let t = site(name);
    let s = Server::start_in(&t, &traversal_ini(""));
    for target in targets {
        assert_refused(s.port, target.as_bytes());
    }
    // The server still serves legitimately afterwards.
    assert_eq!(s.get("/static/hello.txt").body, HELLO.as_bytes());
}

#[test]
fn plain_dot_dot_cannot_leave_the_tree() {
    assert_all_refused(
        "plain_dotdot",
        &[
            "/static/../secret.txt",
            "/static/../../secret.txt",
            "/static/sub/../../secret.txt",
            "/static/./../secret.txt",
            "/static/../static_private/secret.txt",
            "/../secret.txt",
            "/static/../../../../../../../../etc/passwd",
            "/docs/../secret.txt",
            "/docs/../../secret.txt",
            "/static//../secret.txt",
            "/static/sub/..//../secret.txt",
            "/static/..",
            "/static/../",
        ],
    );
}

#[test]
fn percent_encoded_dots_cannot_leave_the_tree() {
    assert_all_refused(
        "encoded_dots",
        &[
            "/static/%2e%2e/secret.txt",
            "/static/%2E%2E/secret.txt",
            "/static/.%2e/secret.txt",
            "/static/%2e./secret.txt",
            "/static/%2e%2e/%2e%2e/secret.txt",
            "/static/sub/%2e%2e/%2e%2e/secret.txt",
            "/docs/%2e%2e/secret.txt",
            "/static/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        ],
    );
}

#[test]
fn double_encoding_is_decoded_only_once() {
    assert_all_refused(
        "double_encoding",
        &[
            "/static/%252e%252e/secret.txt",
            "/static/%252e%252e%252fsecret.txt",
            "/static/..%252fsecret.txt",
            "/static/%25%32%65%25%32%65/secret.txt",
        ],
    );
}

#[test]
fn encoded_slashes_cannot_leave_the_tree() {
    assert_all_refused(
        "encoded_slash",
        &[
            "/static/..%2fsecret.txt",
            "/static/..%2Fsecret.txt",
            "/static/%2e%2e%2fsecret.txt",
            "/static%2f..%2fsecret.txt",
            "/static/sub%2f..%2f..%2fsecret.txt",
            "/static/%2f..%2f..%2fsecret.txt",
        ],
    );
}

#[test]
fn nul_bytes_are_refused() {
    let t = site("nul");
    let s = Server::start_in(&t, &traversal_ini(""));
    for target in [
        &b"/static/hello.txt%00"[..],
        b"/static/hello.txt%00.png",
        b"/static/%00/../secret.txt",
        b"/static/..%00/secret.txt",
        b"/static/.%00./secret.txt",
        b"/static/hello.txt\x00",
    ] {
        assert_refused(s.port, target);
    }
    let r = s.get("/static/hello.txt%00");
    assert_ne!(r.status, 200, "NUL-truncated name served: {}", r.head_raw);
}

#[test]
fn backslashes_are_not_path_separators() {
    assert_all_refused(
        "backslash",
        &[
            "/static/..\\secret.txt",
            "/static\\..\\secret.txt",
            "/static/..%5csecret.txt",
            "/static/..%5Csecret.txt",
            "/static/%2e%2e%5csecret.txt",
            "/static/sub\\..\\..\\secret.txt",
        ],
    );
}

#[test]
fn overlong_utf8_dots_and_slashes_are_refused() {
    assert_all_refused(
        "overlong_utf8",
        &[
            "/static/%c0%ae%c0%ae/secret.txt",
            "/static/%c0%2e%c0%2e/secret.txt",
            "/static/%e0%80%ae%e0%80%ae/secret.txt",
            "/static/..%c0%afsecret.txt",
            "/static/..%c1%9csecret.txt",
            "/static/%c0%ae%c0%ae%c0%afsecret.txt",
            "/static/%f0%80%80%ae%f0%80%80%ae/secret.txt",
        ],
    );
}

#[test]
fn alias_off_by_slash_cannot_reach_the_parent() {
    // [location:/files] alias = {DIR}/static/ : /files../secret.txt would map to
    // {DIR}/static/../secret.txt in a naive implementation (the classic nginx misconfiguration).
    assert_all_refused(
        "off_by_slash",
        &[
            "/files../secret.txt",
            "/files../static_private/secret.txt",
            "/files../outside/secret.txt",
            "/files..%2fsecret.txt",
            "/files%2e%2e/secret.txt",
            "/files../../secret.txt",
            "/files..",
            "/files../",
            "/files_private/secret.txt",
        ],
    );
}

#[test]
fn off_by_slash_location_still_serves_its_own_files() {
    let t = site("off_by_slash_positive");
    let s = Server::start_in(&t, &traversal_ini(""));
    let r = s.get("/files/hello.txt");
    assert_eq!(r.status, 200, "{}", r.head_raw);
    assert_eq!(r.body, HELLO.as_bytes());
}

#[test]
fn path_parameters_and_odd_segments_are_plain_names() {
    assert_all_refused(
        "odd_segments",
        &[
            "/static/..;/secret.txt",
            "/static/...//secret.txt",
            "/static/..../secret.txt",
            "/static/.. /secret.txt",
            "/static/%20../secret.txt",
        ],
    );
}

#[test]
fn request_target_without_leading_slash_is_400() {
    let t = site("no_slash");
    let s = Server::start_in(&t, &traversal_ini(""));
    for target in [
        "../secret.txt",
        "static/../../secret.txt",
        "%2e%2e/secret.txt",
    ] {
        let r = request(
            s.port,
            format!(
                "GET {} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
                target
            )
            .as_bytes(),
        );
        assert_eq!(r.status, 400, "{} -> {}", target, r.head_raw);
        assert!(!r.text().contains(SECRET));
    }
}

#[test]
fn absolute_form_cannot_smuggle_dot_segments() {
    let t = site("absolute_form");
    let s = Server::start_in(&t, &traversal_ini(""));
    for target in [
        "http://localhost/static/../secret.txt",
        "http://localhost/static/%2e%2e/secret.txt",
        "http://localhost/files../secret.txt",
        "http://localhost/../secret.txt",
    ] {
        assert_refused(s.port, target.as_bytes());
    }
}

#[test]
fn dot_segments_inside_the_tree_are_normalised_and_served() {
    let t = site("normalise_inside");
    let s = Server::start_in(&t, &traversal_ini(""));
    for target in [
        "/static/sub/../hello.txt",
        "/static/./hello.txt",
        "/static/sub/./../hello.txt",
        "/static/sub/inner.txt/../../hello.txt",
    ] {
        let r = s.get(target);
        assert_eq!(r.status, 200, "{} -> {}", target, r.head_raw);
        assert_eq!(r.body, HELLO.as_bytes(), "{}", target);
    }
}

// --- symlinks ---------------------------------------------------------------------------------

fn symlink_site(name: &str) -> TempTree {
    let t = site(name);
    t.symlink(t.join("secret.txt"), "static/link_to_secret");
    t.symlink("../outside", "static/link_to_outside_dir");
    t.symlink("hello.txt", "static/link_inside");
    t.symlink("sub", "static/linkdir_inside");
    t
}

#[test]
fn disable_symlinks_on_refuses_symlinks_leaving_the_tree() {
    let t = symlink_site("symlinks_out");
    let s = Server::start_in(&t, &traversal_ini("disable_symlinks = on"));
    for target in [
        "/static/link_to_secret",
        "/static/link_to_outside_dir/secret.txt",
        "/files/link_to_secret",
        "/static/sub/../link_to_secret",
        "/static/%6cink_to_secret",
    ] {
        assert_refused(s.port, target.as_bytes());
        let r = s.get(target);
        assert!(
            r.status == 403 || r.status == 404,
            "{} -> {}",
            target,
            r.head_raw
        );
    }
}

#[test]
fn disable_symlinks_on_refuses_symlinks_inside_the_tree_too() {
    // nginx `disable_symlinks on`: any symlink in any component is denied (403).
    let t = symlink_site("symlinks_in");
    let s = Server::start_in(&t, &traversal_ini("disable_symlinks = on"));
    let r = s.get("/static/link_inside");
    assert_eq!(r.status, 403, "file symlink: {}", r.head_raw);
    let r = s.get("/static/linkdir_inside/inner.txt");
    assert_eq!(r.status, 403, "directory symlink component: {}", r.head_raw);
    // Regular files next to them are still served.
    assert_eq!(s.get("/static/hello.txt").body, HELLO.as_bytes());
    assert_eq!(s.get("/static/sub/inner.txt").body, b"inner");
}

#[test]
fn symlinks_are_followed_by_default() {
    // nginx's default (disable_symlinks off) follows symlinks; the option above must be what
    // refuses them, not an accident of the setup.
    let t = symlink_site("symlinks_default");
    let s = Server::start_in(&t, &traversal_ini(""));
    let r = s.get("/static/link_inside");
    assert_eq!(r.status, 200, "{}", r.head_raw);
    assert_eq!(r.body, HELLO.as_bytes());
    let r = s.get("/static/linkdir_inside/inner.txt");
    assert_eq!(r.status, 200, "{}", r.head_raw);
}

#[test]
fn disable_symlinks_on_refuses_a_symlinked_index() {
    let t = site("symlink_index");
    t.mkdir("static/d");
    t.symlink(t.join("secret.txt"), "static/d/index.html");
    let s = Server::start_in(&t, &traversal_ini("disable_symlinks = on"));
    assert_refused(s.port, b"/static/d/");
}
