//! The command line and the one ini file: `-t` (ok / error, exit 0 / 1), `FILE:LINE: message`
//! for every bad line, `--version`, `--help`, exit 1 on a bad config before anything listens,
//! and the ini syntax users rely on (comments, repeatable keys, sizes, durations, booleans,
//! `%(here)s`, `%(ENV_X)s`, `[uwsgi]` sections left alone).

mod common;
use common::*;

use std::net::TcpStream;
use std::time::Duration;

/// Writes `text` (after `{DIR}`/`{PORT}` substitution) to `{DIR}/uwgate.ini`, runs `-t -c`.
fn check(t: &TempTree, text: &str) -> (i32, String, std::path::PathBuf) {
    let ini = t.join("uwgate.ini");
    std::fs::write(&ini, t.render(text, free_port())).expect("write ini");
    let (st, out, err) = run_cli(&["-t", "-c", ini.to_str().expect("utf-8 path")]);
    (st.code().unwrap_or(-1), format!("{}{}", out, err), ini)
}

/// 1-based line number of the first line containing `marker`.
fn line_of(text: &str, marker: &str) -> usize {
    text.lines()
        .position(|l| l.contains(marker))
        .unwrap_or_else(|| panic!("marker {:?} not in ini", marker))
        + 1
}

/// `-t` must fail with exit 1 and `uwgate.ini:LINE:` naming the line holding `marker`, and the
/// message must mention `mention`.
fn assert_config_error(name: &str, text: &str, marker: &str, mention: &str) {
    let t = TempTree::new(name);
    let (code, out, _) = check(&t, text);
    assert_eq!(code, 1, "-t on a bad config must exit 1; output:\n{}", out);
    let line = line_of(text, marker);
    let want = format!("uwgate.ini:{}:", line);
    assert!(
        out.contains(&want),
        "error must name FILE:LINE ({}) for {:?}; output:\n{}",
        want,
        marker,
        out
    );
    assert!(
        out.contains(mention),
        "error must mention {:?}; output:\n{}",
        mention,
        out
    );
    assert!(
        !out.contains("syntax is ok"),
        "said ok on a bad config:\n{}",
        out
    );
}

const GOOD: &str = "[uwgate]\n\
syslog = stderr\n\
temp_path = {DIR}/tmp\n\
worker_connections = 64\n\
\n\
[server]\n\
listen = 127.0.0.1:{PORT}\n\
server_name = example.test\n\
\n\
[location:/static/]\n\
alias = {DIR}/static/\n\
gzip_static = on\n\
expires = 30d\n";

#[test]
fn check_flag_on_a_good_config_says_syntax_ok_and_exits_0() {
    let t = TempTree::new("t_ok");
    t.mkdir("static");
    let (code, out, ini) = check(&t, GOOD);
    assert_eq!(code, 0, "output:\n{}", out);
    assert!(out.contains("syntax is ok"), "output:\n{}", out);
    assert!(
        out.contains(ini.to_str().unwrap_or("?")) || out.contains("uwgate.ini"),
        "should name the file checked:\n{}",
        out
    );
}

#[test]
fn check_flag_does_not_start_serving() {
    let t = TempTree::new("t_no_listen");
    t.mkdir("static");
    let port = free_port();
    let ini = t.join("uwgate.ini");
    std::fs::write(&ini, t.render(GOOD, port)).expect("write");
    let (st, _, _) = run_cli(&["-t", "-c", ini.to_str().expect("path")]);
    assert!(st.success());
    assert!(
        TcpStream::connect_timeout(
            &format!("127.0.0.1:{}", port).parse().expect("addr"),
            Duration::from_millis(300)
        )
        .is_err(),
        "something listens after -t"
    );
}

#[test]
fn unknown_key_is_reported_with_file_line_and_key() {
    let text = "[uwgate]\nsyslog = stderr\n\n[server]\nlisten = 127.0.0.1:{PORT}\n\n\
                [location:/static/]\nalais = {DIR}/static/\n";
    assert_config_error("unknown_key", text, "alais", "alais");
}

#[test]
fn unknown_section_is_an_error() {
    let text = "[uwgate]\nsyslog = stderr\n\n[server]\nlisten = 127.0.0.1:{PORT}\n\n[sever]\nlisten = 81\n";
    assert_config_error("unknown_section", text, "[sever]", "sever");
}

#[test]
fn duplicate_single_valued_key_is_an_error_on_the_second_line() {
    let text = "[uwgate]\nsyslog = stderr\n\n[server]\nlisten = 127.0.0.1:{PORT}\n\n\
                [location:/static/]\nalias = {DIR}/static/\nexpires = 1h\nexpires = 2h\n";
    assert_config_error("dup_key", text, "expires = 2h", "expires");
}

#[test]
fn key_in_the_wrong_section_is_an_error() {
    let text = "[uwgate]\nsyslog = stderr\nalias = /srv\n\n[server]\nlisten = 127.0.0.1:{PORT}\n";
    assert_config_error("wrong_section", text, "alias = /srv", "alias");
}

#[test]
fn key_before_any_section_is_an_error() {
    let text = "listen = 80\n[server]\nlisten = 127.0.0.1:{PORT}\n";
    assert_config_error("no_section", text, "listen = 80", "listen");
}

#[test]
fn line_without_equals_is_an_error() {
    let text =
        "[uwgate]\nsyslog = stderr\njust some words\n\n[server]\nlisten = 127.0.0.1:{PORT}\n";
    assert_config_error("no_equals", text, "just some words", "uwgate.ini");
}

#[test]
fn bad_size_is_an_error() {
    let text = "[uwgate]\nsyslog = stderr\nclient_max_body_size = 10x\n\n[server]\nlisten = 127.0.0.1:{PORT}\n";
    assert_config_error(
        "bad_size",
        text,
        "client_max_body_size",
        "client_max_body_size",
    );
}

#[test]
fn bad_duration_is_an_error() {
    let text = "[uwgate]\nsyslog = stderr\nkeepalive_timeout = soon\n\n[server]\nlisten = 127.0.0.1:{PORT}\n";
    assert_config_error(
        "bad_duration",
        text,
        "keepalive_timeout",
        "keepalive_timeout",
    );
}

#[test]
fn bad_limit_in_a_server_or_location_is_an_error() {
    let text = "[uwgate]\nsyslog = stderr\n\n[server]\nlisten = 127.0.0.1:{PORT}\n\
                keepalive_requests = lots\n";
    assert_config_error(
        "bad_server_limit",
        text,
        "keepalive_requests",
        "keepalive_requests",
    );
    let text = "[uwgate]\nsyslog = stderr\n\n[server]\nlisten = 127.0.0.1:{PORT}\n\n\
                [location:/static/]\nalias = {DIR}/static/\nmax_ranges = -1\n";
    assert_config_error("bad_location_limit", text, "max_ranges", "max_ranges");
}

#[test]
fn misplaced_server_name_wildcard_is_an_error() {
    let text = "[uwgate]\nsyslog = stderr\n\n[server]\nlisten = 127.0.0.1:{PORT}\n\
                server_name = www.*.example.com\n";
    assert_config_error("bad_wildcard", text, "server_name", "server_name");
}

#[test]
fn bad_boolean_is_an_error() {
    let text = "[uwgate]\nsyslog = stderr\n\n[server]\nlisten = 127.0.0.1:{PORT}\n\n\
                [location:/static/]\nalias = {DIR}/static/\ngzip_static = maybe\n";
    assert_config_error("bad_bool", text, "gzip_static", "gzip_static");
}

#[test]
fn bad_listen_address_is_an_error() {
    let text = "[uwgate]\nsyslog = stderr\n\n[server]\nlisten = 127.0.0.1:99999\n";
    assert_config_error("bad_listen", text, "listen", "listen");
}

#[test]
fn bad_syslog_target_is_an_error() {
    let text = "[uwgate]\nsyslog = carrier-pigeon\n\n[server]\nlisten = 127.0.0.1:{PORT}\n";
    assert_config_error("bad_syslog", text, "syslog", "syslog");
}

#[test]
fn bad_expires_is_an_error() {
    let text = "[uwgate]\nsyslog = stderr\n\n[server]\nlisten = 127.0.0.1:{PORT}\n\n\
                [location:/static/]\nalias = {DIR}/static/\nexpires = sometimes\n";
    assert_config_error("bad_expires", text, "expires", "expires");
}

#[test]
fn accepted_value_forms_pass_the_check() {
    let t = TempTree::new("value_forms");
    t.mkdir("static");
    let text = "; a comment\n# another comment\n[uwgate]\n\
                syslog = stderr   ; inline comment after whitespace\n\
                temp_path = {DIR}/tmp\n\
                client_header_buffer_size = 8k\n\
                buffer_size = 16K\n\
                client_max_body_size = 10m\n\
                client_header_timeout = 500ms\n\
                client_body_timeout = 60s\n\
                send_timeout = 5m\n\
                keepalive_timeout = 1h\n\
                shutdown_timeout = 30\n\
                access_log = off\n\
                server_tokens = false\n\
                \n\
                [server]\n\
                listen = 127.0.0.1:{PORT}\n\
                listen = 127.0.0.1:1\n\
                server_name = a.test *.b.test .c.test www.d.*\n\
                keepalive_timeout = 30s\n\
                keepalive_requests = 100\n\
                client_max_body_size = 0\n\
                \n\
                [location:/static/]\n\
                alias = {DIR}/static/\n\
                index = index.html index.htm\n\
                gzip_static = yes\n\
                disable_symlinks = 1\n\
                expires = 30d\n\
                max_ranges = 1\n\
                send_timeout = 5m\n\
                \n\
                [location:/other/]\n\
                root = {DIR}\n\
                gzip_static = no\n\
                expires = epoch\n\
                charset = off\n\
                client_body_timeout = 10s\n\
                keepalive_timeout = 0\n\
                \n\
                [location:/max/]\n\
                root = {DIR}\n\
                expires = max\n\
                \n\
                [uwsgi]\n\
                socket = 127.0.0.1:8000\n\
                module = whatever.wsgi\n\
                processes = 5\n\
                \n\
                [uwsgi:extra]\n\
                anything-goes = here\n";
    let (code, out, _) = check(&t, text);
    assert_eq!(code, 0, "output:\n{}", out);
    assert!(out.contains("syntax is ok"), "{}", out);
}

#[test]
fn the_config_md_example_passes_the_check() {
    // ../shared/CONFIG.md's own example (user/group dropped: that account need not exist here;
    // temp_path pointed at a writable place).
    let t = TempTree::new("config_md");
    let text = "[uwgate]\n\
pidfile = /run/uwgate.pid\n\
worker_connections = 1024\n\
client_header_buffer_size = 8k\n\
buffer_size = 16k\n\
client_max_body_size = 1m\n\
temp_path = {DIR}/tmp\n\
client_header_timeout = 60s\n\
client_body_timeout = 60s\n\
send_timeout = 60s\n\
keepalive_timeout = 75s\n\
syslog = unix:/dev/log\n\
syslog_facility = daemon\n\
syslog_tag = uwgate\n\
access_log = on\n\
error_log_level = info\n\
\n\
[server]\n\
listen = 80\n\
server_name = django.blog\n\
\n\
[location:/static/]\n\
alias = /django/DjangoBlog/collectedstatic/\n\
index = index.html\n\
gzip_static = on\n\
expires = 30d\n\
\n\
[location:/]\n\
uwsgi_pass = 127.0.0.1:8000\n\
uwsgi_param = UWSGI_SCHEME https\n\
uwsgi_connect_timeout = 60s\n\
uwsgi_read_timeout = 60s\n\
uwsgi_send_timeout = 60s\n\
\n\
[location:/uwgate_status]\n\
stub_status = on\n\
allow = 127.0.0.1\n\
deny = all\n\
\n\
[program:django]\n\
command = /opt/venv/bin/uwsgi --ini %(here)s/uwgate.ini\n\
directory = /django/DjangoBlog\n\
autostart = true\n\
startsecs = 10\n\
startretries = 3\n\
autorestart = true\n\
exitcodes = 0\n\
stopsignal = QUIT\n\
stopwaitsecs = 10\n\
stopasgroup = true\n\
killasgroup = true\n\
priority = 999\n\
numprocs = 1\n\
environment = DJANGO_SETTINGS_MODULE=\"blog.settings\",LANG=\"en_US.UTF-8\"\n\
\n\
[uwsgi]\n\
socket = 127.0.0.1:8000\n\
chdir = /django/DjangoBlog\n\
module = djangoblog.wsgi\n\
processes = 5\n\
master = true\n";
    let (code, out, _) = check(&t, text);
    assert_eq!(code, 0, "output:\n{}", out);
}

#[test]
fn locations_without_a_server_section_pass_the_check() {
    let t = TempTree::new("no_server");
    let text = "[uwgate]\nsyslog = stderr\ntemp_path = {DIR}/tmp\n\n[location:/static/]\nalias = {DIR}/static/\n";
    let (code, out, _) = check(&t, text);
    assert_eq!(code, 0, "output:\n{}", out);
}

#[test]
fn missing_config_file_exits_1_and_names_it() {
    let t = TempTree::new("missing_file");
    let p = t.join("does-not-exist.ini");
    let (st, out, err) = run_cli(&["-t", "-c", p.to_str().expect("path")]);
    assert_eq!(st.code(), Some(1), "{}{}", out, err);
    assert!(
        format!("{}{}", out, err).contains("does-not-exist.ini"),
        "{}{}",
        out,
        err
    );
}

#[test]
fn version_flag_prints_the_version_and_exits_0() {
    let (st, out, err) = run_cli(&["--version"]);
    assert!(st.success(), "{:?} {}{}", st, out, err);
    assert!(
        format!("{}{}", out, err).contains(version()),
        "--version output lacks {}: {}{}",
        version(),
        out,
        err
    );
}

#[test]
fn help_flag_lists_the_options_and_exits_0() {
    let (st, out, err) = run_cli(&["--help"]);
    assert!(st.success(), "{:?}", st);
    let all = format!("{}{}", out, err);
    for opt in ["-c", "-t", "-f"] {
        assert!(
            all.contains(opt),
            "--help does not mention {}:\n{}",
            opt,
            all
        );
    }
}

#[test]
fn unknown_option_exits_nonzero() {
    let (st, _, _) = run_cli(&["--no-such-option"]);
    assert!(!st.success());
}

#[test]
fn starting_with_a_bad_config_exits_1_before_listening() {
    let t = TempTree::new("start_bad");
    let port = free_port();
    let text = "[uwgate]\nsyslog = stderr\n\n[server]\nlisten = 127.0.0.1:{PORT}\n\n\
                [location:/static/]\nalais = {DIR}/static/\n";
    let ini = t.join("uwgate.ini");
    std::fs::write(&ini, t.render(text, port)).expect("write");
    let (st, out, err) = run_cli(&["-f", "-c", ini.to_str().expect("path")]);
    assert_eq!(st.code(), Some(1), "{}{}", out, err);
    let all = format!("{}{}", out, err);
    assert!(
        all.contains(&format!("uwgate.ini:{}:", line_of(text, "alais"))),
        "{}",
        all
    );
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
}

#[test]
fn port_already_in_use_exits_nonzero_with_a_message() {
    let t = TempTree::new("bind_conflict");
    let holder = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = holder.local_addr().expect("addr").port();
    let ini = t.join("uwgate.ini");
    std::fs::write(&ini, t.render(&static_ini("", ""), port)).expect("write");
    let (st, out, err) = run_cli(&["-f", "-c", ini.to_str().expect("path")]);
    assert!(!st.success(), "started despite the port being taken");
    let all = format!("{}{}", out, err).to_lowercase();
    assert!(
        all.contains("in use") || all.contains(&port.to_string()) || all.contains("bind"),
        "no useful message: {}",
        all
    );
}

#[test]
fn here_expands_to_the_ini_directory() {
    let t = TempTree::new("here");
    t.write("static/x.txt", "via here");
    let s = Server::start_in(
        &t,
        &ini("", "[location:/static/]\nalias = %(here)s/static/\n"),
    );
    let r = s.get("/static/x.txt");
    assert_eq!(r.status, 200, "{}", r.head_raw);
    assert_eq!(r.body, b"via here");
}

#[test]
fn env_reference_expands_from_the_environment() {
    let t = TempTree::new("env");
    t.write("static/x.txt", "via env");
    let dir = t.path().to_string_lossy().into_owned();
    let s = Server::start_in_env(
        &t,
        &ini(
            "",
            "[location:/static/]\nalias = %(ENV_UWGATE_TEST_ROOT)s/static/\n",
        ),
        &[("UWGATE_TEST_ROOT", &dir)],
    );
    let r = s.get("/static/x.txt");
    assert_eq!(r.status, 200, "{}", r.head_raw);
    assert_eq!(r.body, b"via env");
}

#[test]
fn inline_comment_after_whitespace_is_not_part_of_the_value() {
    let t = TempTree::new("inline_comment");
    t.write("static/x.txt", "commented");
    let s = Server::start_in(
        &t,
        &ini(
            "; leading comment",
            "# hash comment\n[location:/static/]\nalias = {DIR}/static/   ; where the files are\n",
        ),
    );
    let r = s.get("/static/x.txt");
    assert_eq!(r.status, 200, "{}", r.head_raw);
    assert_eq!(r.body, b"commented");
}

#[test]
fn repeated_listen_serves_on_every_address() {
    let t = TempTree::new("two_listens");
    t.write("static/x.txt", "both");
    let second = free_port();
    let text = static_ini("", "").replace(
        "listen = 127.0.0.1:{PORT}\n",
        &format!(
            "listen = 127.0.0.1:{{PORT}}\nlisten = 127.0.0.1:{}\n",
            second
        ),
    );
    let s = Server::start_in(&t, &text);
    assert_eq!(s.get("/static/x.txt").body, b"both");
    assert_eq!(get(second, "/static/x.txt").body, b"both");
}

#[test]
fn shipped_default_config_passes_the_check() {
    let ini = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("rootfs/etc/uwgate.ini");
    assert!(ini.exists(), "{} is missing", ini.display());
    let (st, out, err) = run_cli(&["-t", "-c", ini.to_str().expect("path")]);
    assert!(st.success(), "{}{}", out, err);
    assert!(format!("{}{}", out, err).contains("syntax is ok"));
}
