//! `X-Accel-Redirect` from Django (protected downloads): uwgate serves the named file from an
//! `internal = on` static location, which clients cannot reach directly.

#[path = "common/mod.rs"]
mod common;
#[path = "uwsgi_support/mod.rs"]
mod uwsgi_support;

use uwsgi_support::{django_dir, get, logs, start_gate, Uwsgi};

#[test]
fn x_accel_redirect_serves_the_protected_file() {
    let up = Uwsgi::start_default();
    let gate = start_gate(&[&up]);
    let secret = std::fs::read(django_dir().join("protected/secret.txt")).expect("secret.txt");
    let r = get(gate.port, "/protected");
    assert_eq!(r.status, 200, "{}{}", r.head_raw, logs(&gate, &up));
    assert_eq!(r.body, secret);
    assert_eq!(
        r.header("content-length")
            .map(|v| v.parse::<usize>().unwrap()),
        Some(secret.len())
    );
    assert!(r.header("x-accel-redirect").is_none(), "{}", r.head_raw);
}

#[test]
fn x_accel_redirect_keeps_the_app_s_content_disposition_like_nginx() {
    let up = Uwsgi::start_default();
    let gate = start_gate(&[&up]);
    let r = get(gate.port, "/protected");
    assert_eq!(r.status, 200, "{}", r.head_raw);
    assert_eq!(
        r.header("content-disposition"),
        Some("attachment; filename=\"secret.txt\""),
        "{}",
        r.head_raw
    );
}

#[test]
fn the_internal_location_is_404_to_clients() {
    let up = Uwsgi::start_default();
    let gate = start_gate(&[&up]);
    let r = get(gate.port, "/protected/secret.txt");
    assert_eq!(r.status, 404, "{}", r.head_raw);
    assert!(!r.text().contains("X-Accel-Redirect"));
    assert!(
        !up.log().contains("/protected/secret.txt"),
        "not forwarded to Django either"
    );
}

#[test]
fn x_accel_redirect_to_a_missing_file_is_404() {
    let up = Uwsgi::start_default();
    let gate = start_gate(&[&up]);
    let r = get(gate.port, "/protected?to=/protected/not-there.txt");
    assert_eq!(r.status, 404, "{}{}", r.head_raw, logs(&gate, &up));
}

#[test]
fn head_of_an_accel_redirect_has_the_file_s_length_and_no_body() {
    let up = Uwsgi::start_default();
    let gate = start_gate(&[&up]);
    let secret = std::fs::read(django_dir().join("protected/secret.txt")).expect("secret.txt");
    let mut c = common::Client::connect(gate.port);
    c.send(
        format!(
            "HEAD /protected HTTP/1.1\r\nHost: localhost:{}\r\n\r\n",
            gate.port
        )
        .as_bytes(),
    );
    let r = c.read_head_response();
    assert_eq!(r.status, 200, "{}", r.head_raw);
    assert_eq!(
        r.header("content-length"),
        Some(secret.len().to_string().as_str())
    );
    assert!(c.is_silent_for(std::time::Duration::from_millis(300)));
}
