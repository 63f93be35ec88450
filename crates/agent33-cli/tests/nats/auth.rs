//! Authentication and TLS are NATS's own (PRODUCT-distributed.md, Trust):
//! a `tls://` server that wants a user and password, reached by a worker
//! and a run that trust its certificate authority through `SSL_CERT_FILE`,
//! and a wrong password refused with the URL named and the secret not.

use std::path::Path;
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

/// A TLS-only `nats-server` with JetStream and one user; its port.
fn tls_server(binary: &Path, dir: &Sandbox) -> (Child, u16) {
    let child = Command::new(binary)
        .args(["-a", "127.0.0.1", "-p", "-1", "--ports_file_dir"])
        .arg(dir.path())
        .args(["-js", "-sd"])
        .arg(dir.join("store"))
        .args(["--tls", "--tlscert"])
        .arg(dir.join("server.pem"))
        .arg("--tlskey")
        .arg(dir.join("server.key"))
        .args(["--user", "a33", "--pass", PASSWORD])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nats-server starts");
    let ports = dir.join(format!("nats-server_{}.ports", child.id()));
    let port = wait_for("the server's ports file", Duration::from_secs(20), || {
        let ports: Value = serde_json::from_str(&std::fs::read_to_string(&ports).ok()?).ok()?;
        ports["nats"][0].as_str()?.rsplit(':').next()?.parse().ok()
    });
    (child, port)
}

#[test]
fn tls_and_a_password_reach_a_server_that_requires_them() {
    let _lock = serial();
    let Some(binary) = server_binary() else {
        assert!(
            std::env::var("CI").map_or(true, |v| v != "true"),
            "nats-server is not installed: CI must install it (.ci/run)"
        );
        eprintln!("SKIPPED: nats-server is not installed");
        return;
    };
    let dir = Sandbox::new();
    certificates(&dir);
    let (mut server, port) = tls_server(&binary, &dir);
    dir.write(
        "agent33.yaml",
        "agents:\n  say: { shell: true, command: 'echo \"$1 on $A33_TEST_WORKER\"' }\ntasks:\n  - { agent: say, artifact: x }\n",
    );
    let ca = dir.join("ca.pem");
    let url = format!("tls://a33:{PASSWORD}@127.0.0.1:{port}");

    let worker_err = dir.join("worker.err");
    let mut worker = agent33(&dir.path())
        .args(["worker", "--nats", &url, "--id", "w1", "--slots", "1"])
        .env("SSL_CERT_FILE", &ca)
        .env("A33_TEST_WORKER", "w1")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&worker_err).expect("a stderr file"))
        .spawn()
        .expect("the worker starts");
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

    signal(worker.id(), rustix::process::Signal::TERM);
    wait_for("the worker to exit", HANG, || {
        worker.try_wait().ok().flatten()
    });
    let _ = server.kill();
    let _ = server.wait();
}
