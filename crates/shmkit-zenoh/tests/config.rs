//! Bad configuration is a clear error at start-up, from the library and from the
//! `shmkit-bridge` command; good configuration maps channels to the documented
//! key expressions.

use std::path::PathBuf;
use std::process::Command;

use shmkit_zenoh::{BridgeConfig, ConfigError, Direction, Mode, RouteKind};

const BRIDGE: &str = env!("CARGO_BIN_EXE_shmkit-bridge");

/// A config file unique to this test, removed when dropped.
struct ConfigFile(PathBuf);

impl ConfigFile {
    fn new(test: &str, text: &str) -> ConfigFile {
        let path =
            std::env::temp_dir().join(format!("shmkit-bridge-{test}-{}.toml", std::process::id()));
        std::fs::write(&path, text).expect("writing a config file");
        ConfigFile(path)
    }
}

impl Drop for ConfigFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

const GOOD: &str = r#"
domain = "plant"
key_prefix = "site"

[zenoh]
mode = "client"
connect = ["tcp/127.0.0.1:7447"]
multicast_scouting = false

[[route]]
channel = "telemetry"
kind = "broadcast"
direction = "out"

[[route]]
channel = "jobs"
kind = "queue"
direction = "in"
capacity = 1048576
"#;

fn error(text: &str) -> String {
    match BridgeConfig::from_toml(text) {
        Ok(c) => panic!("accepted: {c:?}"),
        Err(e) => e.to_string(),
    }
}

fn with_route(route: &str) -> String {
    format!("domain = \"d\"\n[[route]]\n{route}\n")
}

#[test]
fn a_good_config_maps_channels_to_key_expressions() {
    let config = BridgeConfig::from_toml(GOOD).expect("good config");
    assert_eq!(config.zenoh.mode, Mode::Client);
    assert!(!config.zenoh.multicast_scouting);
    assert_eq!(config.routes.len(), 2);
    assert_eq!(config.routes[1].kind, RouteKind::Queue);
    assert_eq!(config.routes[1].direction, Direction::In);
    assert_eq!(config.routes[1].capacity, Some(1 << 20));
    let keys: Vec<String> = config
        .routes
        .iter()
        .map(|r| config.key_for(r).expect("key").to_string())
        .collect();
    assert_eq!(keys, ["site/plant/telemetry", "site/plant/jobs"]);
    // Defaults: peer mode, multicast scouting on, the "shmkit" prefix.
    let minimal = BridgeConfig::from_toml(&with_route(
        "channel = \"c\"\nkind = \"rpc\"\ndirection = \"out\"",
    ))
    .expect("minimal config");
    assert_eq!(minimal.zenoh.mode, Mode::Peer);
    assert!(minimal.zenoh.multicast_scouting);
    assert_eq!(
        minimal.key_for(&minimal.routes[0]).expect("key").as_str(),
        "shmkit/d/c"
    );
}

#[test]
fn an_unknown_channel_kind_or_direction_is_named() {
    let e = error(&with_route(
        "channel = \"c\"\nkind = \"stream\"\ndirection = \"out\"",
    ));
    assert!(
        e.contains("unknown variant `stream`") && e.contains("broadcast"),
        "{e}"
    );
    let e = error(&with_route(
        "channel = \"c\"\nkind = \"queue\"\ndirection = \"both\"",
    ));
    assert!(
        e.contains("unknown variant `both`") && e.contains("`out`"),
        "{e}"
    );
    let e = "queue:sideways:c"
        .parse::<shmkit_zenoh::Route>()
        .unwrap_err()
        .to_string();
    assert!(e.contains("unknown direction"), "{e}");
    let e = "fifo:out:c"
        .parse::<shmkit_zenoh::Route>()
        .unwrap_err()
        .to_string();
    assert!(e.contains("unknown channel kind"), "{e}");
    let e = "queue:out"
        .parse::<shmkit_zenoh::Route>()
        .unwrap_err()
        .to_string();
    assert!(e.contains("missing parts"), "{e}");
}

#[test]
fn bad_endpoints_are_refused_with_the_reason() {
    for (endpoint, why) in [
        ("10.0.0.1:7447", "must be of the form"),
        ("tcp/10.0.0.1", "invalid socket address"),
        ("tcp/10.0.0.1:70000", "invalid port"),
        ("quic/10.0.0.1:7447", "not built into this bridge"),
        ("tcp/no-such-host.invalid:7447", "no-such-host.invalid"),
    ] {
        let e = error(&format!(
            "domain = \"d\"\n[zenoh]\nlisten = [\"{endpoint}\"]\n"
        ));
        assert!(e.contains(endpoint) && e.contains(why), "{endpoint}: {e}");
        assert!(!e.contains(".cargo/registry"), "{e}");
    }
}

#[test]
fn bad_key_expressions_are_refused() {
    for channel in ["a*", "$x", "q?", "h#"] {
        let e = error(&with_route(&format!(
            "channel = \"{channel}\"\nkind = \"queue\"\ndirection = \"out\""
        )));
        assert!(
            e.contains("not allowed") && e.contains(channel),
            "{channel}: {e}"
        );
    }
    let e = error("domain = \"a/b\"\n");
    assert!(e.contains("domain \"a/b\""), "{e}");
    let e = error("domain = \"\"\n");
    assert!(e.contains("domain \"\""), "{e}");
    let e = error("domain = \"d\"\nkey_prefix = \"a//b\"\n[[route]]\nchannel = \"c\"\nkind = \"queue\"\ndirection = \"out\"\n");
    assert!(e.contains("a//b/d/c"), "{e}");
}

#[test]
fn other_mistakes_are_named() {
    let e = error("domain = \"d\"\ncolour = \"blue\"\n");
    assert!(e.contains("unknown field `colour`"), "{e}");
    let e = error("[zenoh]\nmode = \"peer\"\n");
    assert!(e.contains("missing field `domain` at the top level"), "{e}");
    let e = error("domain = \"d\"\n[[route]]\nchannel = \"c\"\nkind = \"queue\"\n");
    assert!(
        e.ends_with("line 2, column 1: missing field `direction` in [[route]] number 1"),
        "{e}"
    );
    let e = error("domain = \"d\"\n[zenoh]\nmode = \"broker\"\n");
    assert!(e.contains("unknown variant `broker`"), "{e}");
    let e = error("domain = \"d\"\n[[route]]\nchannel = \"c\"\nkind = \"queue\"\ndirection = \"out\"\ncapacity = 0\n");
    assert!(e.contains("capacity must be positive"), "{e}");
    let e = error("domain = \"d\"\n[[route]]\nchannel = \"c\"\nkind = \"queue\"\ndirection = \"out\"\n[[route]]\nchannel = \"c\"\nkind = \"queue\"\ndirection = \"in\"\n");
    assert!(e.contains("already bridged"), "{e}");
    let e =
        error("domain = \"d\"\n[[route]]\nchannel = \"\"\nkind = \"queue\"\ndirection = \"out\"\n");
    assert!(e.contains("empty channel name"), "{e}");
    let e = error("domain = = \"d\"");
    assert!(e.starts_with("bad config: line 1, column 10: "), "{e}");
    assert!(!e.contains('\n'), "{e}");
    let missing = std::env::temp_dir().join("shmkit-no-such-config.toml");
    let e = BridgeConfig::from_file(&missing).unwrap_err();
    assert!(matches!(e, ConfigError::Read { .. }), "{e:?}");
    assert!(e.to_string().contains("shmkit-no-such-config.toml"), "{e}");
}

/// An unknown field's error is one line that names the field, where it is
/// and the table it is in, and lists the fields that table has.
#[test]
fn an_unknown_field_is_named_on_one_line() {
    let e = error(
        "domain = \"d\"\n[[route]]\nchannel = \"a\"\nkind = \"queue\"\ndirection = \"out\"\n\
         [[route]]\nchannel = \"c\"\nfoo = 1\nkind = \"queue\"\ndirection = \"out\"\n",
    );
    assert_eq!(
        e,
        "bad config: line 8, column 1: unknown field `foo` in [[route]] number 2, \
         expected one of `channel`, `kind`, `direction`, `capacity`, `max_senders`"
    );
    let e = error("domain = \"d\"\n[zenoh]\nmode = \"peer\"\n  conect = []\n");
    assert_eq!(
        e,
        "bad config: line 4, column 3: unknown field `conect` in [zenoh], \
         expected one of `mode`, `listen`, `connect`, `multicast_scouting`"
    );
    let e = error("domain = \"d\"\ncolour = \"blue\"\n");
    assert_eq!(
        e,
        "bad config: line 2, column 1: unknown field `colour` at the top level, \
         expected one of `domain`, `key_prefix`, `zenoh`, `route`"
    );
    // The command: the file's name, then the same one line.
    let file = ConfigFile::new(
        "unknown-field",
        "domain = \"d\"\n[[route]]\nchannel = \"c\"\nfoo = 1\nkind = \"queue\"\ndirection = \"out\"\n",
    );
    let path = file.0.to_string_lossy().into_owned();
    let (code, _, stderr) = run(&["--config", &path]);
    assert_eq!(code, 2, "{stderr}");
    assert_eq!(
        stderr,
        format!(
            "shmkit-bridge: bad config: {path} line 4, column 1: unknown field `foo` in \
             [[route]] number 1, expected one of `channel`, `kind`, `direction`, `capacity`, \
             `max_senders`\n"
        )
    );
}

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BRIDGE)
        .args(args)
        .output()
        .expect("running shmkit-bridge");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_command_refuses_bad_config_at_start_up() {
    let cases = [
        ("kind", "domain = \"d\"\n[[route]]\nchannel = \"c\"\nkind = \"stream\"\ndirection = \"out\"\n", "unknown variant `stream`"),
        ("endpoint", "domain = \"d\"\n[zenoh]\nconnect = [\"tcp/1.2.3.4\"]\n[[route]]\nchannel = \"c\"\nkind = \"queue\"\ndirection = \"out\"\n", "endpoint \"tcp/1.2.3.4\""),
        ("key", "domain = \"d\"\n[[route]]\nchannel = \"c*\"\nkind = \"queue\"\ndirection = \"out\"\n", "key \"shmkit/d/c*\""),
    ];
    for (test, text, why) in cases {
        let file = ConfigFile::new(test, text);
        let path = file.0.to_string_lossy().into_owned();
        let (code, stdout, stderr) = run(&["--config", &path]);
        assert_eq!(code, 2, "{test}: {stderr}");
        assert!(stdout.is_empty(), "{test}: {stdout}");
        assert!(
            stderr.starts_with("shmkit-bridge: bad config") && stderr.contains(why),
            "{test}: {stderr}"
        );
    }
    let (code, _, stderr) = run(&["--domain", "d"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("no routes"), "{stderr}");
    let (code, _, stderr) = run(&["-r", "queue:out:c"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("no domain"), "{stderr}");
    let (code, _, stderr) = run(&["--domain", "d", "-r", "queue:up:c"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("unknown direction"), "{stderr}");
    let (code, _, stderr) = run(&["--config", "/nonexistent/shmkit.toml"]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("cannot read the config file /nonexistent/shmkit.toml"),
        "{stderr}"
    );
}

#[test]
fn the_command_checks_and_prints_the_mapping() {
    let file = ConfigFile::new("check", GOOD);
    let path = file.0.to_string_lossy().into_owned();
    // Flags add routes and override the file.
    let (code, stdout, stderr) = run(&[
        "--config",
        &path,
        "--domain",
        "mill",
        "--check",
        "-r",
        "rpc:in:ask",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        stdout,
        "broadcast out \"telemetry\" <-> site/mill/telemetry\n\
         queue in \"jobs\" <-> site/mill/jobs\n\
         rpc in \"ask\" <-> site/mill/ask\n"
    );
}
