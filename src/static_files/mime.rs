//! File-name extension → `Content-Type`, as nginx 1.22's `mime.types`.
//!
//! Owns the compiled-in type table (every entry of nginx 1.22's `mime.types`, plus `mjs` as
//! JavaScript and `map` as JSON) and the `charset_types` rule for adding `; charset=utf-8`. A pure
//! lookup: it must never allocate, touch the file system, or sniff content.

/// The type for an unknown or missing extension (nginx `default_type`).
pub const DEFAULT_TYPE: &str = "application/octet-stream";

/// Longest extension in the table; anything longer cannot match.
const MAX_EXT: usize = 8;

/// (lowercase extension, type), sorted by extension bytes for binary search.
static TYPES: [(&[u8], &str); 112] = [
    (b"3gp", "video/3gpp"),
    (b"3gpp", "video/3gpp"),
    (b"7z", "application/x-7z-compressed"),
    (b"ai", "application/postscript"),
    (b"asf", "video/x-ms-asf"),
    (b"asx", "video/x-ms-asf"),
    (b"atom", "application/atom+xml"),
    (b"avi", "video/x-msvideo"),
    (b"avif", "image/avif"),
    (b"bin", "application/octet-stream"),
    (b"bmp", "image/x-ms-bmp"),
    (b"cco", "application/x-cocoa"),
    (b"crt", "application/x-x509-ca-cert"),
    (b"css", "text/css"),
    (b"deb", "application/octet-stream"),
    (b"der", "application/x-x509-ca-cert"),
    (b"dll", "application/octet-stream"),
    (b"dmg", "application/octet-stream"),
    (b"doc", "application/msword"),
    (
        b"docx",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    ),
    (b"ear", "application/java-archive"),
    (b"eot", "application/vnd.ms-fontobject"),
    (b"eps", "application/postscript"),
    (b"exe", "application/octet-stream"),
    (b"flv", "video/x-flv"),
    (b"gif", "image/gif"),
    (b"hqx", "application/mac-binhex40"),
    (b"htc", "text/x-component"),
    (b"htm", "text/html"),
    (b"html", "text/html"),
    (b"ico", "image/x-icon"),
    (b"img", "application/octet-stream"),
    (b"iso", "application/octet-stream"),
    (b"jad", "text/vnd.sun.j2me.app-descriptor"),
    (b"jar", "application/java-archive"),
    (b"jardiff", "application/x-java-archive-diff"),
    (b"jng", "image/x-jng"),
    (b"jnlp", "application/x-java-jnlp-file"),
    (b"jpeg", "image/jpeg"),
    (b"jpg", "image/jpeg"),
    (b"js", "application/javascript"),
    (b"json", "application/json"),
    (b"kar", "audio/midi"),
    (b"kml", "application/vnd.google-earth.kml+xml"),
    (b"kmz", "application/vnd.google-earth.kmz"),
    (b"m3u8", "application/vnd.apple.mpegurl"),
    (b"m4a", "audio/x-m4a"),
    (b"m4v", "video/x-m4v"),
    (b"map", "application/json"),
    (b"mid", "audio/midi"),
    (b"midi", "audio/midi"),
    (b"mjs", "application/javascript"),
    (b"mml", "text/mathml"),
    (b"mng", "video/x-mng"),
    (b"mov", "video/quicktime"),
    (b"mp3", "audio/mpeg"),
    (b"mp4", "video/mp4"),
    (b"mpeg", "video/mpeg"),
    (b"mpg", "video/mpeg"),
    (b"msi", "application/octet-stream"),
    (b"msm", "application/octet-stream"),
    (b"msp", "application/octet-stream"),
    (b"odg", "application/vnd.oasis.opendocument.graphics"),
    (b"odp", "application/vnd.oasis.opendocument.presentation"),
    (b"ods", "application/vnd.oasis.opendocument.spreadsheet"),
    (b"odt", "application/vnd.oasis.opendocument.text"),
    (b"ogg", "audio/ogg"),
    (b"pdb", "application/x-pilot"),
    (b"pdf", "application/pdf"),
    (b"pem", "application/x-x509-ca-cert"),
    (b"pl", "application/x-perl"),
    (b"pm", "application/x-perl"),
    (b"png", "image/png"),
    (b"ppt", "application/vnd.ms-powerpoint"),
    (
        b"pptx",
        "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    ),
    (b"prc", "application/x-pilot"),
    (b"ps", "application/postscript"),
    (b"ra", "audio/x-realaudio"),
    (b"rar", "application/x-rar-compressed"),
    (b"rpm", "application/x-redhat-package-manager"),
    (b"rss", "application/rss+xml"),
    (b"rtf", "application/rtf"),
    (b"run", "application/x-makeself"),
    (b"sea", "application/x-sea"),
    (b"shtml", "text/html"),
    (b"sit", "application/x-stuffit"),
    (b"svg", "image/svg+xml"),
    (b"svgz", "image/svg+xml"),
    (b"swf", "application/x-shockwave-flash"),
    (b"tcl", "application/x-tcl"),
    (b"tif", "image/tiff"),
    (b"tiff", "image/tiff"),
    (b"tk", "application/x-tcl"),
    (b"ts", "video/mp2t"),
    (b"txt", "text/plain"),
    (b"war", "application/java-archive"),
    (b"wasm", "application/wasm"),
    (b"wbmp", "image/vnd.wap.wbmp"),
    (b"webm", "video/webm"),
    (b"webp", "image/webp"),
    (b"wml", "text/vnd.wap.wml"),
    (b"wmlc", "application/vnd.wap.wmlc"),
    (b"wmv", "video/x-ms-wmv"),
    (b"woff", "font/woff"),
    (b"woff2", "font/woff2"),
    (b"xhtml", "application/xhtml+xml"),
    (b"xls", "application/vnd.ms-excel"),
    (
        b"xlsx",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ),
    (b"xml", "text/xml"),
    (b"xpi", "application/x-xpinstall"),
    (b"xspf", "application/xspf+xml"),
    (b"zip", "application/zip"),
];

/// The extension of the last path segment: bytes after its last `.`, if any.
fn extension(path: &[u8]) -> Option<&[u8]> {
    let name_start = path.iter().rposition(|&b| b == b'/').map_or(0, |i| i + 1);
    let name = path.get(name_start..)?;
    let dot = name.iter().rposition(|&b| b == b'.')?;
    name.get(dot + 1..)
}

/// The `Content-Type` for a file path, from its extension (case-insensitive; the part after the
/// last `.` of the last `/`-segment). Called by static files for every response body.
/// Unknown, missing or over-long extensions give [`DEFAULT_TYPE`].
pub fn mime_type(path: &[u8]) -> &'static str {
    let ext = match extension(path) {
        Some(ext) if !ext.is_empty() && ext.len() <= MAX_EXT => ext,
        _ => return DEFAULT_TYPE,
    };
    let mut lower = [0u8; MAX_EXT];
    for (dst, src) in lower.iter_mut().zip(ext) {
        *dst = src.to_ascii_lowercase();
    }
    match KEYS.binary_search(&pack(&lower)) {
        // Equal keys with unequal lengths: the extension held a NUL byte.
        Ok(i) => TYPES
            .get(i)
            .filter(|(e, _)| e.len() == ext.len())
            .map_or(DEFAULT_TYPE, |(_, t)| *t),
        Err(_) => DEFAULT_TYPE,
    }
}

/// An extension of at most `MAX_EXT` bytes as one number: first byte highest, zero-padded, so
/// numbers order as the byte strings do. A lookup compares integers instead of calling
/// `memcmp` (a byte loop in musl) at each step of the binary search.
const fn pack(ext: &[u8]) -> u64 {
    let mut key = 0u64;
    let mut rest = ext;
    let mut n = 0;
    while n < MAX_EXT {
        key <<= 8;
        if let [b, tail @ ..] = rest {
            key |= *b as u64;
            rest = tail;
        }
        n += 1;
    }
    key
}

/// `TYPES`' extensions packed, in the same order (made at compile time).
static KEYS: [u64; TYPES.len()] = {
    let mut keys = [0u64; TYPES.len()];
    let mut rest: &[(&[u8], &str)] = &TYPES;
    let mut out: &mut [u64] = &mut keys;
    while let ([(ext, _), tail @ ..], [key, out_tail @ ..]) = (rest, out) {
        *key = pack(ext);
        rest = tail;
        out = out_tail;
    }
    keys
};

/// `true` if responses of this type get `; charset=utf-8` appended: nginx's `charset_types`
/// (text/html, text/xml, text/plain, text/vnd.wap.wml, application/javascript,
/// application/rss+xml) plus text/css and application/json. Called by static files.
pub fn wants_charset(mime: &str) -> bool {
    matches!(
        mime,
        "text/html"
            | "text/xml"
            | "text/plain"
            | "text/vnd.wap.wml"
            | "application/javascript"
            | "application/rss+xml"
            | "text/css"
            | "application/json"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_unique_and_lowercase_for_binary_search() {
        for pair in TYPES.windows(2) {
            assert!(
                pair[0].0 < pair[1].0,
                "{:?}",
                String::from_utf8_lossy(pair[1].0)
            );
        }
        for (ext, ty) in TYPES.iter() {
            assert!(!ext.is_empty() && ext.len() <= MAX_EXT);
            assert!(ext
                .iter()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
            assert!(ty.contains('/'));
        }
    }

    #[test]
    fn packed_keys_keep_the_table_order() {
        for pair in KEYS.windows(2) {
            assert!(pair[0] < pair[1]);
        }
        assert_eq!(pack(b"css"), u64::from_be_bytes(*b"css\0\0\0\0\0"));
    }

    #[test]
    fn an_extension_with_a_nul_byte_matches_nothing() {
        assert_eq!(mime_type(b"/a.css\0"), DEFAULT_TYPE);
        assert_eq!(mime_type(b"/a.CSS"), "text/css");
    }

    #[test]
    fn every_table_entry_is_found() {
        for (ext, ty) in TYPES.iter() {
            let mut path = b"/static/file.".to_vec();
            path.extend_from_slice(ext);
            assert_eq!(mime_type(&path), *ty);
        }
    }

    #[test]
    fn common_static_files_get_nginx_types() {
        assert_eq!(mime_type(b"/index.html"), "text/html");
        assert_eq!(mime_type(b"/a.htm"), "text/html");
        assert_eq!(mime_type(b"/a.shtml"), "text/html");
        assert_eq!(mime_type(b"/static/admin/css/base.css"), "text/css");
        assert_eq!(
            mime_type(b"/static/admin/js/core.js"),
            "application/javascript"
        );
        assert_eq!(mime_type(b"/app.mjs"), "application/javascript");
        assert_eq!(mime_type(b"/app.js.map"), "application/json");
        assert_eq!(mime_type(b"/data.json"), "application/json");
        assert_eq!(mime_type(b"/logo.svg"), "image/svg+xml");
        assert_eq!(mime_type(b"/logo.svgz"), "image/svg+xml");
        assert_eq!(mime_type(b"/photo.jpg"), "image/jpeg");
        assert_eq!(mime_type(b"/photo.jpeg"), "image/jpeg");
        assert_eq!(mime_type(b"/photo.webp"), "image/webp");
        assert_eq!(mime_type(b"/photo.avif"), "image/avif");
        assert_eq!(mime_type(b"/favicon.ico"), "image/x-icon");
        assert_eq!(mime_type(b"/font.woff2"), "font/woff2");
        assert_eq!(mime_type(b"/font.woff"), "font/woff");
        assert_eq!(mime_type(b"/robots.txt"), "text/plain");
        assert_eq!(mime_type(b"/feed.rss"), "application/rss+xml");
        assert_eq!(mime_type(b"/feed.atom"), "application/atom+xml");
        assert_eq!(mime_type(b"/mod.wasm"), "application/wasm");
        assert_eq!(mime_type(b"/a.7z"), "application/x-7z-compressed");
        assert_eq!(mime_type(b"/a.3gp"), "video/3gpp");
        assert_eq!(mime_type(b"/a.ts"), "video/mp2t");
        assert_eq!(mime_type(b"/a.mp4"), "video/mp4");
        assert_eq!(mime_type(b"/a.mp3"), "audio/mpeg");
        assert_eq!(mime_type(b"/a.bmp"), "image/x-ms-bmp");
        assert_eq!(mime_type(b"/a.jardiff"), "application/x-java-archive-diff");
        assert_eq!(
            mime_type(b"/a.docx"),
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
        );
        assert_eq!(mime_type(b"/a.exe"), "application/octet-stream");
    }

    #[test]
    fn extension_match_is_case_insensitive() {
        assert_eq!(mime_type(b"/INDEX.HTML"), "text/html");
        assert_eq!(mime_type(b"/Photo.JpG"), "image/jpeg");
        assert_eq!(mime_type(b"/FONT.WOFF2"), "font/woff2");
    }

    #[test]
    fn only_the_last_dot_of_the_last_segment_counts() {
        assert_eq!(mime_type(b"/archive.tar.gz"), DEFAULT_TYPE);
        assert_eq!(mime_type(b"/style.min.css"), "text/css");
        assert_eq!(mime_type(b"/dir.css/file"), DEFAULT_TYPE);
        assert_eq!(mime_type(b"/dir.html/"), DEFAULT_TYPE);
        assert_eq!(mime_type(b"/x.html/y.png"), "image/png");
        assert_eq!(mime_type(b"index.html"), "text/html");
    }

    #[test]
    fn unknown_missing_or_odd_extensions_are_octet_stream() {
        for p in [
            &b""[..],
            b"/",
            b"/README",
            b"/file.",
            b"/file.unknown",
            b"/file.verylongextension",
            b"/file.htmlx",
            b"/file.ht",
            b"/file.\xff\xfe",
            b"/file.ht\0ml",
            b"/.",
            b"/..",
        ] {
            assert_eq!(mime_type(p), DEFAULT_TYPE, "{}", String::from_utf8_lossy(p));
        }
    }

    #[test]
    fn dotfile_name_is_read_as_an_extension_like_nginx() {
        assert_eq!(mime_type(b"/.css"), "text/css");
    }

    #[test]
    fn charset_is_added_to_text_like_types_only() {
        for t in [
            "text/html",
            "text/xml",
            "text/plain",
            "text/vnd.wap.wml",
            "application/javascript",
            "application/rss+xml",
            "text/css",
            "application/json",
        ] {
            assert!(wants_charset(t), "{t}");
        }
        for t in [
            "image/png",
            "application/octet-stream",
            "application/atom+xml",
            "text/mathml",
            "image/svg+xml",
            "font/woff2",
            "TEXT/HTML",
            "",
        ] {
            assert!(!wants_charset(t), "{t}");
        }
    }
}
