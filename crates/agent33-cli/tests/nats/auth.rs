//! Authentication and TLS are NATS's own (PRODUCT-distributed.md, Trust):
//! a password in the URL, and a wrong one refused with the URL named and
//! the secret not; a `tls://` server that wants a password, reached by a
//! worker and a run that trust its certificate authority through
//! `SSL_CERT_FILE`; a server in operator mode (JWTs signed here with
//! nkeys, as `nsc` makes them) reached with a credentials file.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{code, stderr, task};
use crate::support::{HANG, Sandbox, Server, Worker, agent33, run, serial, wait_output};

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

/// The one-task manifest the TLS and credentials tests run.
const MANIFEST: &str = "agents:\n  say: { shell: true, command: 'echo \"$1 on $A33_TEST_WORKER\"' }\ntasks:\n  - { agent: say, artifact: x }\n";

#[test]
fn tls_and_a_password_reach_a_server_that_requires_them() {
    let _lock = serial();
    let dir = Sandbox::new();
    certificates(&dir);
    let (cert, key) = (dir.join("server.pem"), dir.join("server.key"));
    let Some(server) = Server::start_with(
        None,
        &[
            "--tls",
            "--tlscert",
            cert.to_str().expect("a UTF-8 path"),
            "--tlskey",
            key.to_str().expect("a UTF-8 path"),
            "--user",
            "a33",
            "--pass",
            PASSWORD,
        ],
    ) else {
        return;
    };
    let port = server.port();
    dir.write("agent33.yaml", MANIFEST);
    let ca = dir.join("ca.pem");
    let url = format!("tls://a33:{PASSWORD}@127.0.0.1:{port}");

    let mut worker = Worker::start_with_env(
        &dir.path(),
        &url,
        "w1",
        &["--slots", "1"],
        &[("SSL_CERT_FILE", &ca)],
    );
    let stderr = worker.stderr();
    let ready = stderr
        .lines()
        .find(|l| l.starts_with("ready: worker w1"))
        .expect("the ready line");
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

    worker.signal(rustix::process::Signal::TERM);
    assert_eq!(worker.wait().code(), Some(0));
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
    dir.write(
        "server.conf",
        format!(
            "operator: \"{operator_jwt}\"\nsystem_account: {sys}\nresolver: MEMORY\n\
             resolver_preload: {{ {acc}: \"{account_jwt}\", {sys}: \"{system_jwt}\" }}\n",
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
    let Some(server) = Server::start_with(None, &["-c", conf.to_str().expect("a UTF-8 path")])
    else {
        return;
    };
    let port = server.port();
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
    assert_eq!(
        output.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let mut worker = Worker::start_with_env(
        &dir.path(),
        &url,
        "w1",
        &["--slots", "1"],
        &[("AGENT33_NATS_CREDS", &creds)],
    );
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

    worker.signal(rustix::process::Signal::TERM);
    assert_eq!(worker.wait().code(), Some(0));
}

#[test]
fn a_password_in_the_url_authenticates_and_a_wrong_one_exits_2_unprinted() {
    let _lock = serial();
    let Some(server) = Server::start_with(None, &["--user", "alice", "--pass", "s3cret-pw"]) else {
        return;
    };
    let dir = Sandbox::new();
    dir.write(
        "agent33.yaml",
        r#"
agents:
  ok:
    shell: true
    command: 'echo "ran $1"'
tasks:
  - { agent: ok, artifact: a }
"#,
    );
    let good = server.url_as("alice", "s3cret-pw");
    let worker = Worker::start(&dir.path(), &good, "w1", &[]);
    assert!(
        !worker.stderr().contains("s3cret-pw"),
        "{}",
        worker.stderr()
    );
    let output = run(&dir.path(), &["run", "--nats", &good, "--report", "r.json"]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    assert_eq!(task(&dir.json("r.json"), "ok:a")["output"], "ran a\n");

    let wrong = server.url_as("alice", "not-the-pw");
    let started = Instant::now();
    let output = run(&dir.path(), &["run", "--nats", &wrong]);
    let took = started.elapsed();
    assert_eq!(code(&output), 2, "{}", stderr(&output));
    let said = stderr(&output);
    assert!(
        said.contains(&format!("nats://alice:***@127.0.0.1:{}", server.port())),
        "names the URL: {said}"
    );
    assert!(!said.contains("not-the-pw"), "prints no password: {said}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
}
