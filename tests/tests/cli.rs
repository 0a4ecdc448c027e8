//! The `dray` CLI against a real drayd: exact outputs, errors, app and rack selection.

use dray_tests::{stderr_fail, stdout_ok, Rack};

fn lines(s: &str) -> Vec<&str> {
    s.lines().collect()
}

#[tokio::test]
async fn apps_walkthrough_prints_exactly_what_convox_prints() {
    let rack = Rack::start().await;
    assert_eq!(
        stdout_ok(&rack.dray(&["apps", "create", "myapp"])),
        "Creating myapp... OK\n"
    );
    // Before the first release, Release is empty, not a made-up id.
    assert_eq!(
        stdout_ok(&rack.dray(&["apps", "info", "myapp"])),
        "Name    myapp\nStatus  running\nLocked  false\nRelease\nRouter\n"
    );
    assert_eq!(
        stdout_ok(&rack.dray(&["apps"])),
        "APP    STATUS   RELEASE\nmyapp  running\n"
    );
    assert_eq!(
        stdout_ok(&rack.dray(&["apps", "lock", "myapp"])),
        "Locking myapp... OK\n"
    );
    assert_eq!(
        stdout_ok(&rack.dray(&["apps", "info", "-a", "myapp"]))
            .lines()
            .nth(2),
        Some("Locked  true")
    );
    let out = rack.dray(&["apps", "delete", "myapp"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "Deleting myapp... ");
    assert_eq!(stderr_fail(&out), "ERROR: app is locked: myapp\n");
    assert_eq!(
        stdout_ok(&rack.dray(&["apps", "unlock", "myapp"])),
        "Unlocking myapp... OK\n"
    );
    let out = rack.dray(&["apps", "cancel", "myapp"]);
    assert_eq!(
        stderr_fail(&out),
        "ERROR: nothing to cancel: app myapp is not deploying (status running)\n"
    );
    assert_eq!(
        stdout_ok(&rack.dray(&["apps", "delete", "myapp"])),
        "Deleting myapp... OK\n"
    );
    assert_eq!(stdout_ok(&rack.dray(&["apps"])), "APP  STATUS  RELEASE\n");
}

#[tokio::test]
async fn app_name_errors_are_specific() {
    let rack = Rack::start().await;
    stdout_ok(&rack.dray(&["apps", "create", "taken"]));
    let err = stderr_fail(&rack.dray(&["apps", "create", "taken"]));
    assert!(err.contains("app already exists: taken"), "{err}");
    let err = stderr_fail(&rack.dray(&["apps", "create", "rack"]));
    assert!(err.contains("reserved"), "{err}");
    let err = stderr_fail(&rack.dray(&["apps", "create", "My_App"]));
    assert!(err.contains("invalid app name \"My_App\""), "{err}");
    let err = stderr_fail(&rack.dray(&["apps", "info", "nope"]));
    assert_eq!(err, "ERROR: app not found: nope\n");
}

#[tokio::test]
async fn env_changes_make_releases_with_convox_descriptions() {
    let rack = Rack::start().await;
    stdout_ok(&rack.dray(&["apps", "create", "web1"]));
    let out = stdout_ok(&rack.dray(&["env", "set", "A=1", "B=x=y", "-a", "web1"]));
    let l = lines(&out);
    assert_eq!(l[0], "Setting A, B... OK");
    let r1 = l[1]
        .strip_prefix("Release: ")
        .expect("release line")
        .to_string();
    assert!(
        r1.len() == 11 && r1.starts_with('R') && r1[1..].chars().all(|c| c.is_ascii_uppercase())
    );

    assert_eq!(
        stdout_ok(&rack.dray(&["env", "-a", "web1"])),
        "A=1\nB=x=y\n"
    );
    assert_eq!(
        stdout_ok(&rack.dray(&["env", "get", "B", "-a", "web1"])),
        "x=y\n"
    );
    let err = stderr_fail(&rack.dray(&["env", "get", "C", "-a", "web1"]));
    assert_eq!(err, "ERROR: env not found: C\n");

    let out = stdout_ok(&rack.dray(&["env", "set", "A=2", "C=3", "-a", "web1"]));
    let r2 = lines(&out)[1]
        .strip_prefix("Release: ")
        .unwrap()
        .to_string();
    let out = stdout_ok(&rack.dray(&["env", "unset", "B", "-a", "web1"]));
    assert_eq!(lines(&out)[0], "Unsetting B... OK");
    let r3 = lines(&out)[1]
        .strip_prefix("Release: ")
        .unwrap()
        .to_string();

    // Newest first, with Convox's descriptions.
    let out = stdout_ok(&rack.dray(&["releases", "-a", "web1"]));
    let l = lines(&out);
    assert_eq!(
        l[0].split_whitespace().collect::<Vec<_>>(),
        ["ID", "STATUS", "BUILD", "CREATED", "DESCRIPTION"]
    );
    assert!(
        l[1].starts_with(&r3) && l[1].ends_with("env remove:B"),
        "{out}"
    );
    assert!(
        l[2].starts_with(&r2) && l[2].ends_with("env add:C change:A"),
        "{out}"
    );
    assert!(
        l[3].starts_with(&r1) && l[3].ends_with("env add:A,B"),
        "{out}"
    );
    assert!(l[1].contains("ago"), "{out}");

    // --release reads an older release; --replace starts from nothing.
    assert_eq!(
        stdout_ok(&rack.dray(&["env", "--release", &r1, "-a", "web1"])),
        "A=1\nB=x=y\n"
    );
    stdout_ok(&rack.dray(&["env", "set", "--replace", "ONLY=1", "-a", "web1"]));
    assert_eq!(stdout_ok(&rack.dray(&["env", "-a", "web1"])), "ONLY=1\n");

    // releases info
    let out = stdout_ok(&rack.dray(&["releases", "info", &r2, "-a", "web1"]));
    let l = lines(&out);
    assert_eq!(l[0], format!("Id          {r2}"));
    assert_eq!(l[3], "Description env add:C change:A");
    assert_eq!(l[4], "Env         A=2");
    assert_eq!(l[5], "            B=x=y");
    assert_eq!(l[6], "            C=3");

    // Bad input: clear errors, no release made.
    let before = rack
        .client()
        .releases("web1", Some(100))
        .await
        .unwrap()
        .len();
    let err = stderr_fail(&rack.dray(&["env", "set", "NOVALUE", "-a", "web1"]));
    assert!(err.contains("expected KEY=VALUE"), "{err}");
    let err = stderr_fail(&rack.dray(&["env", "set", "A=x\ny", "-a", "web1"]));
    assert!(err.contains("contains a newline"), "{err}");
    let err = stderr_fail(&rack.dray(&["env", "set", "1BAD=x", "-a", "web1"]));
    assert!(err.contains("invalid key"), "{err}");
    let err = stderr_fail(&rack.dray(&["env", "unset", "MISSING", "-a", "web1"]));
    assert!(err.contains("env not found: MISSING"), "{err}");
    let err = stderr_fail(&rack.dray(&["releases", "info", "RNOPENOPENO", "-a", "web1"]));
    assert_eq!(err, "ERROR: release not found: RNOPENOPENO\n");
    assert_eq!(
        rack.client()
            .releases("web1", Some(100))
            .await
            .unwrap()
            .len(),
        before
    );
}

#[tokio::test]
async fn env_set_reads_stdin() {
    let rack = Rack::start().await;
    stdout_ok(&rack.dray(&["apps", "create", "stdinapp"]));
    let out = rack.dray_stdin(
        &["env", "set", "-a", "stdinapp"],
        "# comment\nexport DB=postgres://x\nQUOTED=\"a b\"\n\n",
    );
    let out = stdout_ok(&out);
    assert!(
        out.starts_with("Setting DB, QUOTED... OK\nRelease: R"),
        "{out}"
    );
    assert_eq!(
        stdout_ok(&rack.dray(&["env", "-a", "stdinapp"])),
        "DB=postgres://x\nQUOTED=a b\n"
    );
}

#[tokio::test]
async fn app_is_chosen_by_flag_then_convox_file_then_directory() {
    let rack = Rack::start().await;
    for a in ["fromflag", "fromfile", "fromdir"] {
        stdout_ok(&rack.dray(&["apps", "create", a]));
    }
    let dir = rack.dir.path().join("fromdir");
    std::fs::create_dir_all(&dir).unwrap();
    stdout_ok(&rack.dray_in(&dir, &["env", "set", "WHO=dir"]));
    assert_eq!(stdout_ok(&rack.dray_in(&dir, &["env"])), "WHO=dir\n");

    std::fs::create_dir_all(dir.join(".convox")).unwrap();
    std::fs::write(dir.join(".convox/app"), "fromfile\n").unwrap();
    stdout_ok(&rack.dray_in(&dir, &["env", "set", "WHO=file"]));
    assert_eq!(
        stdout_ok(&rack.dray(&["env", "-a", "fromfile"])),
        "WHO=file\n"
    );
    stdout_ok(&rack.dray_in(&dir, &["env", "set", "WHO=flag", "--app", "fromflag"]));
    assert_eq!(
        stdout_ok(&rack.dray(&["env", "-a", "fromflag"])),
        "WHO=flag\n"
    );
    // `apps info` with no name uses the same rule.
    assert!(stdout_ok(&rack.dray_in(&dir, &["apps", "info"])).starts_with("Name    fromfile\n"));
}

#[tokio::test]
async fn json_on_read_commands() {
    let rack = Rack::start().await;
    stdout_ok(&rack.dray(&["apps", "create", "j"]));
    stdout_ok(&rack.dray(&["env", "set", "A=1", "-a", "j"]));
    for args in [
        vec!["apps", "--json"],
        vec!["apps", "info", "j", "--json"],
        vec!["env", "-a", "j", "--json"],
        vec!["releases", "-a", "j", "--json"],
        vec!["builds", "-a", "j", "--json"],
        vec!["rack", "--json"],
    ] {
        let out = stdout_ok(&rack.dray(&args));
        serde_json::from_str::<serde_json::Value>(&out)
            .unwrap_or_else(|e| panic!("{args:?} printed no JSON ({e}): {out}"));
    }
    let apps: serde_json::Value =
        serde_json::from_str(&stdout_ok(&rack.dray(&["apps", "--json"]))).unwrap();
    assert_eq!(apps[0]["name"], "j");
    assert_eq!(
        stdout_ok(&rack.dray(&["builds", "-a", "j"])),
        "ID  STATUS  RELEASE  STARTED  ELAPSED  DESCRIPTION\n"
    );
}

#[tokio::test]
async fn login_saves_the_rack_privately_and_bad_tokens_are_refused() {
    let rack = Rack::start().await;
    let url = rack.url();
    let mut cmd = rack.dray_cmd(rack.dir.path(), &["login", &url, "--token", "wrong-token"]);
    cmd.env_remove("DRAY_HOST").env_remove("DRAY_TOKEN");
    let out = cmd.output().unwrap();
    let err = stderr_fail(&out);
    assert!(err.contains("invalid or missing token"), "{err}");

    let mut cmd = rack.dray_cmd(rack.dir.path(), &["login", &url, "--token", &rack.token]);
    cmd.env_remove("DRAY_HOST").env_remove("DRAY_TOKEN");
    let out = stdout_ok(&cmd.output().unwrap());
    assert_eq!(out, format!("Authenticating with {url}... OK\n"));
    let cfg = rack.config_dir().join("config.json");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&cfg).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // With no DRAY_HOST/DRAY_TOKEN the saved login is used.
    let mut cmd = rack.dray_cmd(rack.dir.path(), &["rack"]);
    cmd.env_remove("DRAY_HOST").env_remove("DRAY_TOKEN");
    let out = stdout_ok(&cmd.output().unwrap());
    assert!(out.starts_with("Name     dray\n"), "{out}");
    let mut cmd = rack.dray_cmd(rack.dir.path(), &["racks"]);
    cmd.env_remove("DRAY_HOST").env_remove("DRAY_TOKEN");
    let out = stdout_ok(&cmd.output().unwrap());
    assert!(out.contains(&url) && out.contains('*'), "{out}");
}

#[tokio::test]
async fn unreachable_rack_and_missing_rack_errors_are_one_actionable_line() {
    let rack = Rack::start().await;
    let mut cmd = rack.dray_cmd(rack.dir.path(), &["apps"]);
    cmd.env("DRAY_HOST", "http://127.0.0.1:1");
    let err = stderr_fail(&cmd.output().unwrap());
    assert_eq!(
        err,
        "ERROR: cannot reach the rack at http://127.0.0.1:1: connection refused\n"
    );
    let mut cmd = rack.dray_cmd(rack.dir.path(), &["apps"]);
    cmd.env_remove("DRAY_HOST").env_remove("DRAY_TOKEN");
    let err = stderr_fail(&cmd.output().unwrap());
    assert!(
        err.starts_with("ERROR: no rack selected: run `dray login"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1);
}

#[tokio::test]
async fn help_and_completion_work_for_every_command() {
    let rack = Rack::start().await;
    for cmd in [
        vec![],
        vec!["apps"],
        vec!["apps", "create"],
        vec!["apps", "info"],
        vec!["apps", "delete"],
        vec!["apps", "lock"],
        vec!["apps", "unlock"],
        vec!["apps", "cancel"],
        vec!["env"],
        vec!["env", "get"],
        vec!["env", "set"],
        vec!["env", "unset"],
        vec!["releases"],
        vec!["releases", "info"],
        vec!["releases", "manifest"],
        vec!["builds"],
        vec!["builds", "info"],
        vec!["rack"],
        vec!["login"],
        vec!["racks"],
        vec!["switch"],
        vec!["manifest"],
        vec!["api", "get"],
        vec!["completion"],
        vec!["plugins"],
        vec!["plugins", "install"],
        vec!["resources"],
        vec!["resources", "info"],
        vec!["resources", "url"],
        vec!["resources", "plan"],
        vec!["resources", "export"],
        vec!["resources", "import"],
        vec!["resources", "console"],
    ] {
        let mut args = cmd.clone();
        args.push("--help");
        let out = stdout_ok(&rack.dray(&args));
        assert!(out.contains("Usage: dray"), "{cmd:?}: {out}");
    }
    for shell in ["bash", "zsh", "fish"] {
        let out = stdout_ok(&rack.dray(&["completion", shell]));
        assert!(out.contains("dray") && out.len() > 500, "{shell}");
    }
}
