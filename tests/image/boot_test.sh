#!/usr/bin/env bash
# tests/image/boot_test.sh DIR IMAGE — boots the appliance image under QEMU and tests it from
# the host (make image-test runs fetch.sh, initramfs.sh, then this).
#
# The guest: Debian's kernel (DIR/kernel), DIR/initramfs.cpio.gz (busybox init, modules, the
# backend, the site config), and IMAGE — the ext4 image `make image` built — as a read-only
# virtio disk that the guest installs onto its root. QEMU runs under TCG (software emulation,
# so it needs no /dev/kvm), with user networking: the guest's port 80 forwarded to
# 127.0.0.1:PORT only, and the guest isolated from everything else (restrict=on).
#
# The host talks to the guest two ways: HTTP through the forwarded port, and the serial
# console, whose output QEMU writes to DIR/run/console.log and whose input is a FIFO this
# script writes commands into. The guest runs each line it receives (tests/image/guest/console),
# so "kill the backend inside the guest" is a real `kill -9 $(pidof uwsgi_backend)` typed on the
# console, and its result comes back as a line `@@TAG=STATUS` that the script waits for (the
# typed command itself is echoed as `@@TAG=$((0+$?))`, which never matches).
#
# Checks: a static file (bytes, headers, a range), a forwarded dynamic response, a request body
# spooled through temp_path after the privilege drop, stub_status (nginx text and JSON with the
# programs), the backend killed and served again by a new process, the init script's status,
# reload, an in-place upgrade to a new binary (same pid, same backend), stop, and uwgate's
# syslog lines (its own, the program's output, the access log) read from the console. Measures boot-to-first-byte and kill-to-served times. QEMU is stopped
# by its PID on every exit path. Prints "N passed, N failed" last.
set -euo pipefail

dir=$(cd "${1:?usage: boot_test.sh DIR IMAGE}" && pwd)
image=$(cd "$(dirname "${2:?usage: boot_test.sh DIR IMAGE}")" && pwd)/$(basename "$2")
here=$(cd "$(dirname "$0")" && pwd)
accel=tcg
boot_timeout=${IMAGE_TEST_BOOT_TIMEOUT:-180}

kernel=$(find "$dir/kernel/boot" -name 'vmlinuz-*' | head -n 1)
initrd=$dir/initramfs.cpio.gz
for f in "$kernel" "$initrd" "$image"; do
    [ -r "$f" ] || { echo "image-test: missing $f (make image-test builds it)" >&2; exit 1; }
done

run=$dir/run
rm -rf "$run"
mkdir -p "$run"
console=$run/console.log
fifo=$run/console.in
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
base=http://127.0.0.1:$port

passed=0
failed=0
qpid=

now_ms() { echo $(($(date +%s%N) / 1000000)); }

# qemu_alive: QEMU runs (an exited one stays a zombie of this script until waited for).
qemu_alive() {
    [ -n "$qpid" ] && [ -r "/proc/$qpid/stat" ] && [ "$(cut -d' ' -f3 "/proc/$qpid/stat")" != Z ]
}

cleanup() {
    if qemu_alive; then
        kill "$qpid" 2>/dev/null || true
        for _ in 1 2 3 4 5 6 7 8 9 10; do
            qemu_alive || break
            sleep 0.5
        done
        kill -9 "$qpid" 2>/dev/null || true
    fi
    [ -z "$qpid" ] || wait "$qpid" 2>/dev/null || true
    exec 3>&- 2>/dev/null || true
    rm -f "$fifo"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

ok() {
    passed=$((passed + 1))
    echo "ok - $*"
}

not_ok() {
    failed=$((failed + 1))
    echo "not ok - $*"
}

# check DESCRIPTION COMMAND...: runs COMMAND, counts the result.
check() {
    local what=$1
    shift
    if "$@"; then ok "$what"; else not_ok "$what"; fi
}

finish() {
    echo "--- console (last 30 lines of $console)"
    tail -n 30 "$console" | tr -d '\r'
    echo "$passed passed, $failed failed"
    [ "$failed" -eq 0 ]
}

# abort WHY: a step the rest depends on failed.
abort() {
    not_ok "$*"
    finish || true
    exit 1
}

# http PATH [CURL ARGS...]: GET (or whatever the args say) into $run/body and $run/head;
# prints the status code (000 when nothing answered).
http() {
    local path=$1
    shift
    curl -s --max-time 10 -o "$run/body" -D "$run/head" -w '%{http_code}' "$@" "$base$path" ||
        true
}

header() { tr -d '\r' < "$run/head" | sed -n "s/^$1: //Ip" | head -n 1; }

# console_wait REGEX SECONDS: waits for a console line matching REGEX; prints the last match.
console_wait() {
    local deadline=$(($(now_ms) + $2 * 1000))
    while [ "$(now_ms)" -lt "$deadline" ]; do
        if tr -d '\r' < "$console" | grep -E "$1" > "$run/match"; then
            tail -n 1 "$run/match"
            return 0
        fi
        qemu_alive || return 1
        sleep 0.2
    done
    return 1
}

# guest TAG COMMAND: types COMMAND on the guest console, waits up to 60 s for it to finish and
# prints its exit status (or "timeout").
guest() {
    local tag=$1 cmd=$2 line
    # shellcheck disable=SC2016 # expanded by the guest's shell, not here
    printf '%s; echo "@@%s=$((0+$?))"\n' "$cmd" "$tag" >&3
    if line=$(console_wait "^@@$tag=[0-9]+\$" 60); then
        echo "${line#*=}"
    else
        echo timeout
    fi
}

# json_check PYTHON-EXPRESSION: evaluates the expression with `s` = the JSON status in $run/body.
json_check() {
    python3 -c 'import json, sys; s = json.load(open(sys.argv[1])); sys.exit(0 if eval(sys.argv[2]) else 1)' \
        "$run/body" "$1" 2>/dev/null
}

backend_pid() { sed -n 's/^uwsgi_backend pid=\([0-9]*\) .*/\1/p' "$run/body"; }

# --- boot ------------------------------------------------------------------------------------
mkfifo "$fifo"
exec 3<>"$fifo"
echo "image-test: booting $(basename "$kernel") + $(basename "$image") under qemu ($accel)," \
    "guest port 80 on 127.0.0.1:$port"
t0=$(now_ms)
qemu-system-x86_64 -accel "$accel" -m 512 -smp 1 -nographic -serial stdio -monitor none \
    -no-reboot -kernel "$kernel" -initrd "$initrd" \
    -append "console=ttyS0 loglevel=4 panic=-1" \
    -drive "file=$image,format=raw,if=virtio,readonly=on" \
    -netdev "user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:$port-:80" \
    -device e1000,netdev=net0,romfile= \
    <&3 >"$console" 2>&1 &
qpid=$!
echo "$qpid" > "$run/qemu.pid"

# Until the guest's NIC is up, QEMU's user network holds a forwarded connection open while it
# retries the SYN, so each attempt is cut after half a second and the next starts at once.
code=000
ready_ms=
deadline=$((t0 + boot_timeout * 1000))
while [ "$(now_ms)" -lt "$deadline" ]; do
    qemu_alive || abort "qemu exited during boot"
    if [ -z "$ready_ms" ] && grep -q '^guest: init script returned' "$console"; then
        ready_ms=$(($(now_ms) - t0))
    fi
    code=$(http /static/index.html --max-time 0.5)
    [ "$code" = 200 ] && break
    sleep 0.1
done
boot_ms=$(($(now_ms) - t0))
[ "$code" = 200 ] || abort "no answer on $base within ${boot_timeout}s"
ok "boot: first byte from the guest after $boot_ms ms (init script done at ${ready_ms:-?} ms)"
console_wait '^guest: console ready' 30 > /dev/null || abort "the guest console did not come up"

# --- static files ----------------------------------------------------------------------------
check "static: /static/index.html has the file's bytes" cmp -s "$run/body" "$here/guest/www/static/index.html"
check "static: Server: uwgate/..." test -n "$(header Server | grep '^uwgate')"
check "static: expires = 1h gives Cache-Control: max-age=3600" test "$(header Cache-Control)" = "max-age=3600"
big=$dir/initramfs/srv/www/static/big.bin
code=$(http /static/big.bin)
check "static: big.bin (300000 bytes, sendfile) arrives intact" \
    test "$code $(sha256sum < "$run/body")" = "200 $(sha256sum < "$big")"
code=$(http /static/big.bin -r 1000-1999)
check "static: a range request gives 206 and the range" \
    test "$code $(wc -c < "$run/body") $(header Content-Range)" = "206 1000 bytes 1000-1999/300000"

# --- forwarded to the supervised backend -----------------------------------------------------
code=$(http '/app/hello?x=1')
pid1=$(backend_pid)
check "uwsgi: /app/hello?x=1 is answered by the backend" \
    test "$code $(sed 's/pid=[0-9]*/pid=N/' "$run/body")" = "200 uwsgi_backend pid=N method=GET path=/app/hello query=x=1 body=0"
head -c 200000 /dev/zero > "$run/upload"
code=$(http /app/upload --data-binary "@$run/upload" -H 'Content-Type: application/octet-stream')
check "uwsgi: a 200000-byte body is spooled (temp_path, as user nginx) and forwarded whole" \
    grep -q "^uwsgi_backend pid=$pid1 method=POST path=/app/upload query= body=200000\$" "$run/body"

# --- status ----------------------------------------------------------------------------------
code=$(http /uwgate_status)
check "stub_status: nginx's text format" python3 -c '
import re, sys
t = open(sys.argv[1]).read()
sys.exit(0 if re.fullmatch(r"Active connections: \d+ \nserver accepts handled requests\n \d+ \d+ \d+ \nReading: \d+ Writing: \d+ Waiting: \d+ \n", t) else 1)' "$run/body"
code=$(http '/uwgate_status?format=json')
check "stub_status: ?format=json lists backend RUNNING with pid $pid1" \
    json_check "[p for p in s['programs'] if p['name'] == 'backend' and p['state'] == 'RUNNING' and p['pid'] == $pid1]"
cp "$run/body" "$run/status-before-kill.json"

# --- kill the backend inside the guest; uwgate restarts it -----------------------------------
t_kill=$(now_ms)
# shellcheck disable=SC2016 # expanded by the guest's shell, not here
status=$(guest kill 'kill -9 $(pidof uwsgi_backend)')
check "watchdog: kill -9 of the backend inside the guest (exit status $status)" test "$status" = 0
pid2=
while [ "$(now_ms)" -lt $((t_kill + 30000)) ]; do
    code=$(http /app/after-kill --max-time 2)
    pid2=$(backend_pid)
    if [ "$code" = 200 ] && [ -n "$pid2" ] && [ "$pid2" != "$pid1" ]; then break; fi
    sleep 0.1
done
restart_ms=$(($(now_ms) - t_kill))
check "watchdog: served again by a new backend (pid $pid1 -> ${pid2:-none}) after $restart_ms ms" \
    test "$code" = 200 -a -n "$pid2" -a "$pid2" != "$pid1"
code=$(http '/uwgate_status?format=json')
cp "$run/body" "$run/status-after-kill.json"
check "stub_status: JSON shows the restart (pid $pid2, restarts >= 1, last exit SIGKILL)" \
    json_check "[p for p in s['programs'] if p['name'] == 'backend' and p['state'] == 'RUNNING' and p['pid'] == ${pid2:-0} and p['restarts'] >= 1 and 'SIGKILL' in (p['last_exit'] or '')]"

# --- uwgate ctl inside the guest ----------------------------------------------------------------
check "ctl: uwgate ctl status inside the guest exits 0" test "$(guest ctlstatus 'uwgate ctl status')" = 0
check "ctl: its line says backend RUNNING with pid ${pid2:-?}" \
    console_wait "^backend +RUNNING +pid ${pid2:-0}, uptime [0-9]+:[0-9]{2}:[0-9]{2}\$" 5
check "ctl: uwgate ctl restart backend prints stopped, started" \
    test "$(guest ctlrestart 'uwgate ctl restart backend | tr "\n" " " | grep -qx "backend: stopped backend: started "')" = 0
code=$(http '/app/after-ctl-restart')
pid3=$(backend_pid)
check "uwsgi: served by the restarted backend (pid $pid2 -> ${pid3:-none})" \
    test "$code" = 200 -a -n "$pid3" -a "$pid3" != "$pid2"

# --- the image's init script -----------------------------------------------------------------
check "init script: status says running" test "$(guest status '/etc/init.d/uwgate status')" = 0
check "init script: reload (uwgate -t, then -s reload)" test "$(guest reload '/etc/init.d/uwgate reload')" = 0
check "init script: reload reaches uwgate (SIGHUP logged)" console_wait 'uwgate\[[0-9]+\]: .*(SIGHUP|signal 1 |reload)' 20
code=$(http '/app/after-reload')
check "uwsgi: still served after the reload" test "$code" = 200

# --- in-place upgrade: a new binary installed over /usr/sbin/uwgate, taken in the same pid ---
# (the upgrade-test build, which reports VERSION+upgrade-test, stands for the next firmware's)
# shellcheck disable=SC2016 # expanded by the guest's shell, not here
status=$(guest install 'cat /run/uwgate.pid > /tmp/pid.before && cp /test/uwgate.next /usr/sbin/uwgate.new && mv /usr/sbin/uwgate.new /usr/sbin/uwgate')
check "upgrade: a new binary installed over /usr/sbin/uwgate (exit status $status)" test "$status" = 0
t_upgrade=$(now_ms)
status=$(guest upgrade '/etc/init.d/uwgate upgrade')
upgrade_ms=$(($(now_ms) - t_upgrade))
check "upgrade: /etc/init.d/uwgate upgrade (exit status $status, $upgrade_ms ms on the console)" test "$status" = 0
# shellcheck disable=SC2016 # expanded by the guest's shell, not here
status=$(guest samepid '[ "$(cat /tmp/pid.before)" = "$(cat /run/uwgate.pid)" ] && [ "$(readlink /proc/$(cat /run/uwgate.pid)/exe)" = /usr/sbin/uwgate ]')
check "upgrade: the same uwgate pid now runs the new /usr/sbin/uwgate" test "$status" = 0
code=$(http '/uwgate_status?format=json')
check "upgrade: the JSON status shows the new version and backend pid $pid3 still RUNNING" \
    json_check "s['version'].endswith('+upgrade-test') and [p for p in s['programs'] if p['name'] == 'backend' and p['state'] == 'RUNNING' and p['pid'] == ${pid3:-0}]"
code=$(http '/app/after-upgrade')
check "upgrade: forwarded by the new version to the same backend (pid $(backend_pid), $(header Server))" \
    test "$code $(backend_pid) $(header Server | grep -c upgrade-test)" = "200 $pid3 1"
check "syslog: the upgrade logged" \
    console_wait '^syslog: .* uwgate\[[0-9]+\]: upgraded in place from [0-9.]+ to [0-9.]+\+upgrade-test' 10

# --- uwgate's syslog lines, read from the guest console --------------------------------------
check "syslog: uwgate's start line" console_wait '^syslog: .* uwgate\[[0-9]+\]: uwgate [0-9.]+ started' 5
check "syslog: the backend's own output under its program name" \
    console_wait '^syslog: .* backend\[[0-9]+\]: uwsgi_backend: listening on 127\.0\.0\.1:8000' 5
check "syslog: the backend's exit by SIGKILL" console_wait '^syslog: .* uwgate\[[0-9]+\]: .*backend.*SIGKILL' 5
check "syslog: the backend respawned" console_wait "^syslog: .* uwgate\\[[0-9]+\\]: spawned: 'backend' with pid $pid2" 5
check "syslog: access log lines on their own tag" \
    console_wait '^syslog: .* uwgate-access(\[[0-9]+\])?: 10\.0\.2\.2 - - \[.*\] "GET /static/index\.html HTTP/1\.1" 200 ' 5

# --- stop --------------------------------------------------------------------------------------
check "init script: stop" test "$(guest stop '/etc/init.d/uwgate stop')" = 0
check "init script: status after stop says stopped (3)" test "$(guest stopped '/etc/init.d/uwgate status')" = 3
check "stop: no backend left running" test "$(guest leftover 'pidof uwsgi_backend')" = 1
check "syslog: uwgate stopped the backend and exited" console_wait '^syslog: .* uwgate\[[0-9]+\]: exiting' 10
code=$(http /static/index.html --max-time 3)
check "stop: port 80 no longer answers" test "$code" = 000

# QEMU exits by itself (status 0) when the guest powers off; after 30 s it is stopped instead.
# Once it is seen exiting, `wait` collects its status (its threads may still be going away).
printf 'poweroff -f\n' >&3
exiting=no
for _ in $(seq 1 150); do
    if ! qemu_alive; then
        exiting=yes
        break
    fi
    sleep 0.2
done
[ "$exiting" = yes ] || kill "$qpid" 2>/dev/null || true
qemu_status=0
wait "$qpid" || qemu_status=$?
qpid=
check "poweroff: qemu exited by itself (status $qemu_status)" test "$qemu_status" = 0
total_ms=$(($(now_ms) - t0))

echo "image-test: boot-to-first-byte $boot_ms ms, kill-to-served $restart_ms ms, upgrade $upgrade_ms ms, whole run $total_ms ms (qemu $accel)"
echo "image-test: initramfs $(wc -c < "$initrd") bytes, kernel $(basename "$kernel") $(wc -c < "$kernel") bytes, console log $console"
finish
