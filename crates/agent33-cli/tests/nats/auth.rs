//! Authentication and TLS are NATS's own (PRODUCT-distributed.md, Trust):
//! a `tls://` server that wants a user and password, reached by a worker
//! and a run that trust its certificate authority through `SSL_CERT_FILE`,
//! and a wrong password refused with the URL named and the secret not; a
//! server in operator mode (JWTs signed here with nkeys, as `nsc` makes
//! them) reached with a credentials file.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{
    HANG, Sandbox, agent33, serial, server_binary, signal, wait_for, wait_output,
};

const PASSWORD: &str = "s3cret-pw";

/// A certificate authority and a certificate for 127.0.0.1 signed by it,
/// made with `openssl` in `dir`: `ca.pem`, `server.pem`, `server.key`.
fn certificates(dir: &Sandbox) {
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .output()
            .expect("openssl runs (Debian package openssl)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=agent-33 test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]);
    dir.write("san.ext", "subjectAltName=IP:127.0.0.1,DNS:localhost\n");
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "san.ext",
        "-out",
        "server.pem",
    ]);
}

/// A child process killed and reaped when dropped, so that a failed
/// assertion leaves no server or worker behind.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A `nats-server` on a free port with `args` (its log in `server.err`);
/// its port.
fn start_server(binary: &Path, dir: &Sandbox, args: &[&std::ffi::OsStr]) -> (Reaped, u16) {
    let mut child = Command::new(binary)
        .args(args)
        .args(["-a", "127.0.0.1", "-p", "-1", "--ports_file_dir"])
        .arg(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("server.err")).expect("a log file"))
        .spawn()
        .expect("nats-server starts");
    let ports = dir.join(format!("nats-server_{}.ports", child.id()));
    let port = wait_for("the server's ports file", Duration::from_secs(20), || {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("nats-server exited ({status}): {}", dir.read("server.err"));
        }
        let ports: Value = serde_json::from_str(&std::fs::read_to_string(&ports).ok()?).ok()?;
        ports["nats"][0].as_str()?.rsplit(':').next()?.parse().ok()
    });
    (Reaped(child), port)
}

/// The server binary, or `None` to skip (outside CI only).
fn binary() -> Option<PathBuf> {
    let binary = server_binary();
    if binary.is_none() {
        assert!(
            std::env::var("CI").map_or(true, |v| v != "true"),
            "nats-server is not installed: CI must install it (.ci/run)"
        );
        eprintln!("SKIPPED: nats-server is not installed");
    }
    binary
}

/// The one-task manifest both tests run.
const MANIFEST: &str = "agents:\n  say: { shell: true, command: 'echo \"$1 on $A33_TEST_WORKER\"' }\ntasks:\n  - { agent: say, artifact: x }\n";

#[test]
fn tls_and_a_password_reach_a_server_that_requires_them() {
    let _lock = serial();
    let Some(binary) = binary() else {
        return;
    };
    let dir = Sandbox::new();
    certificates(&dir);
    let (cert, key, store) = (
        dir.join("server.pem"),
        dir.join("server.key"),
        dir.join("store"),
    );
    let (_server, port) = start_server(
        &binary,
        &dir,
        &[
            "-js".as_ref(),
            "-sd".as_ref(),
            store.as_os_str(),
            "--tls".as_ref(),
            "--tlscert".as_ref(),
            cert.as_os_str(),
            "--tlskey".as_ref(),
            key.as_os_str(),
            "--user".as_ref(),
            "a33".as_ref(),
            "--pass".as_ref(),
            PASSWORD.as_ref(),
        ],
    );
    dir.write("agent33.yaml", MANIFEST);
    let ca = dir.join("ca.pem");
    let url = format!("tls://a33:{PASSWORD}@127.0.0.1:{port}");

    let worker_err = dir.join("worker.err");
    let mut worker = Reaped(
        agent33(&dir.path())
            .args(["worker", "--nats", &url, "--id", "w1", "--slots", "1"])
            .env("SSL_CERT_FILE", &ca)
            .env("A33_TEST_WORKER", "w1")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&worker_err).expect("a stderr file"))
            .spawn()
            .expect("the worker starts"),
    );
    let ready = wait_for("the worker's ready line", HANG, || {
        let text = std::fs::read_to_string(&worker_err).ok()?;
        text.lines()
            .find(|l| l.starts_with("ready: worker w1"))
            .map(str::to_owned)
    });
    assert!(!ready.contains(PASSWORD), "{ready}");
    assert!(
        ready.contains(&format!("tls://a33:***@127.0.0.1:{port}")),
        "{ready}"
    );

    let run = agent33(&dir.path())
        .args(["run", "--nats", &url, "--report", "r.json"])
        .env("SSL_CERT_FILE", &ca)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("agent-33 starts");
    let output = wait_output(run, HANG);
    let err = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{err}");
    let report = dir.json("r.json");
    let task = &report["succeeded"][0];
    assert_eq!(task["output"], "x on w1\n");
    assert_eq!(task["worker"], "w1");

    // A wrong password: refused within 5 s, the URL named, no secret shown.
    let wrong = format!("tls://a33:not-{PASSWORD}@127.0.0.1:{port}");
    let started = Instant::now();
    let refused = agent33(&dir.path())
        .args(["run", "--nats", &wrong])
        .env("SSL_CERT_FILE", &ca)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("agent-33 starts");
    let output = wait_output(refused, HANG);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let err = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!("tls://a33:***@127.0.0.1:{port}")),
        "{err}"
    );
    assert!(!err.contains(PASSWORD), "{err}");

    signal(worker.0.id(), rustix::process::Signal::TERM);
    wait_for("the worker to exit", HANG, || {
        worker.0.try_wait().ok().flatten()
    });
}

/// A JWT as NATS signs them: `header.claims.signature`, each part
/// base64url without padding, signed with `signer`'s ed25519 key.
fn jwt(signer: &nkeys::KeyPair, subject: &str, name: &str, nats: Value) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = b64.encode(r#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
    let claims = serde_json::json!({
        "jti": format!("{name}-{subject}"),
        "iat": 1_700_000_000,
        "iss": signer.public_key(),
        "name": name,
        "sub": subject,
        "nats": nats,
    });
    let claims = b64.encode(claims.to_string());
    let signed = format!("{header}.{claims}");
    let signature = signer.sign(signed.as_bytes()).expect("nkeys sign");
    format!("{signed}.{}", b64.encode(signature))
}

#[test]
fn a_credentials_file_reaches_a_server_in_operator_mode() {
    let _lock = serial();
    let Some(binary) = binary() else {
        return;
    };
    let dir = Sandbox::new();
    // Operator → account (JetStream allowed) → user, as `nsc` would make them.
    let operator = nkeys::KeyPair::new_operator();
    let account = nkeys::KeyPair::new_account();
    // JetStream needs a system account besides.
    let system = nkeys::KeyPair::new_account();
    let user = nkeys::KeyPair::new_user();
    let unlimited = serde_json::json!({
        "subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
        "wildcards": true, "conn": -1, "leaf": -1,
        "mem_storage": -1, "disk_storage": -1, "streams": -1, "consumer": -1,
    });
    let operator_jwt = jwt(
        &operator,
        &operator.public_key(),
        "op",
        serde_json::json!({ "type": "operator", "version": 2 }),
    );
    let account_jwt = jwt(
        &operator,
        &account.public_key(),
        "acc",
        serde_json::json!({ "limits": unlimited, "type": "account", "version": 2 }),
    );
    let system_jwt = jwt(
        &operator,
        &system.public_key(),
        "SYS",
        serde_json::json!({ "type": "account", "version": 2 }),
    );
    let user_jwt = jwt(
        &account,
        &user.public_key(),
        "worker",
        serde_json::json!({
            "pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1,
            "type": "user", "version": 2,
        }),
    );
    let store = dir.join("store");
    dir.write(
        "server.conf",
        format!(
            "operator: \"{operator_jwt}\"\nsystem_account: {sys}\nresolver: MEMORY\n\
             resolver_preload: {{ {acc}: \"{account_jwt}\", {sys}: \"{system_jwt}\" }}\n\
             jetstream: {{ store_dir: \"{}\" }}\n",
            store.display(),
            acc = account.public_key(),
            sys = system.public_key(),
        ),
    );
    let seed = user.seed().expect("a user seed");
    let creds = dir.write(
        "worker.creds",
        format!(
            "-----BEGIN NATS USER JWT-----\n{user_jwt}\n------END NATS USER JWT------\n\n\
             -----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n"
        ),
    );
    let conf = dir.join("server.conf");
    let (_server, port) = start_server(&binary, &dir, &["-c".as_ref(), conf.as_os_str()]);
    let url = format!("nats://127.0.0.1:{port}");
    dir.write("agent33.yaml", MANIFEST);

    // Without credentials the server turns both away.
    let output = wait_output(
        agent33(&dir.path())
            .args(["run", "--nats", &url])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("agent-33 starts"),
        HANG,
    );
    assert_eq!(output.status.code(), Some(2), "{}", dir.read("server.err"));

    let worker_err = dir.join("worker.err");
    let mut worker = Reaped(
        agent33(&dir.path())
            .args(["worker", "--nats", &url, "--id", "w1", "--slots", "1"])
            .env("AGENT33_NATS_CREDS", &creds)
            .env("A33_TEST_WORKER", "w1")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&worker_err).expect("a stderr file"))
            .spawn()
            .expect("the worker starts"),
    );
    wait_for("the worker's ready line", HANG, || {
        let text = std::fs::read_to_string(&worker_err).ok()?;
        text.contains("ready: worker w1").then_some(())
    });
    let output = wait_output(
        agent33(&dir.path())
            .args(["run", "--nats", &url, "--report", "r.json", "--nats-creds"])
            .arg(&creds)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("agent-33 starts"),
        HANG,
    );
    let err = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{err}");
    let task = &dir.json("r.json")["succeeded"][0];
    assert_eq!(task["output"], "x on w1\n");
    assert_eq!(task["worker"], "w1");

    signal(worker.0.id(), rustix::process::Signal::TERM);
    wait_for("the worker to exit", HANG, || {
        worker.0.try_wait().ok().flatten()
    });
}
