//! Who is on the other end of a unix socket (the control socket's permission check), the
//! members of a group, and the local time (for `uwgate ctl status`, as supervisorctl prints it).
//!
//! Owns the `unsafe` of `getsockopt(SO_PEERCRED / SO_PEERGROUPS)`, `getgrnam`, `getpwnam` and
//! `localtime_r`. Keeps no state; never allocates on the loop's path (the group is looked up
//! once at start, the credentials go into the caller's fixed array).

use std::io;
use std::os::fd::RawFd;

/// `SO_PEERGROUPS` (Linux 4.13) on every architecture uwgate builds for; the libc crate does
/// not export it for musl.
const SO_PEERGROUPS: libc::c_int = 59;

/// The peer of a connected unix socket, as the kernel recorded it at `connect(2)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerCred {
    pub pid: i32,
    pub uid: u32,
    pub gid: u32,
}

/// `SO_PEERCRED` of socket `fd`.
pub fn peer_credentials(fd: RawFd) -> io::Result<PeerCred> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` is a ucred and `len` its size, as SO_PEERCRED expects.
    syscall!(getsockopt(
        fd,
        libc::SOL_SOCKET,
        libc::SO_PEERCRED,
        (&mut cred as *mut libc::ucred).cast(),
        &mut len,
    ))?;
    Ok(PeerCred {
        pid: cred.pid,
        uid: cred.uid,
        gid: cred.gid,
    })
}

/// The peer's supplementary groups (`SO_PEERGROUPS`) into `out`; the count written. Fails on
/// kernels before 4.13 (ENOPROTOOPT) and with ERANGE when the peer has more than `out` holds.
pub fn peer_groups(fd: RawFd, out: &mut [u32]) -> io::Result<usize> {
    let mut len = std::mem::size_of_val(out) as libc::socklen_t;
    // SAFETY: `out` is writable for `len` bytes of gid_t (u32 on Linux).
    syscall!(getsockopt(
        fd,
        libc::SOL_SOCKET,
        SO_PEERGROUPS,
        out.as_mut_ptr().cast(),
        &mut len,
    ))?;
    Ok(len as usize / std::mem::size_of::<u32>())
}

/// A group's gid and the uids of its listed members (`/etc/group`'s fourth field, each name
/// looked up in the passwd database; unknown names are skipped). Called once at start.
pub fn group_members(name: &str) -> io::Result<(u32, Vec<u32>)> {
    let cname = std::ffi::CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "group name contains NUL"))?;
    // getgrnam reads a NUL-terminated name and returns libc's static record (or null);
    // everything is copied out below before any other call that could reuse it.
    let gr = syscall!(raw getgrnam(cname.as_ptr()));
    if gr.is_null() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("unknown group '{name}'"),
        ));
    }
    // SAFETY: gr is non-null and points at libc's group record.
    let (gid, mut mem) = unsafe { ((*gr).gr_gid, (*gr).gr_mem) };
    let mut names: Vec<std::ffi::CString> = Vec::new();
    // gr_mem is a null-terminated array of C strings; bounded for safety.
    for _ in 0..65_536 {
        if mem.is_null() {
            break;
        }
        // SAFETY: mem points into the null-terminated gr_mem array.
        let entry = unsafe { *mem };
        if entry.is_null() {
            break;
        }
        // SAFETY: entry is a NUL-terminated string of the group record.
        names.push(unsafe { std::ffi::CStr::from_ptr(entry) }.to_owned());
        // SAFETY: the array continues until its null entry, which was not reached yet.
        mem = unsafe { mem.add(1) };
    }
    let mut uids = Vec::new();
    for n in names {
        // getpwnam reads a NUL-terminated name into a static buffer; the uid is copied out at
        // once.
        let pw = syscall!(raw getpwnam(n.as_ptr()));
        if !pw.is_null() {
            // SAFETY: pw is non-null and points at libc's passwd record.
            uids.push(unsafe { (*pw).pw_uid });
        }
    }
    Ok((gid, uids))
}

/// Local calendar time of `unix` seconds: (year, month 1–12, day, hour, minute, second).
pub fn local_time(unix: i64) -> Option<(i32, u32, u32, u32, u32, u32)> {
    // The libc crate marks musl's time_t deprecated (it will follow musl 1.2's 64-bit one); it
    // is 64-bit on every target uwgate builds for.
    #[allow(deprecated)]
    let t = libc::time_t::try_from(unix).ok()?;
    // SAFETY: an all-zero tm is a valid value to be overwritten.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // Both pointers are valid for the call; localtime_r is the reentrant form.
    let res = syscall!(raw localtime_r(&t, &mut tm));
    if res.is_null() {
        return None;
    }
    let u = |v: libc::c_int| u32::try_from(v).unwrap_or(0);
    Some((
        tm.tm_year.saturating_add(1900),
        u(tm.tm_mon).saturating_add(1),
        u(tm.tm_mday),
        u(tm.tm_hour),
        u(tm.tm_min),
        u(tm.tm_sec),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn a_socket_pair_shows_our_own_credentials_and_groups() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let cred = peer_credentials(a.as_raw_fd()).unwrap();
        assert_eq!(cred.pid as u32, std::process::id());
        // SAFETY (test): geteuid cannot fail.
        assert_eq!(cred.uid, crate::sys::geteuid());
        let mut groups = [0u32; 64];
        if let Ok(n) = peer_groups(a.as_raw_fd(), &mut groups) {
            assert!(n <= 64);
        }
    }

    #[test]
    fn root_group_exists_and_unknown_groups_are_errors() {
        let (gid, _) = group_members("root").unwrap();
        assert_eq!(gid, 0);
        assert!(group_members("no-such-group-here").is_err());
    }

    #[test]
    fn local_time_is_a_calendar_date() {
        let (y, mo, d, h, mi, s) = local_time(1_700_000_000).unwrap();
        assert!((2023..=2023).contains(&y) && (1..=12).contains(&mo) && (1..=31).contains(&d));
        assert!(h < 24 && mi < 60 && s < 61);
    }
}
