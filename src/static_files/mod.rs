//! Static files as an nginx user expects them: alias/root mapping, index, 301 for
//! directories, MIME types, ETag/Last-Modified/304, Range/206/416 (multipart too), HEAD,
//! gzip_static, expires, and bodies by sendfile.
//!
//! Owns: mapping a canonical path onto the filesystem and writing the response head.
//! Never: reads a file outside the mapped directory, follows a symlink when
//! `disable_symlinks = on`, or allocates (paths are built in fixed stack buffers).

pub mod body;
pub mod cache;
pub mod mime;

use crate::config::{Expires, StaticBase, StaticConf};
use crate::http::date::{format_http_date, parse_http_date};
use crate::http::range::{if_range_matches, parse_range, RangeSpec};
use crate::http::response::{start, HeadWriter};
use crate::http::Status;
use crate::static_files::cache::{Cached, FileCache};
use crate::sys;
use body::{Body, FileRef, Multipart, MultipartBody, Multiparts};
use std::cell::RefCell;
use std::ffi::CStr;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::time::Instant;

/// Longest filesystem path we build (PATH_MAX).
const PATH_MAX: usize = 4096;

/// What the request asks of a static location, borrowed from the request buffer.
pub struct StaticRequest<'a> {
    /// Canonical (decoded, normalised) path.
    pub path: &'a [u8],
    /// Raw query string, without '?'.
    pub query: Option<&'a [u8]>,
    pub location_prefix: &'a [u8],
    pub if_none_match: Option<&'a [u8]>,
    pub if_modified_since: Option<&'a [u8]>,
    pub if_match: Option<&'a [u8]>,
    pub if_unmodified_since: Option<&'a [u8]>,
    pub range: Option<&'a [u8]>,
    pub if_range: Option<&'a [u8]>,
    /// The location's `max_ranges`: most ranges served (0: `Range` ignored, no `Accept-Ranges`).
    pub max_ranges: usize,
    pub accepts_gzip: bool,
    /// Header lines carried over from the app (X-Accel-Redirect): written as they are; an
    /// app's Content-Type replaces ours.
    pub extra_headers: &'a [u8],
}

/// Per-response facts the caller knows.
pub struct ReplyCtx<'a> {
    pub date: &'a [u8],
    pub now: i64,
    pub server_tokens: bool,
    pub keep_alive: bool,
    /// HEAD: heads only, no inline page after them.
    pub head_only: bool,
    /// The open-file cache and the loop's clock for it.
    pub files: Option<&'a RefCell<FileCache>>,
    /// The loop's path buffer.
    pub fs_path: &'a FsPath,
    /// The preallocated multipart/byteranges states.
    pub multiparts: Option<&'a Multiparts>,
    pub mono: Instant,
}

/// Maps errno onto the status nginx answers (the one place this mapping lives).
pub fn status_for_io_error(err: &io::Error) -> Status {
    match err.raw_os_error() {
        Some(libc::ENOENT) | Some(libc::ENOTDIR) => Status::NotFound,
        Some(libc::EACCES) | Some(libc::ELOOP) | Some(libc::EPERM) => Status::Forbidden,
        Some(libc::ENAMETOOLONG) => Status::UriTooLong,
        Some(libc::EMFILE) | Some(libc::ENFILE) => Status::ServiceUnavailable,
        _ => Status::InternalServerError,
    }
}

/// A fixed path buffer with a trailing NUL for open(2). The loop keeps one (`FsPath`) and
/// reuses it: making one per request meant zeroing and moving 4 KiB, a third of the
/// user-space instructions of a small-file hit (callgrind).
pub struct PathBuf0 {
    buf: [u8; PATH_MAX + 1],
    len: usize,
}

/// The filesystem path buffer every static response builds its path in.
pub type FsPath = RefCell<PathBuf0>;

impl Default for PathBuf0 {
    fn default() -> PathBuf0 {
        PathBuf0::new()
    }
}

impl PathBuf0 {
    pub fn new() -> PathBuf0 {
        PathBuf0 {
            buf: [0; PATH_MAX + 1],
            len: 0,
        }
    }
    fn push(&mut self, bytes: &[u8]) -> Result<(), Status> {
        if bytes.contains(&0) {
            return Err(Status::BadRequest);
        }
        let end = self.len + bytes.len();
        if end > PATH_MAX {
            return Err(Status::UriTooLong);
        }
        match self.buf.get_mut(self.len..end) {
            Some(dst) => dst.copy_from_slice(bytes),
            None => return Err(Status::UriTooLong),
        }
        self.len = end;
        Ok(())
    }
    fn truncate(&mut self, len: usize) {
        self.len = len.min(self.len);
    }
    fn bytes(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or(&[])
    }
    fn cstr(&mut self) -> &CStr {
        if let Some(end) = self.buf.get_mut(self.len) {
            *end = 0;
        }
        // The buffer holds no interior NUL (push refuses them) and ends in one.
        self.buf
            .get(..=self.len)
            .and_then(|b| CStr::from_bytes_with_nul(b).ok())
            .unwrap_or(c"")
    }
}

/// Where the file lives: the base directory and the path relative to it.
struct Mapping<'p> {
    full: &'p mut PathBuf0,
    /// Length of the base directory prefix inside `full` (relative part follows).
    base_len: usize,
}

fn map_path<'p>(
    sc: &StaticConf,
    req: &StaticRequest<'_>,
    full: &'p mut PathBuf0,
) -> Result<Mapping<'p>, Status> {
    full.truncate(0);
    let rel: &[u8] = match &sc.base {
        StaticBase::Root(root) => {
            full.push(root.as_os_str().as_encoded_bytes())?;
            req.path
        }
        StaticBase::Alias(alias) => {
            full.push(alias.as_os_str().as_encoded_bytes())?;
            req.path.get(req.location_prefix.len()..).unwrap_or(b"")
        }
    };
    // The classic alias off-by-slash (`location /static` + `alias …/static/` + `/static../x`)
    // leaves a `..` segment in the remainder: it never reaches the filesystem.
    if rel.split(|&b| b == b'/').any(|seg| seg == b"..") {
        return Err(Status::NotFound);
    }
    while full.len > 1 && full.bytes().ends_with(b"/") {
        full.truncate(full.len - 1);
    }
    let base_len = full.len;
    if !rel.starts_with(b"/") {
        full.push(b"/")?;
    }
    full.push(rel)?;
    Ok(Mapping { full, base_len })
}

/// Opens the mapped path, refusing symlinks below the base when asked to.
fn open_mapped(m: &mut Mapping<'_>, no_symlinks: bool) -> io::Result<File> {
    if !no_symlinks {
        return sys::open_read(m.full.cstr(), false);
    }
    let base_len = m.base_len;
    let mut base = PathBuf0::new();
    base.push(m.full.bytes().get(..base_len).unwrap_or(&[]))
        .map_err(|_| io::Error::from_raw_os_error(libc::ENAMETOOLONG))?;
    if base.len == 0 {
        base.push(b"/").ok();
    }
    let dir = sys::open_dir(base.cstr())?;
    let rel = m
        .full
        .bytes()
        .get(base_len..)
        .unwrap_or(&[])
        .trim_ascii_start();
    let rel = trim_slashes(rel);
    let rel = if rel.is_empty() { &b"."[..] } else { rel };
    sys::open_beneath_nofollow(dir.as_raw_fd(), rel)
}

/// A file opened for a response, from the open-file cache or the filesystem.
struct Opened {
    file: FileRef,
    is_dir: bool,
    is_file: bool,
    size: u64,
    mtime: i64,
    /// The open-file cache slot holding the whole content of this small file.
    small: Option<usize>,
}

/// Opens the mapped path through the open-file cache (unless symlinks are refused: those
/// opens are component walks the cache can't vouch for).
fn open_path(m: &mut Mapping<'_>, sc: &StaticConf, ctx: &ReplyCtx<'_>) -> io::Result<Opened> {
    let cache = ctx
        .files
        .filter(|c| !sc.disable_symlinks && c.borrow().enabled());
    if let Some(cache) = cache {
        let mut cache = cache.borrow_mut();
        match cache.lookup(m.full.cstr(), ctx.mono) {
            Some(Cached::Missing) => return Err(io::Error::from_raw_os_error(libc::ENOENT)),
            Some(Cached::File {
                file,
                size,
                mtime,
                content,
                slot,
            }) => {
                return Ok(Opened {
                    file: FileRef::Shared(file),
                    is_dir: false,
                    is_file: true,
                    size,
                    mtime,
                    small: content.map(|_| slot),
                })
            }
            None => {}
        }
    }
    let file = match open_mapped(m, sc.disable_symlinks) {
        Ok(f) => f,
        Err(e) => {
            if let (Some(cache), Some(libc::ENOENT) | Some(libc::ENOTDIR)) =
                (cache, e.raw_os_error())
            {
                cache.borrow_mut().insert_missing(m.full.cstr(), ctx.mono);
            }
            return Err(e);
        }
    };
    let md = file.metadata()?;
    let (size, mtime) = (md.size(), md.mtime());
    let file = match (cache, md.is_file()) {
        (Some(cache), true) => match cache
            .borrow_mut()
            .insert(m.full.cstr(), file, &md, ctx.mono)
        {
            Ok(shared) => FileRef::Shared(shared),
            // Every entry of its set is being sent from: this one goes uncached.
            Err(file) => FileRef::Owned(file),
        },
        _ => FileRef::Owned(file),
    };
    Ok(Opened {
        file,
        is_dir: md.is_dir(),
        is_file: md.is_file(),
        size,
        mtime,
        small: None,
    })
}

fn trim_slashes(mut s: &[u8]) -> &[u8] {
    while let [b'/', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b'/'] = s {
        s = rest;
    }
    s
}

/// Serves `req` from `sc`: writes the whole response head into `w` (status line through the
/// blank line) and returns the body to send. `Err(status)` asks the caller for an error page.
pub fn serve(
    sc: &StaticConf,
    req: &StaticRequest<'_>,
    ctx: &ReplyCtx<'_>,
    w: &mut HeadWriter<'_>,
) -> Result<Body, Status> {
    // A borrow can only fail if serve() re-entered itself, which it never does.
    let mut full = ctx
        .fs_path
        .try_borrow_mut()
        .map_err(|_| Status::InternalServerError)?;
    let mut m = map_path(sc, req, &mut full)?;
    let mut name_len = m.full.len;

    // 1. A directory request tries each index file in order.
    if req.path.ends_with(b"/") {
        let dir_len = m.full.len;
        let mut found = None;
        for index in &sc.index {
            m.full.truncate(dir_len);
            m.full.push(index.as_bytes())?;
            match open_path(&mut m, sc, ctx) {
                Ok(f) if f.is_file => {
                    found = Some(f);
                    break;
                }
                Ok(_) => continue,
                Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT)) => continue,
                Err(e) => return Err(status_for_io_error(&e)),
            }
        }
        name_len = m.full.len;
        return match found {
            Some(f) => send_file(sc, req, ctx, w, f, &mut m, name_len),
            None => {
                // No index: 403 for an existing directory, 404 otherwise (nginx).
                m.full.truncate(dir_len);
                match open_mapped(&mut m, sc.disable_symlinks) {
                    Ok(_) => Err(Status::Forbidden),
                    Err(e) => Err(status_for_io_error(&e)),
                }
            }
        };
    }

    let opened = open_path(&mut m, sc, ctx).map_err(|e| status_for_io_error(&e))?;
    if opened.is_dir {
        // 2. A directory named without its slash: 301 to the slashed path, query kept.
        return redirect_to_dir(req, ctx, w);
    }
    if !opened.is_file {
        return Err(Status::Forbidden);
    }
    send_file(sc, req, ctx, w, opened, &mut m, name_len)
}

fn redirect_to_dir(
    req: &StaticRequest<'_>,
    ctx: &ReplyCtx<'_>,
    w: &mut HeadWriter<'_>,
) -> Result<Body, Status> {
    let page_len =
        crate::http::response::error_page_len(Status::MovedPermanently, ctx.server_tokens);
    start(w, Status::MovedPermanently, ctx.server_tokens, ctx.date);
    w.header(b"Content-Type", b"text/html")
        .put(b"Content-Length: ")
        .num(page_len as u64)
        .put(b"\r\nLocation: ");
    escape_path(w, req.path);
    w.put(b"/");
    if let Some(q) = req.query {
        w.put(b"?").put(q);
    }
    w.put(b"\r\n");
    connection_header(w, ctx.keep_alive);
    w.put(b"\r\n");
    if !ctx.head_only {
        crate::http::response::error_page(w, Status::MovedPermanently, ctx.server_tokens);
    }
    Ok(Body::None)
}

/// Percent-encodes what may not appear raw in a Location path.
fn escape_path(w: &mut HeadWriter<'_>, path: &[u8]) {
    for &b in path {
        let safe = b.is_ascii_alphanumeric() || b"/-._~!$&'()*+,;=:@".contains(&b);
        if safe {
            w.put(&[b]);
        } else {
            w.put(b"%");
            let hex = b"0123456789ABCDEF";
            let digit = |d: u8| hex.get(usize::from(d)).copied().unwrap_or(b'0');
            w.put(&[digit(b >> 4), digit(b & 15)]);
        }
    }
}

/// `Connection: keep-alive` or `Connection: close`.
pub fn connection_header(w: &mut HeadWriter<'_>, keep_alive: bool) {
    w.header(
        b"Connection",
        if keep_alive { b"keep-alive" } else { b"close" },
    );
}

/// What the head of a file response states about the representation.
struct Meta<'a> {
    size: u64,
    mime: &'static str,
    gzipped: bool,
    /// Open-file cache slot holding the bytes of this small file.
    small: Option<usize>,
    etag: &'a [u8],
    last_modified: &'a [u8; 29],
}

fn send_file(
    sc: &StaticConf,
    req: &StaticRequest<'_>,
    ctx: &ReplyCtx<'_>,
    w: &mut HeadWriter<'_>,
    mut opened: Opened,
    m: &mut Mapping<'_>,
    name_len: usize,
) -> Result<Body, Status> {
    let mime = crate::static_files::mime::mime_type(m.full.bytes().get(..name_len).unwrap_or(&[]));

    // 3. gzip_static: a sibling FILE.gz wins when the client takes gzip.
    let gzipped =
        sc.gzip_static && req.accepts_gzip && gzip_sibling(sc, ctx, m, name_len, &mut opened);
    let Opened {
        file,
        size,
        mtime,
        small,
        ..
    } = opened;
    let mut etag_buf = [0u8; 40];
    let etag_len = write_etag(&mut etag_buf, mtime, size);
    let mut last_modified = [0u8; 29];
    format_http_date(mtime, &mut last_modified);
    let meta = Meta {
        size,
        mime,
        gzipped,
        small,
        etag: etag_buf.get(..etag_len).unwrap_or(&[]),
        last_modified: &last_modified,
    };
    // 4. Preconditions (412), then the conditional GET (304).
    if precondition_fails(req, meta.etag, mtime) {
        return Err(Status::PreconditionFailed);
    }
    if not_modified(req, meta.etag, mtime) {
        start(w, Status::NotModified, ctx.server_tokens, ctx.date);
        w.header(b"Last-Modified", meta.last_modified)
            .header(b"ETag", meta.etag);
        cache_headers(w, sc, ctx);
        connection_header(w, ctx.keep_alive);
        w.put(b"\r\n");
        return Ok(Body::None);
    }
    // 5. Range, honoured only while If-Range (if any) still names this representation.
    let spec = match req.range {
        Some(r)
            if req
                .if_range
                .is_none_or(|ir| if_range_matches(ir, meta.etag, mtime)) =>
        {
            parse_range(r, size, req.max_ranges)
        }
        _ => RangeSpec::Ignore,
    };
    Ok(match spec {
        RangeSpec::Unsatisfiable => unsatisfiable(w, ctx, size),
        RangeSpec::Ranges(ranges) if ranges.len() == 1 => {
            let (first, last) = ranges.first().copied().unwrap_or((0, 0));
            one_range(sc, req, ctx, w, &meta, file, (first, last))
        }
        RangeSpec::Ranges(ranges) => match ctx.multiparts.and_then(Multiparts::vacant) {
            Some(state) => {
                let mp = Multipart::new(file, ranges, mime, sc.charset, size, ctx.now as u64);
                multipart(sc, req, ctx, w, &meta, state.fill(mp))
            }
            // No free multipart state: the whole file, as when Range is ignored.
            None => whole(sc, req, ctx, w, &meta, file),
        },
        RangeSpec::Ignore => whole(sc, req, ctx, w, &meta, file),
    })
}

/// Replaces `opened` by `NAME.gz` when that exists as a regular file; `true` when it did.
fn gzip_sibling(
    sc: &StaticConf,
    ctx: &ReplyCtx<'_>,
    m: &mut Mapping<'_>,
    name_len: usize,
    opened: &mut Opened,
) -> bool {
    m.full.truncate(name_len);
    if m.full.push(b".gz").is_err() {
        return false;
    }
    match open_path(m, sc, ctx) {
        Ok(gz) if gz.is_file => {
            *opened = gz;
            true
        }
        _ => false,
    }
}

/// nginx's ETag, `"MTIME-SIZE"` in hex, into `out`; returns its length.
fn write_etag(out: &mut [u8], mtime: i64, size: u64) -> usize {
    let mut e = HeadWriter::new(out);
    e.put(b"\"")
        .hex(mtime as u64)
        .put(b"-")
        .hex(size)
        .put(b"\"");
    e.len()
}

/// If-None-Match wins over If-Modified-Since (RFC 9110 13.2.2).
fn not_modified(req: &StaticRequest<'_>, etag: &[u8], mtime: i64) -> bool {
    match (req.if_none_match, req.if_modified_since) {
        (Some(inm), _) => etag_list_matches(inm, etag),
        (None, Some(ims)) => parse_http_date(ims).is_some_and(|t| mtime <= t),
        (None, None) => false,
    }
}

/// 416 with `Content-Range: bytes */SIZE` and the error page.
fn unsatisfiable(w: &mut HeadWriter<'_>, ctx: &ReplyCtx<'_>, size: u64) -> Body {
    let status = Status::RangeNotSatisfiable;
    let page_len = crate::http::response::error_page_len(status, ctx.server_tokens);
    start(w, status, ctx.server_tokens, ctx.date);
    w.header(b"Content-Type", b"text/html")
        .put(b"Content-Length: ")
        .num(page_len as u64)
        .put(b"\r\nContent-Range: bytes */")
        .num(size)
        .put(b"\r\n");
    connection_header(w, ctx.keep_alive);
    w.put(b"\r\n");
    if !ctx.head_only {
        crate::http::response::error_page(w, status, ctx.server_tokens);
    }
    Body::None
}

/// The fields every file response ends its head with.
fn end_head(
    w: &mut HeadWriter<'_>,
    sc: &StaticConf,
    req: &StaticRequest<'_>,
    ctx: &ReplyCtx<'_>,
    meta: &Meta<'_>,
) {
    validators(
        w,
        meta.last_modified,
        meta.etag,
        meta.gzipped,
        sc,
        req.max_ranges > 0,
    );
    cache_headers(w, sc, ctx);
    connection_header(w, ctx.keep_alive);
    w.put(b"\r\n");
}

/// 206 with one range of the file.
fn one_range(
    sc: &StaticConf,
    req: &StaticRequest<'_>,
    ctx: &ReplyCtx<'_>,
    w: &mut HeadWriter<'_>,
    meta: &Meta<'_>,
    file: FileRef,
    (first, last): (u64, u64),
) -> Body {
    start(w, Status::PartialContent, ctx.server_tokens, ctx.date);
    typed(w, req, meta.mime, sc.charset);
    w.put(b"Content-Length: ")
        .num(last - first + 1)
        .put(b"\r\nContent-Range: bytes ")
        .num(first)
        .put(b"-")
        .num(last)
        .put(b"/")
        .num(meta.size)
        .put(b"\r\n");
    end_head(w, sc, req, ctx, meta);
    Body::File {
        file,
        pos: first,
        end: last + 1,
    }
}

/// 206 with several ranges as multipart/byteranges.
fn multipart(
    sc: &StaticConf,
    req: &StaticRequest<'_>,
    ctx: &ReplyCtx<'_>,
    w: &mut HeadWriter<'_>,
    meta: &Meta<'_>,
    body: MultipartBody,
) -> Body {
    start(w, Status::PartialContent, ctx.server_tokens, ctx.date);
    w.put(b"Content-Type: multipart/byteranges; boundary=");
    let length = body.with(|mp| {
        mp.write_boundary(w);
        mp.content_length()
    });
    w.put(b"\r\nContent-Length: ")
        .num(length.unwrap_or(0))
        .put(b"\r\n");
    end_head(w, sc, req, ctx, meta);
    Body::Multipart(body)
}

/// 200 with the whole file; a cached small file's bytes follow the head in one send.
fn whole(
    sc: &StaticConf,
    req: &StaticRequest<'_>,
    ctx: &ReplyCtx<'_>,
    w: &mut HeadWriter<'_>,
    meta: &Meta<'_>,
    file: FileRef,
) -> Body {
    start(w, Status::Ok, ctx.server_tokens, ctx.date);
    typed(w, req, meta.mime, sc.charset);
    w.put(b"Content-Length: ").num(meta.size).put(b"\r\n");
    end_head(w, sc, req, ctx, meta);
    if let (Some(slot), FileRef::Shared(rc), Some(cache), false) =
        (meta.small, &file, ctx.files, ctx.head_only)
    {
        if let Some(bytes) = cache.borrow().content(slot, rc) {
            // Only when it fits behind the head; otherwise sendfile sends it.
            if bytes.len() as u64 == meta.size && bytes.len() <= w.remaining() {
                w.put(bytes);
                return Body::Inline(bytes.len());
            }
        }
    }
    Body::File {
        file,
        pos: 0,
        end: meta.size,
    }
}

/// Our Content-Type unless the app's carried-over headers bring one, then those headers.
fn typed(w: &mut HeadWriter<'_>, req: &StaticRequest<'_>, mime: &str, charset: bool) {
    let has_type = req.extra_headers.split(|&b| b == b'\n').any(|line| {
        line.get(..13)
            .is_some_and(|name| name.eq_ignore_ascii_case(b"content-type:"))
    });
    if !has_type {
        content_type(w, mime, charset);
    }
    w.put(req.extra_headers);
}

/// `Content-Type: mime[; charset=utf-8]`.
pub fn content_type(w: &mut HeadWriter<'_>, mime: &str, charset: bool) {
    w.put(b"Content-Type: ").put(mime.as_bytes());
    if charset && crate::static_files::mime::wants_charset(mime) {
        w.put(b"; charset=utf-8");
    }
    w.put(b"\r\n");
}

fn validators(
    w: &mut HeadWriter<'_>,
    lm: &[u8],
    etag: &[u8],
    gzipped: bool,
    sc: &StaticConf,
    accept_ranges: bool,
) {
    w.header(b"Last-Modified", lm).header(b"ETag", etag);
    if accept_ranges {
        w.header(b"Accept-Ranges", b"bytes");
    }
    if gzipped {
        w.header(b"Content-Encoding", b"gzip");
    }
    if sc.gzip_static {
        w.header(b"Vary", b"Accept-Encoding");
    }
}

/// `expires` → Expires and Cache-Control, as nginx's headers module writes them.
fn cache_headers(w: &mut HeadWriter<'_>, sc: &StaticConf, ctx: &ReplyCtx<'_>) {
    let mut date = [0u8; 29];
    match sc.expires {
        Expires::Off => {}
        Expires::Epoch => {
            w.header(b"Expires", b"Thu, 01 Jan 1970 00:00:01 GMT")
                .header(b"Cache-Control", b"no-cache");
        }
        Expires::Max => {
            w.header(b"Expires", b"Thu, 31 Dec 2037 23:55:55 GMT")
                .header(b"Cache-Control", b"max-age=315360000");
        }
        Expires::Seconds(secs) => {
            format_http_date(ctx.now.saturating_add(secs), &mut date);
            w.header(b"Expires", &date);
            if secs <= 0 {
                w.header(b"Cache-Control", b"no-cache");
            } else {
                w.put(b"Cache-Control: max-age=")
                    .num(secs as u64)
                    .put(b"\r\n");
            }
        }
    }
}

/// `true` when `If-Unmodified-Since` names a time before the file's (an unparsable date fails
/// too, as in nginx) or `If-Match` lists no entity tag strongly equal to `etag`: answer 412.
fn precondition_fails(req: &StaticRequest<'_>, etag: &[u8], mtime: i64) -> bool {
    let unmodified_fails = req
        .if_unmodified_since
        .is_some_and(|d| parse_http_date(d).is_none_or(|t| t < mtime));
    let match_fails = req
        .if_match
        .is_some_and(|list| !strong_etag_list_matches(list, etag));
    unmodified_fails || match_fails
}

/// If-Match: `*` or a comma list of entity tags, compared strongly (RFC 9110 13.1.1): a weak
/// tag (`W/"..."`) never matches.
fn strong_etag_list_matches(list: &[u8], etag: &[u8]) -> bool {
    let list = list.trim_ascii();
    list == b"*" || list.split(|&b| b == b',').any(|t| t.trim_ascii() == etag)
}

/// If-None-Match: `*` or a comma list of entity tags, compared weakly (RFC 9110 13.1.2).
fn etag_list_matches(list: &[u8], etag: &[u8]) -> bool {
    let list = list.trim_ascii();
    if list == b"*" {
        return true;
    }
    list.split(|&b| b == b',').any(|t| {
        let t = t.trim_ascii();
        let t = t.strip_prefix(b"W/").unwrap_or(t);
        t == etag
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_preconditions<'a>(
        if_match: Option<&'a [u8]>,
        if_unmodified_since: Option<&'a [u8]>,
    ) -> StaticRequest<'a> {
        StaticRequest {
            path: b"/f",
            query: None,
            location_prefix: b"/",
            if_none_match: None,
            if_modified_since: None,
            if_match,
            if_unmodified_since,
            range: None,
            if_range: None,
            max_ranges: 16,
            accepts_gzip: false,
            extra_headers: b"",
        }
    }

    #[test]
    fn if_match_compares_strongly_and_star_matches() {
        let etag = b"\"5f-14\"";
        let fails = |v: &[u8]| precondition_fails(&with_preconditions(Some(v), None), etag, 0);
        assert!(!fails(b"\"5f-14\""));
        assert!(!fails(b" \"5f-14\" "));
        assert!(!fails(b"*"));
        assert!(!fails(b"\"x\", \"5f-14\""));
        assert!(!fails(b"\"x\",\"5f-14\""));
        assert!(fails(b"\"x\""));
        assert!(fails(b"W/\"5f-14\""));
        assert!(fails(b"\"5f-14\";"));
        assert!(fails(b"5f-14"));
        assert!(fails(b""));
    }

    #[test]
    fn if_unmodified_since_fails_for_an_older_or_unparsable_date() {
        let mtime = 784_111_777; // Sun, 06 Nov 1994 08:49:37 GMT
        let fails =
            |v: &[u8]| precondition_fails(&with_preconditions(None, Some(v)), b"\"e\"", mtime);
        assert!(!fails(b"Sun, 06 Nov 1994 08:49:37 GMT"));
        assert!(!fails(b"Mon, 07 Nov 1994 08:49:37 GMT"));
        assert!(fails(b"Sun, 06 Nov 1994 08:49:36 GMT"));
        assert!(fails(b"Thu, 01 Jan 1970 00:00:01 GMT"));
        assert!(fails(b"garbage"));
    }

    #[test]
    fn either_precondition_failing_fails() {
        let mtime = 784_111_777;
        let ok_date = Some(&b"Mon, 07 Nov 1994 08:49:37 GMT"[..]);
        let old_date = Some(&b"Thu, 01 Jan 1970 00:00:01 GMT"[..]);
        let check = |m, d| precondition_fails(&with_preconditions(m, d), b"\"e\"", mtime);
        assert!(!check(Some(&b"\"e\""[..]), ok_date));
        assert!(check(Some(&b"\"e\""[..]), old_date));
        assert!(check(Some(&b"\"x\""[..]), ok_date));
        assert!(!check(None, None));
    }

    #[test]
    fn weak_and_listed_etags_match() {
        assert!(etag_list_matches(b"\"a\", W/\"5f-10\"", b"\"5f-10\""));
        assert!(etag_list_matches(b" * ", b"\"x\""));
        assert!(!etag_list_matches(b"\"5f-11\"", b"\"5f-10\""));
    }

    #[test]
    fn alias_remainder_with_dot_dot_never_maps() {
        let sc = StaticConf {
            base: StaticBase::Alias("/srv/static/".into()),
            index: vec!["index.html".into()],
            gzip_static: false,
            expires: Expires::Off,
            disable_symlinks: false,
            charset: true,
        };
        let req = StaticRequest {
            path: b"/static../secret",
            query: None,
            location_prefix: b"/static",
            if_none_match: None,
            if_modified_since: None,
            if_match: None,
            if_unmodified_since: None,
            range: None,
            if_range: None,
            max_ranges: 16,
            accepts_gzip: false,
            extra_headers: b"",
        };
        let mut full = PathBuf0::new();
        assert_eq!(map_path(&sc, &req, &mut full).err(), Some(Status::NotFound));
    }

    #[test]
    fn alias_maps_the_remainder_under_the_alias() {
        let sc = StaticConf {
            base: StaticBase::Alias("/srv/static/".into()),
            index: vec![],
            gzip_static: false,
            expires: Expires::Off,
            disable_symlinks: false,
            charset: true,
        };
        let req = StaticRequest {
            path: b"/static/css/a.css",
            query: None,
            location_prefix: b"/static/",
            if_none_match: None,
            if_modified_since: None,
            if_match: None,
            if_unmodified_since: None,
            range: None,
            if_range: None,
            max_ranges: 16,
            accepts_gzip: false,
            extra_headers: b"",
        };
        let mut full = PathBuf0::new();
        let m = map_path(&sc, &req, &mut full).ok().unwrap();
        assert_eq!(m.full.bytes(), b"/srv/static/css/a.css");
    }
}
