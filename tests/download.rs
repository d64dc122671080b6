//! The download machinery against a misbehaving HTTP server on 127.0.0.1 (tests/common/http.rs): every case must end
//! with the exact file or a clear error, never a silently truncated file (docs/spec/progan_hp.md §6; issues 3 and 5).

mod common;

use common::http::{Fault, Logged, TestServer};
use hessian_gan::io::download::{
    download, ensure_file, partial_path, resolve_base_url_from, validator_path, DownloadError,
    DownloadOptions,
};
use hessian_gan::io::resources;
use hessian_gan::io::tfrecord;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A fresh scratch directory for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("hg-download-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Deterministic pseudo-random bytes.
fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// `count` random images of `3 × res × res`.
fn images(count: usize, res: u64, seed: u64) -> Vec<([u64; 3], Vec<u8>)> {
    (0..count)
        .map(|i| {
            (
                [3, res, res],
                noise((3 * res * res) as usize, seed * 1000 + i as u64),
            )
        })
        .collect()
}

/// The bytes of a TFRecord file holding `imgs`, made with the crate's writer.
fn tfrecord_bytes(dir: &Path, imgs: &[([u64; 3], Vec<u8>)]) -> Vec<u8> {
    let path = dir.join("source.tfrecords");
    tfrecord::write_tfrecords(&path, imgs.iter().map(|(s, d)| (*s, d.as_slice()))).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    bytes
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn opts() -> DownloadOptions {
    DownloadOptions {
        retries: 3,
        backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(5),
        connect_timeout: Duration::from_secs(5),
        read_timeout: Duration::from_secs(5),
        ..DownloadOptions::default()
    }
}

/// A server with one ~25 KB TFRecord file at `path`, and the file's bytes.
fn serve_one(dir: &Path, path: &str) -> (TestServer, Vec<u8>) {
    let server = TestServer::start();
    let body = tfrecord_bytes(dir, &images(32, 16, 7));
    assert!(body.len() > 20_000);
    server.add_file(path, body.clone());
    (server, body)
}

fn logged(range: Option<&str>, status: u16, body_sent: usize) -> Logged {
    Logged {
        path: "/f.tfrecords".into(),
        range: range.map(str::to_string),
        if_range: None,
        status,
        body_sent: body_sent as u64,
    }
}

fn assert_no_output(dest: &Path) {
    assert!(!dest.exists(), "{} must not exist", dest.display());
}

#[test]
fn plain_download_is_exact_and_reports_its_checksum() {
    let dir = scratch("plain");
    let (server, body) = serve_one(&dir, "f.tfrecords");
    let dest = dir.join("out/f.tfrecords");
    let report = download(&server.url("f.tfrecords"), &dest, &opts()).unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), body);
    assert!(!partial_path(&dest).exists());
    assert_eq!(report.size, body.len() as u64);
    assert_eq!(report.sha256, sha256_hex(&body));
    assert_eq!(report.attempts, 1);
    assert_eq!(report.resumed_from, 0);
    assert_eq!(report.bytes_transferred, body.len() as u64);
    assert_eq!(server.log(), vec![logged(None, 200, body.len())]);
    // The downloaded file is a readable TFRecord file with the images it was made from.
    let read: Vec<_> = tfrecord::TfRecordReader::open(&dest)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(read, images(32, 16, 7));
}

#[test]
fn connection_dropped_mid_body_is_resumed_with_a_range_request() {
    let dir = scratch("drop");
    let (server, body) = serve_one(&dir, "f.tfrecords");
    let len = body.len();
    // Cut after 0 bytes (headers only), 1 byte, half, and one byte short.
    for (i, cut) in [0, 1, len / 2, len - 1].into_iter().enumerate() {
        let dest = dir.join(format!("f{i}.tfrecords"));
        let before = server.log().len();
        server.push_faults("f.tfrecords", [Fault::CloseAfter(cut)]);
        let report = download(&server.url("f.tfrecords"), &dest, &opts()).unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), body, "cut at {cut}");
        assert!(!partial_path(&dest).exists());
        let log = server.log()[before..].to_vec();
        if cut == 0 {
            // Nothing arrived: the retry is a plain full request.
            assert_eq!(log, vec![logged(None, 200, 0), logged(None, 200, len)]);
        } else {
            let range = format!("bytes={cut}-");
            assert_eq!(
                log,
                vec![logged(None, 200, cut), logged(Some(&range), 206, len - cut)],
                "the resume fetches only the missing bytes"
            );
        }
        assert_eq!(report.attempts, 2);
        assert_eq!(report.bytes_transferred, len as u64);
    }
}

#[test]
fn server_errors_and_hangups_are_retried() {
    let dir = scratch("5xx");
    let (server, body) = serve_one(&dir, "f.tfrecords");
    server.push_faults(
        "f.tfrecords",
        [
            Fault::Status(500),
            Fault::Hangup,
            Fault::Status(503),
            Fault::Status(429),
        ],
    );
    let dest = dir.join("f.tfrecords");
    let o = DownloadOptions {
        retries: 4,
        ..opts()
    };
    let report = download(&server.url("f.tfrecords"), &dest, &o).unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), body);
    assert_eq!(report.attempts, 5);
    let statuses: Vec<u16> = server.log().iter().map(|l| l.status).collect();
    assert_eq!(statuses, vec![500, 0, 503, 429, 200]);
}

#[test]
fn a_server_that_keeps_failing_is_given_up_on_after_the_retries() {
    let dir = scratch("giveup");
    let (server, _) = serve_one(&dir, "f.tfrecords");
    server.always("f.tfrecords", Some(Fault::Status(502)));
    let dest = dir.join("f.tfrecords");
    let url = server.url("f.tfrecords");
    let err = download(&url, &dest, &opts()).unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains(&url) && msg.contains("502") && msg.contains("gave up"),
        "{msg}"
    );
    assert!(!msg.contains('\n'), "one line: {msg}");
    assert!(matches!(
        err.downcast_ref::<DownloadError>(),
        Some(DownloadError::GaveUp {
            attempts: 4,
            unreachable: false,
            kept: 0,
            ..
        })
    ));
    assert_eq!(server.log().len(), 4, "1 attempt + 3 retries, no more");
    assert_no_output(&dest);
    assert!(
        !partial_path(&dest).exists(),
        "an empty partial file is not kept"
    );
}

#[test]
fn truncated_bodies_never_become_the_final_file() {
    let dir = scratch("trunc");
    let (server, body) = serve_one(&dir, "f.tfrecords");
    let len = body.len();
    let dest = dir.join("f.tfrecords");
    let url = server.url("f.tfrecords");
    // A server that ignores Range and always sends half the announced body: no attempt gets further than half.
    server.ignore_range("f.tfrecords", true);
    server.always("f.tfrecords", Some(Fault::CloseAfter(len / 2)));
    let err = download(&url, &dest, &opts()).unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("gave up") && msg.contains(&url), "{msg}");
    assert_no_output(&dest);
    // What arrived is kept for a later resume, under the partial name only.
    assert_eq!(
        std::fs::read(partial_path(&dest)).unwrap(),
        &body[..len / 2]
    );
    let attempts = server.log().len();
    assert_eq!(
        attempts, 5,
        "the first attempt made progress, then 4 without"
    );

    // The server recovers and honours ranges: the next run fetches only the missing half.
    server.always("f.tfrecords", None);
    server.ignore_range("f.tfrecords", false);
    let report = download(&url, &dest, &opts()).unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), body);
    let range = format!("bytes={}-", len / 2);
    assert_eq!(
        server.log()[attempts..].to_vec(),
        vec![logged(Some(&range), 206, len - len / 2)]
    );
    assert_eq!(report.resumed_from, (len / 2) as u64);
    assert_eq!(report.bytes_transferred, (len - len / 2) as u64);
}

#[test]
fn a_server_ignoring_range_makes_the_download_start_over() {
    let dir = scratch("norange");
    let (server, body) = serve_one(&dir, "f.tfrecords");
    let len = body.len();
    server.ignore_range("f.tfrecords", true);
    server.push_faults("f.tfrecords", [Fault::CloseAfter(1000)]);
    let dest = dir.join("f.tfrecords");
    let report = download(&server.url("f.tfrecords"), &dest, &opts()).unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), body);
    assert_eq!(
        server.log(),
        vec![
            logged(None, 200, 1000),
            logged(Some("bytes=1000-"), 200, len)
        ],
        "the range was asked for, the server sent everything, and the client started over"
    );
    assert_eq!(report.bytes_transferred, (len + 1000) as u64);

    // A stale partial file longer than the real one: the full answer replaces it entirely.
    let dest = dir.join("g.tfrecords");
    let mut stale = body.clone();
    stale.extend_from_slice(&[0xee; 5000]);
    std::fs::write(partial_path(&dest), &stale).unwrap();
    download(&server.url("f.tfrecords"), &dest, &opts()).unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), body);
    let range = format!("bytes={}-", len + 5000);
    assert_eq!(
        server.log()[2..].to_vec(),
        vec![logged(Some(&range), 200, len)]
    );
}

#[test]
fn short_partial_responses_are_continued_without_spending_retries() {
    let dir = scratch("chunks");
    let (server, body) = serve_one(&dir, "f.tfrecords");
    let len = body.len();
    server.range_chunk("f.tfrecords", Some(4000));
    server.push_faults("f.tfrecords", [Fault::CloseAfter(100)]);
    let dest = dir.join("f.tfrecords");
    let o = DownloadOptions {
        retries: 1,
        ..opts()
    };
    download(&server.url("f.tfrecords"), &dest, &o).unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), body);
    let log = server.log();
    assert_eq!(log.len(), 1 + (len - 100).div_ceil(4000));
    for (i, entry) in log.iter().enumerate().skip(1) {
        assert_eq!(entry.status, 206);
        assert_eq!(
            entry.range.as_deref(),
            Some(format!("bytes={}-", 100 + (i - 1) * 4000).as_str())
        );
    }
}

#[test]
fn client_errors_fail_at_once_naming_the_url() {
    let dir = scratch("4xx");
    let (server, _) = serve_one(&dir, "f.tfrecords");
    for (i, code) in [404u16, 403, 410].into_iter().enumerate() {
        let dest = dir.join(format!("g{i}.pkl"));
        let before = server.log().len();
        let url = if code == 404 {
            server.url("missing.pkl")
        } else {
            server.push_faults("f.tfrecords", [Fault::Status(code)]);
            server.url("f.tfrecords")
        };
        let err = download(&url, &dest, &opts()).unwrap_err();
        let msg = format!("{err:#}");
        assert!(
            msg.contains(&url) && msg.contains(&code.to_string()),
            "{msg}"
        );
        assert!(!msg.contains('\n'));
        assert!(matches!(
            err.downcast_ref::<DownloadError>(),
            Some(DownloadError::Status { status, .. }) if *status == code
        ));
        assert_eq!(server.log().len() - before, 1, "no retry on {code}");
        assert_no_output(&dest);
        assert!(!partial_path(&dest).exists());
    }
}

#[test]
fn a_checksum_mismatch_deletes_the_download() {
    let dir = scratch("sha");
    let (server, body) = serve_one(&dir, "f.tfrecords");
    let url = server.url("f.tfrecords");
    let dest = dir.join("f.tfrecords");
    let mut wrong = sha256_hex(&body);
    wrong.replace_range(0..1, if wrong.starts_with('0') { "1" } else { "0" });
    let err = download(
        &url,
        &dest,
        &DownloadOptions {
            sha256: Some(wrong.clone()),
            ..opts()
        },
    )
    .unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("SHA-256") && msg.contains(&wrong) && msg.contains(&url),
        "{msg}"
    );
    assert!(matches!(
        err.downcast_ref::<DownloadError>(),
        Some(DownloadError::Integrity { .. })
    ));
    assert_no_output(&dest);
    assert!(!partial_path(&dest).exists());

    // The right checksum, in upper case, passes.
    let report = download(
        &url,
        &dest,
        &DownloadOptions {
            sha256: Some(sha256_hex(&body).to_uppercase()),
            ..opts()
        },
    )
    .unwrap();
    assert_eq!(report.sha256, sha256_hex(&body));
    assert_eq!(std::fs::read(&dest).unwrap(), body);
}

#[test]
fn a_corrupt_partial_file_is_caught_by_the_checksum() {
    let dir = scratch("badpartial");
    let (server, body) = serve_one(&dir, "f.tfrecords");
    let dest = dir.join("f.tfrecords");
    let mut stale = body[..5000].to_vec();
    stale[1234] ^= 0x40;
    std::fs::write(partial_path(&dest), &stale).unwrap();
    let o = DownloadOptions {
        sha256: Some(sha256_hex(&body)),
        ..opts()
    };
    let err = download(&server.url("f.tfrecords"), &dest, &o).unwrap_err();
    assert!(format!("{err:#}").contains("SHA-256 mismatch"));
    assert_no_output(&dest);
    assert!(!partial_path(&dest).exists());
    // The next run starts from scratch and succeeds.
    download(&server.url("f.tfrecords"), &dest, &o).unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), body);
}

#[test]
fn a_wrong_announced_size_is_refused_before_the_transfer() {
    let dir = scratch("size");
    let (server, body) = serve_one(&dir, "f.tfrecords");
    let dest = dir.join("f.tfrecords");
    let o = DownloadOptions {
        size: Some(body.len() as u64 + 1),
        ..opts()
    };
    let err = download(&server.url("f.tfrecords"), &dest, &o).unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains(&format!("{} bytes", body.len())) && msg.contains("expected"),
        "{msg}"
    );
    assert_eq!(server.log().len(), 1);
    assert_no_output(&dest);
    assert!(!partial_path(&dest).exists());
    // The right size passes.
    let o = DownloadOptions {
        size: Some(body.len() as u64),
        ..opts()
    };
    download(&server.url("f.tfrecords"), &dest, &o).unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), body);
}

#[test]
fn bytes_beyond_the_announced_size_never_reach_the_file() {
    // Issue 17: a server that announces one size and sends more, on a fresh download and on a resumed one. The file
    // must be the announced bytes exactly (checksum verified), never the body with the surplus spliced on.
    let dir = scratch("overlong");
    let (server, body) = serve_one(&dir, "f.tfrecords");
    let dest = dir.join("f.tfrecords");
    server.always("f.tfrecords", Some(Fault::Overlong(4096)));
    let o = DownloadOptions {
        sha256: Some(sha256_hex(&body)),
        ..opts()
    };
    download(&server.url("f.tfrecords"), &dest, &o).unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), body);
    std::fs::remove_file(&dest).unwrap();
    std::fs::write(partial_path(&dest), &body[..5000]).unwrap();
    let report = download(&server.url("f.tfrecords"), &dest, &o).unwrap();
    assert_eq!(report.resumed_from, 5000);
    assert_eq!(std::fs::read(&dest).unwrap(), body);
}

/// A download of `path` cut after `cut` bytes and then refused (404), so that `cut` bytes stay in the partial file
/// and the call returns. Returns the error text.
fn cut_download(server: &TestServer, path: &str, dest: &Path, cut: usize) -> String {
    server.push_faults(path, [Fault::CloseAfter(cut), Fault::Status(404)]);
    let err = download(&server.url(path), dest, &opts()).unwrap_err();
    assert_eq!(
        std::fs::metadata(partial_path(dest)).unwrap().len(),
        cut as u64
    );
    format!("{err:#}")
}

#[test]
fn a_file_that_changed_on_the_server_is_downloaded_again_not_spliced() {
    // Issue 17: the partial file holds the start of version 1; the server now has version 2, of the same length. The
    // resume sends the kept validator as If-Range, the server answers 200 with version 2, and the download starts
    // over. Each kind of validator: a strong ETag, a date alone, and a weak ETag (which If-Range may not carry, so the
    // date goes instead).
    let dir = scratch("changed");
    let v1 = tfrecord_bytes(&dir, &images(32, 16, 7));
    let mut v2 = v1.clone();
    for b in &mut v2[100..200] {
        *b ^= 0x5A;
    }
    let len = v1.len();
    let cut = len / 3;
    let cases = [
        (Some("\"v1\""), None, Some("\"v2\""), None, "\"v1\""),
        (
            None,
            Some("Mon, 30 Nov 2026 10:00:00 GMT"),
            None,
            Some("Tue, 01 Dec 2026 10:00:00 GMT"),
            "Mon, 30 Nov 2026 10:00:00 GMT",
        ),
        (
            Some("W/\"v1\""),
            Some("Mon, 30 Nov 2026 10:00:00 GMT"),
            Some("W/\"v2\""),
            Some("Tue, 01 Dec 2026 10:00:00 GMT"),
            "Mon, 30 Nov 2026 10:00:00 GMT",
        ),
    ];
    for (i, (etag1, date1, etag2, date2, sent)) in cases.into_iter().enumerate() {
        let server = TestServer::start();
        server.add_file("f.tfrecords", v1.clone());
        server.validators("f.tfrecords", etag1, date1);
        let dest = dir.join(format!("f{i}.tfrecords"));
        cut_download(&server, "f.tfrecords", &dest, cut);
        assert!(validator_path(&dest).exists(), "case {i}");

        server.add_file("f.tfrecords", v2.clone());
        server.validators("f.tfrecords", etag2, date2);
        let before = server.log().len();
        let o = DownloadOptions {
            sha256: Some(sha256_hex(&v2)),
            ..opts()
        };
        let report = download(&server.url("f.tfrecords"), &dest, &o).unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), v2, "case {i}");
        let log = server.log()[before..].to_vec();
        let range = format!("bytes={cut}-");
        assert_eq!(
            log,
            vec![Logged {
                if_range: Some(sent.to_string()),
                ..logged(Some(&range), 200, len)
            }],
            "case {i}: one request, answered with the whole new version"
        );
        assert_eq!(report.resumed_from, cut as u64);
        assert_eq!(report.bytes_transferred, len as u64);
        assert!(!partial_path(&dest).exists() && !validator_path(&dest).exists());
    }
}

#[test]
fn an_unchanged_file_resumes_under_its_validator() {
    let dir = scratch("unchanged");
    let (server, body) = serve_one(&dir, "f.tfrecords");
    server.validators("f.tfrecords", Some("\"abc\""), None);
    let len = body.len();
    let dest = dir.join("f.tfrecords");
    cut_download(&server, "f.tfrecords", &dest, 5000);
    let before = server.log().len();
    let report = download(&server.url("f.tfrecords"), &dest, &opts()).unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), body);
    assert_eq!(
        server.log()[before..].to_vec(),
        vec![Logged {
            if_range: Some("\"abc\"".into()),
            ..logged(Some("bytes=5000-"), 206, len - 5000)
        }]
    );
    assert_eq!(report.bytes_transferred, (len - 5000) as u64);
    assert!(!validator_path(&dest).exists());
}

#[test]
fn a_server_that_ignores_if_range_is_caught_by_its_etag() {
    // The server sends the range of version 2 although If-Range names version 1: its ETag gives it away, the bytes
    // are dropped and the whole file is fetched again, without a checksum to rely on.
    let dir = scratch("ignoreifrange");
    let (server, v1) = serve_one(&dir, "f.tfrecords");
    server.validators("f.tfrecords", Some("\"v1\""), None);
    let len = v1.len();
    let dest = dir.join("f.tfrecords");
    cut_download(&server, "f.tfrecords", &dest, 4000);
    let v2: Vec<u8> = v1.iter().map(|b| b.wrapping_add(1)).collect();
    server.add_file("f.tfrecords", v2.clone());
    server.validators("f.tfrecords", Some("\"v2\""), None);
    server.ignore_if_range("f.tfrecords", true);
    let before = server.log().len();
    download(&server.url("f.tfrecords"), &dest, &opts()).unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), v2);
    assert_eq!(
        server.log()[before..].to_vec(),
        vec![
            Logged {
                if_range: Some("\"v1\"".into()),
                ..logged(Some("bytes=4000-"), 206, len - 4000)
            },
            logged(None, 200, len),
        ]
    );
}

#[test]
fn a_validator_left_beside_an_empty_partial_file_is_ignored() {
    // A kill between emptying the partial file and writing the new validator leaves the old one beside 0 bytes.
    let dir = scratch("stalevalidator");
    let (server, body) = serve_one(&dir, "f.tfrecords");
    let dest = dir.join("f.tfrecords");
    std::fs::write(partial_path(&dest), b"").unwrap();
    std::fs::write(
        validator_path(&dest),
        br#"{"etag":"\"old\"","last_modified":null}"#,
    )
    .unwrap();
    download(&server.url("f.tfrecords"), &dest, &opts()).unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), body);
    assert_eq!(server.log(), vec![logged(None, 200, body.len())]);
    assert!(!validator_path(&dest).exists());
}

#[test]
fn an_interrupted_earlier_run_is_resumed_from_its_partial_file() {
    let dir = scratch("resume");
    let (server, body) = serve_one(&dir, "f.tfrecords");
    let len = body.len();
    let dest = dir.join("f.tfrecords");
    std::fs::write(partial_path(&dest), &body[..7777]).unwrap();
    let report = download(&server.url("f.tfrecords"), &dest, &opts()).unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), body);
    assert_eq!(
        server.log(),
        vec![logged(Some("bytes=7777-"), 206, len - 7777)]
    );
    assert_eq!(report.resumed_from, 7777);
    assert_eq!(report.bytes_transferred, (len - 7777) as u64);
}

#[test]
fn a_complete_partial_file_is_finished_without_refetching() {
    let dir = scratch("complete");
    let (server, body) = serve_one(&dir, "f.tfrecords");
    let len = body.len();
    // Size unknown: the range request past the end gets 416 with the total, which matches.
    let dest = dir.join("a.tfrecords");
    std::fs::write(partial_path(&dest), &body).unwrap();
    let report = download(&server.url("f.tfrecords"), &dest, &opts()).unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), body);
    assert_eq!(
        server.log(),
        vec![logged(Some(&format!("bytes={len}-")), 416, 0)]
    );
    assert_eq!(report.bytes_transferred, 0);
    // Size known: no request at all.
    let dest = dir.join("b.tfrecords");
    std::fs::write(partial_path(&dest), &body).unwrap();
    let o = DownloadOptions {
        size: Some(len as u64),
        ..opts()
    };
    let report = download(&server.url("f.tfrecords"), &dest, &o).unwrap();
    assert_eq!(report.attempts, 0);
    assert_eq!(server.log().len(), 1);
    assert_eq!(std::fs::read(&dest).unwrap(), body);
    // A partial file longer than the known size is stale: start over.
    let dest = dir.join("c.tfrecords");
    let mut long = body.clone();
    long.extend_from_slice(b"junk");
    std::fs::write(partial_path(&dest), &long).unwrap();
    download(&server.url("f.tfrecords"), &dest, &o).unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), body);
    assert_eq!(server.log()[1], logged(None, 200, len));
    // Longer and no size known: the server refuses the range (416, another total) and the client starts over.
    let dest = dir.join("d.tfrecords");
    std::fs::write(partial_path(&dest), &long).unwrap();
    download(&server.url("f.tfrecords"), &dest, &opts()).unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), body);
    assert_eq!(
        server.log()[2..].to_vec(),
        vec![
            logged(Some(&format!("bytes={}-", len + 4)), 416, 0),
            logged(None, 200, len)
        ]
    );
}

#[test]
fn a_stalled_transfer_times_out_and_resumes() {
    let dir = scratch("stall");
    let (server, body) = serve_one(&dir, "f.tfrecords");
    server.push_faults(
        "f.tfrecords",
        [Fault::Stall {
            after: 3000,
            pause: Duration::from_secs(4),
        }],
    );
    let dest = dir.join("f.tfrecords");
    let o = DownloadOptions {
        read_timeout: Duration::from_millis(300),
        ..opts()
    };
    let report = download(&server.url("f.tfrecords"), &dest, &o).unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), body);
    assert!(
        report.seconds < 3.0,
        "the stall was cut by the read timeout ({} s)",
        report.seconds
    );
    assert_eq!(server.log()[1].range.as_deref(), Some("bytes=3000-"));
}

#[test]
fn an_unreachable_host_says_how_to_place_the_file_by_hand() {
    let dir = scratch("offline");
    // A port that was just free: connections are refused.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}/datasets/x/x-r02.tfrecords");
    let dest = dir.join("datasets/x/x-r02.tfrecords");
    let o = DownloadOptions {
        retries: 2,
        ..opts()
    };
    let err = download(&url, &dest, &o).unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("cannot reach") && msg.contains(&url), "{msg}");
    assert!(
        msg.contains(&dest.display().to_string()) && msg.contains("HESSIAN_GAN_BASE_URL"),
        "{msg}"
    );
    assert!(!msg.contains('\n'), "one line: {msg}");
    assert!(matches!(
        err.downcast_ref::<DownloadError>(),
        Some(DownloadError::GaveUp {
            attempts: 3,
            unreachable: true,
            ..
        })
    ));
    assert_no_output(&dest);
    assert!(!partial_path(&dest).exists());
}

#[test]
fn a_download_in_progress_elsewhere_is_not_joined() {
    let dir = scratch("busy");
    let (server, _) = serve_one(&dir, "f.tfrecords");
    let dest = dir.join("f.tfrecords");
    let lock = std::fs::File::create(partial_path(&dest)).unwrap();
    lock.try_lock().unwrap();
    let err = download(&server.url("f.tfrecords"), &dest, &opts()).unwrap_err();
    assert!(matches!(
        err.downcast_ref::<DownloadError>(),
        Some(DownloadError::Busy { .. })
    ));
    assert!(server.log().is_empty());
    drop(lock);
    download(&server.url("f.tfrecords"), &dest, &opts()).unwrap();
}

#[test]
fn ensure_file_keeps_a_present_file_and_checks_it() {
    let dir = scratch("ensure");
    let (server, body) = serve_one(&dir, "f.tfrecords");
    let url = server.url("f.tfrecords");
    let dest = dir.join("f.tfrecords");
    assert!(ensure_file(&url, &dest, &opts()).unwrap().is_some());
    let o = DownloadOptions {
        sha256: Some(sha256_hex(&body)),
        size: Some(body.len() as u64),
        ..opts()
    };
    assert!(ensure_file(&url, &dest, &o).unwrap().is_none());
    assert_eq!(server.log().len(), 1, "a present file is not fetched again");
    std::fs::write(&dest, b"placed by hand, wrongly").unwrap();
    let msg = format!("{:#}", ensure_file(&url, &dest, &o).unwrap_err());
    assert!(
        msg.contains("delete it") && msg.contains(&dest.display().to_string()),
        "{msg}"
    );
    assert_eq!(
        std::fs::read(&dest).unwrap(),
        b"placed by hand, wrongly",
        "never replaced silently"
    );
}

/// The reference's dataset and model layout served from the test server: every level of a dataset and one
/// pretrained model come down through the registry's paths, one of them through faults, and read back exactly.
#[test]
fn a_dataset_and_a_pretrained_model_download_through_the_registry() {
    let dir = scratch("registry");
    let server = TestServer::start();
    let base =
        resolve_base_url_from(Some(&server.base()), Some("http://ignored.invalid/")).unwrap();
    let ds = resources::dataset("edges_and_shoes").unwrap();
    let mut expected = Vec::new();
    for (log2, file) in &ds.levels {
        let imgs = images(3, 1 << log2, u64::from(*log2));
        server.add_file(&file.remote_path, tfrecord_bytes(&dir, &imgs));
        expected.push((*log2, imgs));
    }
    let r05 = &ds.levels[3].1.remote_path;
    server.push_faults(r05, [Fault::Status(500), Fault::CloseAfter(700)]);
    let out = dir.join("datasets/edges_and_shoes");
    for (_, file) in &ds.levels {
        download(&file.url(&base), &out.join(&file.file_name), &opts()).unwrap();
    }
    assert_eq!(server.log_for(r05).len(), 3);
    let levels = tfrecord::find_levels(&out).unwrap();
    assert_eq!(
        levels.iter().map(|(l, _)| *l).collect::<Vec<_>>(),
        (2..=7).collect::<Vec<_>>()
    );
    for ((log2, path), (want_log2, imgs)) in levels.iter().zip(&expected) {
        assert_eq!(log2, want_log2);
        let read: Vec<_> = tfrecord::TfRecordReader::open(path)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(&read, imgs);
    }

    let model = resources::pretrained("clevr_u_info").unwrap();
    let pickle = noise(50_000, 99);
    server.add_file(&model.file.remote_path, pickle.clone());
    server.push_faults(&model.file.remote_path, [Fault::CloseAfter(20_000)]);
    let dest = dir.join("pretrained_models").join(&model.local_name);
    download(&model.file.url(&base), &dest, &opts()).unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), pickle);
    assert_eq!(
        server.log_for("pretrained_models/clevr_u/underparam_info.pkl")[1]
            .range
            .as_deref(),
        Some("bytes=20000-")
    );
}

#[test]
fn a_failed_dataset_download_names_the_built_in_stand_in() {
    use hessian_gan::data::locate::locate;
    // A mirror that has none of the files: the first level's 404 ends the download at once.
    let server = TestServer::start();
    let dir = scratch("stand-in");
    let datasets = dir.join("datasets");
    for (name, kind) in [
        ("clevr_1fov", "clevr-1fov"),
        ("clevr_simple", "clevr-simple"),
        ("clevr_u", "clevr-simple"),
    ] {
        let err = format!(
            "{:#}",
            locate(name, &datasets, Some(&server.base())).unwrap_err()
        );
        let stand_in = datasets.join(format!("synth_{}", kind.replace('-', "_")));
        assert!(err.contains("HTTP 404"), "{err}");
        assert!(
            err.contains(&format!(
                "hessian-gan dataset synth --kind {kind} {}",
                stand_in.display()
            )) && err.contains(&format!("--dataset synth_{}", kind.replace('-', "_"))),
            "{err}"
        );
        assert!(!err.contains('\n'), "one line: {err}");
    }
    let err = format!(
        "{:#}",
        locate("edges_and_shoes", &datasets, Some(&server.base())).unwrap_err()
    );
    assert!(err.contains("create-edges-and-shoes"), "{err}");
}
