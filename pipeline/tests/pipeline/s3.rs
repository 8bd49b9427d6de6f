//! Two real S3-compatible servers on loopback, started and stopped by the tests: moto (in memory)
//! and SeaweedFS (`weed mini`: real signature checks, data on disk). Installed by
//! `make s3-servers` (made here when missing) into `$LREM_S3_VENV` or `~/.cache/lrem-s3`.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BUCKET: &str = "lrem";
const KEY_ID: &str = "lrem-test-key";
const SECRET: &str = "lrem-test-secret";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Moto,
    SeaweedFs,
}

/// A running server; dropping it stops it (no process outlives the test).
pub struct S3 {
    pub kind: Kind,
    child: Child,
    pub endpoint: String,
    _data: tempfile::TempDir,
}

impl S3 {
    pub fn start(kind: Kind) -> Self {
        let bin = servers();
        let data = tempfile::tempdir().unwrap();
        let port = free_port();
        let log = std::fs::File::create(data.path().join("server.log")).unwrap();
        let mut command = match kind {
            Kind::Moto => {
                let mut c = Command::new(bin.join("moto_server"));
                c.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
                c
            }
            Kind::SeaweedFs => {
                let mut c = Command::new(bin.join("weed"));
                c.arg("mini")
                    .arg(format!("-dir={}", data.path().display()))
                    .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-admin.ui=false", "-webdav=false"])
                    .arg(format!("-bucket={BUCKET}"))
                    .arg(format!("-s3.port={port}"));
                // Every other listener on a free port too, so tests and other servers never clash.
                for flag in [
                    "s3.port.grpc",
                    "master.port",
                    "master.port.grpc",
                    "volume.port",
                    "volume.port.grpc",
                    "filer.port",
                    "filer.port.grpc",
                    "admin.port",
                    "admin.port.grpc",
                    "s3.port.iceberg",
                    "s3.port.lance",
                ] {
                    c.arg(format!("-{flag}={}", free_port()));
                }
                // `weed mini` takes its one identity from these and then checks every signature.
                c.envs([("AWS_ACCESS_KEY_ID", KEY_ID), ("AWS_SECRET_ACCESS_KEY", SECRET)]);
                c
            }
        };
        let child = command
            .current_dir(data.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("{kind:?} would not start from {}: {e}", bin.display()));
        let server = Self { kind, child, endpoint: format!("http://127.0.0.1:{port}"), _data: data };
        server.wait_ready();
        server
    }

    fn wait_ready(&self) {
        let started = Instant::now();
        let log = self._data.path().join("server.log");
        loop {
            let ready = match self.kind {
                Kind::Moto => std::net::TcpStream::connect(self.endpoint.trim_start_matches("http://")).is_ok(),
                Kind::SeaweedFs => {
                    std::fs::read_to_string(&log).is_ok_and(|l| l.contains("All enabled components are running"))
                }
            };
            if ready {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(90),
                "{:?} did not start in 90 s:\n{}",
                self.kind,
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        if self.kind == Kind::Moto {
            // moto serves any bucket it is asked to create (it checks no signature).
            let status = Command::new("curl")
                .args(["-sf", "-X", "PUT", &format!("{}/{BUCKET}", self.endpoint)])
                .status()
                .expect("curl");
            assert!(status.success(), "moto refused to create the bucket");
        }
    }

    /// `s3://lrem/<path>`.
    pub fn url(&self, path: &str) -> String {
        format!("s3://{BUCKET}/{path}")
    }

    /// The standard variables a client of this server needs.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", KEY_ID.into()),
            ("AWS_SECRET_ACCESS_KEY", SECRET.into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ENDPOINT", self.endpoint.clone()),
            ("AWS_ALLOW_HTTP", "true".into()),
        ]
    }
}

impl Drop for S3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The servers' `bin/`: `$LREM_S3_VENV/bin`, else `~/.cache/lrem-s3/bin` (installed here by
/// `make s3-servers` when missing).
fn servers() -> PathBuf {
    let venv = std::env::var_os("LREM_S3_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/lrem-s3"));
    let bin = venv.join("bin");
    if !bin.join("moto_server").exists() || !bin.join("weed").exists() {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        let status = Command::new("make").arg("-C").arg(root).args(["--quiet", "s3-servers"]).status();
        assert!(status.is_ok_and(|s| s.success()), "`make s3-servers` failed: it installs moto and SeaweedFS");
    }
    bin
}
