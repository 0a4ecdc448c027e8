//! End-to-end tests of the logger process (the `dray-logger` binary, started the way the containerd
//! shim starts it: argv key/value pairs, fd 3 = stdout pipe, fd 4 = stderr pipe, fd 5 = ready pipe)
//! and of the readers, followers and system log on the files it writes.
//!
//! These tests own only temporary directories and the child processes they spawn; they must never
//! touch containerd or real log directories.

use std::fs;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use dray_logs::{
    append_system_with, follow_with, list_log_files, merge_follow, read, LogLine, ReadOptions,
    Rotation, Stream,
};

mod support;

use support::{spawn_logger, wait_exit, LOGGER};

fn wait_for<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            start.elapsed() < limit,
            "condition not met within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn dir_arg(dir: &Path) -> &str {
    dir.to_str().expect("utf-8 temp path")
}

fn all(dir: &Path) -> Vec<LogLine> {
    read(dir, &ReadOptions::default()).expect("read")
}

#[test]
fn logger_writes_lines_with_stream_time_and_edge_cases() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("app").join("web-1");
    let before = Utc::now();
    // Key/value pairs in a shuffled order plus an unknown key, as the shim may pass them.
    let mut logger = spawn_logger(&[
        "max-files",
        "4",
        "dir",
        dir_arg(&dir),
        "dray-logger",
        "1",
        "future-key",
        "",
    ]);
    assert_eq!(
        logger.wait_ready(),
        vec![0u8],
        "ready = one 0 byte then EOF"
    );

    logger.out().write_all(b"hello\n").expect("write");
    logger.err().write_all(b"oops\n").expect("write");
    logger.out().write_all(b"\n").expect("write");
    let long = "x".repeat(200 * 1024);
    logger.out().write_all(long.as_bytes()).expect("write");
    logger.out().write_all(b"\n").expect("write");
    logger
        .out()
        .write_all(b"bin\xff\xfe\x00\x1b[31mred\tq\"b\\\r\n")
        .expect("write");
    // A multi-byte character straddling the 64 KiB cut.
    let mut straddle = "y".repeat(64 * 1024 - 1);
    straddle.push('é');
    straddle.push('\n');
    logger.out().write_all(straddle.as_bytes()).expect("write");
    logger
        .err()
        .write_all(b"partial without newline")
        .expect("write");
    let status = logger.finish();
    assert!(status.success(), "{status}");
    let after = Utc::now();

    let lines = all(&dir);
    let stdout: Vec<&LogLine> = lines
        .iter()
        .filter(|l| l.stream == Stream::Stdout)
        .collect();
    let stderr: Vec<&str> = lines
        .iter()
        .filter(|l| l.stream == Stream::Stderr)
        .map(|l| l.message.as_str())
        .collect();
    let system: Vec<&str> = lines
        .iter()
        .filter(|l| l.stream == Stream::System)
        .map(|l| l.message.as_str())
        .collect();
    assert_eq!(stderr, ["oops", "partial without newline"]);
    assert_eq!(system.len(), 1, "{system:?}");
    assert!(system[0].contains("future-key"), "{system:?}");
    assert_eq!(stdout[0].message, "hello");
    assert_eq!(stdout[1].message, "");
    // 200 KiB line → 64 + 64 + 64 + 8 KiB pieces, reassembling to the original.
    let pieces: Vec<&str> = stdout[2..6].iter().map(|l| l.message.as_str()).collect();
    assert_eq!(
        pieces.iter().map(|p| p.len()).collect::<Vec<_>>(),
        [65536, 65536, 65536, 8192]
    );
    assert_eq!(pieces.concat(), long);
    assert_eq!(
        stdout[6].message,
        "bin\u{fffd}\u{fffd}\u{0}\u{1b}[31mred\tq\"b\\\r"
    );
    // The cut backs up before 'é' instead of splitting it.
    assert_eq!(stdout[7].message.len(), 64 * 1024 - 1);
    assert_eq!(stdout[8].message, "é");
    assert_eq!(stdout.len(), 9);
    for l in &lines {
        assert!(
            l.time >= before && l.time <= after,
            "{} not in [{before}, {after}]",
            l.time
        );
    }
    // The raw file is one JSON object per line with nanosecond UTC timestamps.
    let raw = fs::read_to_string(dir.join("current.log")).expect("read file");
    let first = raw
        .lines()
        .find(|l| l.contains("hello"))
        .expect("hello record");
    let v: serde_json::Value = serde_json::from_str(first).expect("json");
    assert_eq!(v["s"], "stdout");
    assert_eq!(v["m"], "hello");
    let t = v["t"].as_str().expect("t");
    assert!(
        t.ends_with('Z') && t.len() == "2026-01-15T14:30:00.123456789Z".len(),
        "{t}"
    );
}

#[test]
fn rotation_bounds_files_and_follower_loses_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("p");
    let mut follower =
        follow_with(&dir, ReadOptions::default(), Duration::from_millis(20)).expect("follow");
    let mut logger = spawn_logger(&["dir", dir_arg(&dir), "max-size", "64k", "max-files", "30"]);
    logger.wait_ready();

    // ~5 MB of numbered lines (~8 MB of records, ~125 rotations), paced so that the follower
    // (20 ms polls) is never 30 rotations (~400 ms) behind even on a loaded 2-core machine,
    // written from a thread while this one consumes the follower.
    let mut out = logger.stdout.take().expect("stdout");
    let (done_tx, done_rx) = std_mpsc::channel();
    std::thread::spawn(move || {
        let pad = "p".repeat(90);
        let mut n = 0u64;
        let mut total = 0usize;
        while total < 5_000_000 {
            let mut chunk = String::new();
            while chunk.len() < 100_000 {
                chunk.push_str(&format!("{n:08} {pad}\n"));
                n += 1;
            }
            total += chunk.len();
            out.write_all(chunk.as_bytes()).expect("write");
            std::thread::sleep(Duration::from_millis(30));
        }
        drop(out);
        let _ = done_tx.send(n);
    });

    let mut next = 0u64;
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut written = None;
    loop {
        if written.is_none() {
            written = done_rx.try_recv().ok();
        }
        if written == Some(next) {
            break;
        }
        assert!(Instant::now() < deadline, "follower stalled at line {next}");
        match follower.try_recv() {
            Ok(line) => {
                let num: u64 = line.message[..8].parse().expect("numbered line");
                assert_eq!(
                    num, next,
                    "follower lost or duplicated a line across rotation"
                );
                next += 1;
            }
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
    assert!(logger.finish().success());
    let n = next;

    let files = list_log_files(&dir).expect("list");
    assert_eq!(
        files,
        (0..30).collect::<Vec<_>>(),
        "exactly max_files files are kept"
    );
    for f in &files {
        let len = fs::metadata(dray_logs::log_file_path(&dir, *f))
            .expect("stat")
            .len();
        assert!(len <= 64 * 1024, "file {f} is {len} bytes");
    }
    // What is kept is the newest contiguous suffix.
    let kept = all(&dir);
    let nums: Vec<u64> = kept
        .iter()
        .map(|l| l.message[..8].parse().expect("num"))
        .collect();
    assert_eq!(*nums.last().expect("some lines"), n - 1);
    assert!(nums.windows(2).all(|w| w[1] == w[0] + 1));
    assert!(
        nums.len() > 29 * 400,
        "about 30 x 64 KiB of ~160-byte records: {}",
        nums.len()
    );
}

#[test]
fn follow_sees_new_lines_quickly_and_tail_zero_means_only_new() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("p");
    // Follow before the directory exists (process starting).
    let mut rx = dray_logs::follow(&dir, ReadOptions::default()).expect("follow");
    let mut logger = spawn_logger(&["dir", dir_arg(&dir)]);
    logger.wait_ready();
    for i in 0..3 {
        let start = Instant::now();
        logger
            .out()
            .write_all(format!("live {i}\n").as_bytes())
            .expect("write");
        let line = wait_for(Duration::from_secs(2), || rx.try_recv().ok());
        assert_eq!(line.message, format!("live {i}"));
        assert!(start.elapsed() < Duration::from_secs(2));
    }
    // With tail = 0 a second follower sees only new lines.
    let mut only_new = dray_logs::follow(
        &dir,
        ReadOptions {
            tail: Some(0),
            ..Default::default()
        },
    )
    .expect("follow");
    std::thread::sleep(Duration::from_millis(300));
    logger.err().write_all(b"after\n").expect("write");
    let line = wait_for(Duration::from_secs(2), || only_new.try_recv().ok());
    assert_eq!(
        (line.message.as_str(), line.stream),
        ("after", Stream::Stderr)
    );
    drop(rx);
    drop(only_new);
    assert!(logger.finish().success());
}

#[test]
fn kill_9_loses_nothing_flushed_and_restart_appends_cleanly() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("p");
    let mut logger = spawn_logger(&["dir", dir_arg(&dir)]);
    logger.wait_ready();
    for i in 0..1000 {
        logger
            .out()
            .write_all(format!("line {i}\n").as_bytes())
            .expect("write");
    }
    wait_for(Duration::from_secs(3), || {
        (all(&dir).len() == 1000).then_some(())
    });
    logger.child.kill().expect("SIGKILL");
    let _ = logger.child.wait();
    assert_eq!(all(&dir).len(), 1000);

    // Simulate a write torn by the crash, then a new logger on the same directory.
    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(dir.join("current.log"))
        .expect("open");
    f.write_all(b"{\"t\":\"2026-01-15T14:3").expect("write");
    drop(f);
    let mut logger = spawn_logger(&["dir", dir_arg(&dir)]);
    logger.wait_ready();
    logger.out().write_all(b"after restart\n").expect("write");
    assert!(logger.finish().success());
    let lines = all(&dir);
    assert_eq!(lines.len(), 1001);
    assert_eq!(lines[999].message, "line 999");
    assert_eq!(lines[1000].message, "after restart");
}

#[test]
fn sigterm_writes_buffered_lines_and_exits() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("p");
    let mut logger = spawn_logger(&["dir", dir_arg(&dir)]);
    logger.wait_ready();
    logger.out().write_all(b"before term\n").expect("write");
    // SAFETY: plain kill(2) on our own child.
    unsafe { libc::kill(logger.child.id() as i32, libc::SIGTERM) };
    // The pipes stay open (as in the shim, which closes them around the SIGTERM): it must exit anyway.
    let status = wait_exit(&mut logger.child, Duration::from_secs(7));
    assert!(status.success(), "{status}");
    assert_eq!(
        all(&dir).last().map(|l| l.message.clone()),
        Some("before term".into())
    );
}

#[test]
fn disk_failure_never_blocks_and_recovers_with_a_notice() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let blocker = tmp.path().join("blocker");
    fs::write(&blocker, b"a file where the log directory should be").expect("write");
    let dir = blocker.join("p");
    let mut logger = spawn_logger(&["dir", dir_arg(&dir)]);
    assert_eq!(
        logger.wait_ready(),
        vec![0u8],
        "ready even though the directory is unusable"
    );
    // Far more than a pipe buffer: must not block.
    let (tx, rx) = std_mpsc::channel();
    let mut out = logger.stdout.take().expect("stdout");
    let writer = std::thread::spawn(move || {
        for i in 0..20_000 {
            let _ = out.write_all(
                format!("dropped line {i} .................................\n").as_bytes(),
            );
        }
        let _ = tx.send(());
        out
    });
    rx.recv_timeout(Duration::from_secs(5))
        .expect("the logger kept draining while the disk failed");
    let out = writer.join().expect("writer");
    logger.stdout = Some(out);

    // Repair the "disk" and wait past the retry interval.
    fs::remove_file(&blocker).expect("remove");
    std::thread::sleep(Duration::from_millis(1200));
    logger.out().write_all(b"back\n").expect("write");
    assert!(logger.finish().success());
    let lines = all(&dir);
    let msgs: Vec<&str> = lines.iter().map(|l| l.message.as_str()).collect();
    assert_eq!(msgs.len(), 2, "{msgs:?}");
    assert_eq!(lines[0].stream, Stream::System);
    assert!(
        msgs[0].starts_with("dray-logs: dropped 20000 lines"),
        "{msgs:?}"
    );
    assert_eq!(msgs[1], "back");
}

#[test]
fn bad_arguments_still_signal_ready_and_drain() {
    let mut logger = spawn_logger(&["max-size", "10"]);
    logger.wait_ready();
    let big = vec![b'z'; 1 << 20];
    logger.out().write_all(&big).expect("drained");
    let status = logger.finish();
    assert_eq!(status.code(), Some(2));
}

#[test]
fn missing_shim_descriptors_is_an_error() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut cmd = Command::new(LOGGER);
    cmd.args(["dir", dir_arg(tmp.path())])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // SAFETY: only close(2) between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            for fd in 3..=5 {
                libc::close(fd);
            }
            Ok(())
        });
    }
    let out = cmd.output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("file descriptor 3 is not open"));
}

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .expect("time")
        .with_timezone(&Utc)
}

fn write_records(path: &Path, lines: &[(&str, Stream, &str)]) {
    let mut buf = Vec::new();
    for (t, s, m) in lines {
        buf.extend(
            LogLine {
                time: at(t),
                stream: *s,
                message: m.to_string(),
            }
            .to_record(),
        );
    }
    fs::write(path, buf).expect("write");
}

fn messages(lines: &[LogLine]) -> Vec<&str> {
    lines.iter().map(|l| l.message.as_str()).collect()
}

#[test]
fn reader_since_tail_filter_across_rotated_files() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    use Stream::*;
    write_records(
        &dir.join("current.log.2"),
        &[
            ("2026-01-15T14:00:00Z", Stdout, "GET /a 200"),
            ("2026-01-15T14:01:00Z", Stderr, "boom"),
        ],
    );
    write_records(
        &dir.join("current.log.1"),
        &[
            ("2026-01-15T14:02:00Z", Stdout, "GET /b 500"),
            ("2026-01-15T14:03:00Z", Stdout, "GET /c 200"),
        ],
    );
    write_records(
        &dir.join("current.log"),
        &[
            ("2026-01-15T14:04:00Z", Stdout, "GET /d 200"),
            ("2026-01-15T14:05:00Z", System, "restarted"),
        ],
    );
    // A torn tail and junk are skipped.
    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(dir.join("current.log.1"))
        .expect("open");
    f.write_all(b"not json\n").expect("write");
    drop(f);
    fs::write(dir.join("unrelated.txt"), b"x\n").expect("write");

    let r = |since: Option<&str>, tail: Option<usize>, filter: Option<&str>| {
        let opts = ReadOptions {
            since: since.map(at),
            tail,
            filter: filter.map(str::to_string),
        };
        let lines = read(dir, &opts).expect("read");
        messages(&lines)
            .into_iter()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        r(None, None, None),
        [
            "GET /a 200",
            "boom",
            "GET /b 500",
            "GET /c 200",
            "GET /d 200",
            "restarted"
        ]
    );
    assert_eq!(
        r(None, Some(3), None),
        ["GET /c 200", "GET /d 200", "restarted"]
    );
    assert_eq!(r(None, Some(0), None), Vec::<String>::new());
    assert_eq!(r(None, Some(100), None).len(), 6);
    assert_eq!(
        r(Some("2026-01-15T14:02:00Z"), None, None),
        ["GET /b 500", "GET /c 200", "GET /d 200", "restarted"]
    );
    assert_eq!(r(None, None, Some("GET")).len(), 4);
    assert_eq!(r(None, Some(2), Some("200")), ["GET /c 200", "GET /d 200"]);
    assert_eq!(
        r(Some("2026-01-15T14:01:00Z"), Some(2), Some("GET")),
        ["GET /c 200", "GET /d 200"]
    );
    assert_eq!(r(None, None, Some("get")), Vec::<String>::new());
    // Missing directory: no lines.
    assert!(read(&dir.join("nope"), &ReadOptions::default())
        .expect("read")
        .is_empty());
    // Convox rendering.
    let last = read(dir, &ReadOptions::default())
        .expect("read")
        .pop()
        .expect("line");
    assert_eq!(
        last.to_convox("system/dray/web"),
        "2026-01-15T14:05:00Z system/dray/web restarted"
    );
}

#[test]
fn system_log_rotates_and_is_readable() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir: PathBuf = tmp.path().join("app").join("system");
    let rot = Rotation {
        max_size: 1024,
        max_files: 3,
    };
    for i in 0..100 {
        append_system_with(&dir, &format!("process web-{i} started"), rot).expect("append");
    }
    append_system_with(
        &dir,
        "process web-99 crashed: exit code 137\nsecond line",
        rot,
    )
    .expect("append");
    assert_eq!(list_log_files(&dir).expect("list"), vec![0, 1, 2]);
    let lines = all(&dir);
    assert!(lines.iter().all(|l| l.stream == Stream::System));
    assert_eq!(
        lines.last().map(|l| l.message.as_str()),
        Some("process web-99 crashed: exit code 137\nsecond line")
    );
    assert!(lines.windows(2).all(|w| w[0].time <= w[1].time));
    dray_logs::append_system(&dir, "default rotation").expect("append");
}

#[test]
fn merged_follow_interleaves_processes_by_time() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let a = tmp.path().join("a");
    let b = tmp.path().join("b");
    use Stream::*;
    fs::create_dir_all(&a).expect("mkdir");
    fs::create_dir_all(&b).expect("mkdir");
    write_records(
        &a.join("current.log"),
        &[
            ("2026-01-15T14:00:00Z", Stdout, "a1"),
            ("2026-01-15T14:00:03Z", Stdout, "a3"),
        ],
    );
    write_records(
        &b.join("current.log"),
        &[
            ("2026-01-15T14:00:02Z", Stdout, "b2"),
            ("2026-01-15T14:00:04Z", Stdout, "b4"),
        ],
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let fa = dray_logs::follow(&a, ReadOptions::default()).expect("follow");
        let fb = dray_logs::follow(&b, ReadOptions::default()).expect("follow");
        let mut merged = merge_follow(
            vec![("web-a", fa), ("web-b", fb)],
            Duration::from_millis(300),
        );
        let mut got = Vec::new();
        for _ in 0..4 {
            let next = tokio::time::timeout(Duration::from_secs(3), merged.recv()).await;
            let (k, l) = next.expect("in time").expect("open");
            got.push(format!("{k}:{}", l.message));
        }
        assert_eq!(got, ["web-a:a1", "web-b:b2", "web-a:a3", "web-b:b4"]);
        // A live line from one process arrives within the window + poll interval.
        dray_logs::append_system(&b, "live").expect("append");
        let next = tokio::time::timeout(Duration::from_secs(3), merged.recv()).await;
        let (k, l) = next.expect("in time").expect("open");
        assert_eq!((k, l.message.as_str()), ("web-b", "live"));
    });
}

#[test]
fn follower_handles_several_rotations_between_polls() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("sys");
    // ~110-byte records, 2 per file, 10 files.
    let rot = Rotation {
        max_size: 250,
        max_files: 10,
    };
    let append =
        |i: usize| append_system_with(&dir, &format!("event {i:04}"), rot).expect("append");
    let nums = |lines: Vec<LogLine>| -> Vec<usize> {
        lines
            .iter()
            .map(|l| l.message[6..].parse().expect("num"))
            .collect()
    };
    for i in 0..3 {
        append(i);
    }
    let mut f = dray_logs::Follower::new(
        &dir,
        ReadOptions {
            tail: Some(2),
            ..Default::default()
        },
    );
    assert_eq!(nums(f.poll().expect("poll")), [1, 2]);
    assert!(f.poll().expect("poll").is_empty());
    // 7 rotations between two polls: nothing lost, nothing repeated.
    for i in 3..17 {
        append(i);
    }
    assert_eq!(nums(f.poll().expect("poll")), (3..17).collect::<Vec<_>>());
    // Far more rotations than files: the lines of deleted files are lost (the follower fell more
    // than max_files rotations behind), but what is returned is in order, without repeats, and
    // ends with the newest line; after the gap it is contiguous again.
    for i in 17..80 {
        append(i);
    }
    let got = nums(f.poll().expect("poll"));
    assert!(
        got[0] >= 17 && got.windows(2).all(|w| w[1] > w[0]),
        "{got:?}"
    );
    assert!(got[1..].windows(2).all(|w| w[1] == w[0] + 1), "{got:?}");
    assert_eq!(got.last(), Some(&79));
    append(80);
    assert_eq!(nums(f.poll().expect("poll")), [80]);
}
