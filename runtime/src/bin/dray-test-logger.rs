//! Test-only `binary://` logger (feature `testing`): proves the shim's logger protocol.
//!
//! Started by containerd's shim with fds 3 (stdout), 4 (stderr), 5 (ready); appends
//! `START <id> <namespace> <args>`, then `OUT <line>` / `ERR <line>` to the file named by the
//! `file` query argument. Must never write anywhere else.

use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, Write};
use std::sync::{Arc, Mutex};

fn main() {
    let mut io = match dray_runtime::logger::LoggerIo::from_env() {
        Ok(io) => io,
        Err(e) => {
            eprintln!("dray-test-logger: {e}");
            std::process::exit(2);
        }
    };
    let Some(path) = io.arg("file").map(str::to_string) else {
        std::process::exit(2);
    };
    let file = match OpenOptions::new().create(true).append(true).open(&path) {
        Ok(f) => Arc::new(Mutex::new(f)),
        Err(_) => std::process::exit(3),
    };
    let write = |f: &Arc<Mutex<std::fs::File>>, line: String| {
        if let Ok(mut f) = f.lock() {
            let _ = f.write_all(line.as_bytes());
            let _ = f.flush();
        }
    };
    let mut args = io.args.clone();
    args.sort();
    write(
        &file,
        format!("START {} {} {:?}\n", io.container_id, io.namespace, args),
    );
    io.ready();
    let stderr = io.stderr.try_clone().expect("dup stderr fd");
    let f2 = file.clone();
    let t = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            write(&f2, format!("ERR {line}\n"));
        }
    });
    for line in BufReader::new(&io.stdout).lines().map_while(Result::ok) {
        write(&file, format!("OUT {line}\n"));
    }
    let _ = t.join();
}
