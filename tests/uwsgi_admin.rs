//! The Django admin through uwgate: CSRF cookie, form POST, session cookie, redirects — the
//! round trip every Django deployment behind nginx depends on.

#[path = "common/mod.rs"]
mod common;
#[path = "uwsgi_support/mod.rs"]
mod uwsgi_support;

use common::{Client, Response};
use uwsgi_support::{logs, start_gate, Uwsgi, ADMIN_PASSWORD, ADMIN_USER};

/// `name=value` of the first Set-Cookie named `name`.
fn cookie(r: &Response, name: &str) -> Option<String> {
    r.headers_all("set-cookie").iter().find_map(|c| {
        let pair = c.split(';').next()?.trim();
        let (k, v) = pair.split_once('=')?;
        (k == name).then(|| v.to_string())
    })
}

/// The value of the hidden `csrfmiddlewaretoken` input of a Django form.
fn csrf_input(html: &str) -> String {
    let at = html
        .find("name=\"csrfmiddlewaretoken\"")
        .unwrap_or_else(|| panic!("no csrfmiddlewaretoken in {}", html));
    let rest = &html[at..];
    let v = rest.find("value=\"").expect("value") + 7;
    let end = rest[v..].find('"').expect("end quote");
    rest[v..v + end].to_string()
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{:02X}", b),
        })
        .collect()
}

fn send(
    c: &mut Client,
    port: u16,
    method: &str,
    path: &str,
    headers: &[String],
    body: &str,
) -> Response {
    let mut req = format!(
        "{} {} HTTP/1.1\r\nHost: localhost:{}\r\n",
        method, path, port
    );
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    if method == "POST" {
        req.push_str(&format!(
            "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    req.push_str("\r\n");
    req.push_str(body);
    c.send(req.as_bytes());
    c.read_response()
}

#[test]
fn admin_redirects_anonymous_users_to_the_login_page() {
    let up = Uwsgi::start_default();
    let gate = start_gate(&[&up]);
    let r = uwsgi_support::get(gate.port, "/admin/");
    assert_eq!(r.status, 302, "{}{}", r.head_raw, logs(&gate, &up));
    assert_eq!(r.header("location"), Some("/admin/login/?next=/admin/"));
}

#[test]
fn admin_login_with_csrf_cookie_and_form_post_opens_the_admin() {
    let up = Uwsgi::start_default();
    let gate = start_gate(&[&up]);
    let port = gate.port;
    let mut c = Client::connect(port);

    // 1. The login form sets the CSRF cookie and carries the form token.
    let r = send(&mut c, port, "GET", "/admin/login/?next=/admin/", &[], "");
    assert_eq!(r.status, 200, "{}{}", r.head_raw, logs(&gate, &up));
    let csrf_cookie =
        cookie(&r, "csrftoken").unwrap_or_else(|| panic!("no csrftoken: {}", r.head_raw));
    let token = csrf_input(&r.text());

    // 2. Posting the credentials logs in: 302 to /admin/ with a session cookie.
    let body = format!(
        "csrfmiddlewaretoken={}&username={}&password={}&next=%2Fadmin%2F",
        urlencode(&token),
        urlencode(ADMIN_USER),
        urlencode(ADMIN_PASSWORD)
    );
    let r = send(
        &mut c,
        port,
        "POST",
        "/admin/login/?next=/admin/",
        &[
            format!("Cookie: csrftoken={}", csrf_cookie),
            format!("Origin: http://localhost:{}", port),
            format!(
                "Referer: http://localhost:{}/admin/login/?next=/admin/",
                port
            ),
        ],
        &body,
    );
    assert_eq!(
        r.status,
        302,
        "{}{}{}",
        r.head_raw,
        r.text(),
        logs(&gate, &up)
    );
    assert_eq!(r.header("location"), Some("/admin/"), "{}", r.head_raw);
    let session = cookie(&r, "sessionid").unwrap_or_else(|| panic!("no sessionid: {}", r.head_raw));
    let csrf_cookie = cookie(&r, "csrftoken").unwrap_or(csrf_cookie); // rotated on login

    // 3. The admin index answers the session.
    let r = send(
        &mut c,
        port,
        "GET",
        "/admin/",
        &[format!(
            "Cookie: csrftoken={}; sessionid={}",
            csrf_cookie, session
        )],
        "",
    );
    assert_eq!(r.status, 200, "{}{}", r.head_raw, logs(&gate, &up));
    assert!(r.text().contains("Site administration"), "{}", r.text());
    assert!(r.text().contains(ADMIN_USER));

    // 4. Two Cookie fields instead of one work as well (merged with "; " as nginx does).
    let r = send(
        &mut c,
        port,
        "GET",
        "/admin/",
        &[
            format!("Cookie: csrftoken={}", csrf_cookie),
            format!("Cookie: sessionid={}", session),
        ],
        "",
    );
    assert_eq!(r.status, 200, "{}", r.head_raw);
    assert!(r.text().contains("Site administration"));
}

#[test]
fn a_wrong_password_stays_on_the_form() {
    let up = Uwsgi::start_default();
    let gate = start_gate(&[&up]);
    let port = gate.port;
    let mut c = Client::connect(port);
    let r = send(&mut c, port, "GET", "/admin/login/", &[], "");
    assert_eq!(r.status, 200, "{}", r.head_raw);
    let csrf_cookie = cookie(&r, "csrftoken").expect("csrftoken");
    let token = csrf_input(&r.text());
    let body = format!(
        "csrfmiddlewaretoken={}&username=admin&password=wrong&next=%2Fadmin%2F",
        urlencode(&token)
    );
    let r = send(
        &mut c,
        port,
        "POST",
        "/admin/login/",
        &[format!("Cookie: csrftoken={}", csrf_cookie)],
        &body,
    );
    assert_eq!(r.status, 200, "{}", r.head_raw);
    assert!(r
        .text()
        .contains("Please enter the correct username and password"));
    assert!(cookie(&r, "sessionid").is_none());
}

#[test]
fn a_post_without_the_csrf_token_is_refused_by_django() {
    let up = Uwsgi::start_default();
    let gate = start_gate(&[&up]);
    let mut c = Client::connect(gate.port);
    let r = send(
        &mut c,
        gate.port,
        "POST",
        "/admin/login/",
        &[],
        "username=admin&password=admin-pass-123",
    );
    assert_eq!(r.status, 403, "{}", r.head_raw);
}

#[test]
fn admin_login_page_stylesheets_and_scripts_are_served_from_the_collected_static_tree() {
    // A newcomer's first look at the admin: every /static/ asset the login page names is in
    // the demo's collected tree (`make static`, which `make run` and `make test` run).
    let collected = uwsgi_support::django_dir().join("collectedstatic/admin/css/base.css");
    assert!(
        collected.exists(),
        "{} is missing: run `make static` (make run and make test do)",
        collected.display()
    );
    let up = Uwsgi::start_default();
    let gate = start_gate(&[&up]);
    let page = uwsgi_support::get(gate.port, "/admin/login/");
    assert_eq!(page.status, 200, "{}{}", page.head_raw, logs(&gate, &up));
    let html = page.text();
    let assets: Vec<&str> = html
        .split(['"', '\''])
        .filter(|s| s.starts_with("/static/"))
        .collect();
    assert!(
        assets.contains(&"/static/admin/css/base.css"),
        "no base.css in the login page:\n{}",
        html
    );
    for asset in assets {
        let r = uwsgi_support::get(gate.port, asset);
        assert_eq!(r.status, 200, "{}: {}", asset, r.head_raw);
        let kind = r.header("content-type").unwrap_or("");
        let want = if asset.ends_with(".css") {
            "text/css"
        } else {
            "javascript"
        };
        assert!(kind.contains(want), "{}: {}", asset, kind);
    }
}
