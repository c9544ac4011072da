//! The real `identityd` binary as a child process, for tests of what a user sees.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

/// The real binary, serving on an ephemeral port; its stderr is collected.
pub struct RunningBinary {
    child: Child,
    pub address: String,
    /// The operator HTTP port's address.
    pub http_address: String,
    pub admin_header: String,
    pub secrets: Vec<String>,
    log: Arc<Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl RunningBinary {
    /// Starts `identityd serve --listen 127.0.0.1:0 --http-listen 127.0.0.1:0 ARGS…` on an
    /// empty database and waits for its bootstrap credentials and serving addresses.
    pub fn start(args: &[&str], env: &[(&str, &str)]) -> Self {
        Self::spawn(args, env, true)
    }

    /// Starts another server on a database a first one bootstrapped (it prints no
    /// credentials) and waits for its serving addresses.
    pub fn start_replica(args: &[&str], env: &[(&str, &str)]) -> Self {
        Self::spawn(args, env, false)
    }

    fn spawn(args: &[&str], env: &[(&str, &str)], bootstrap: bool) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_identityd"))
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--http-listen",
                "127.0.0.1:0",
            ])
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start identityd");
        let mut secrets = Vec::new();
        let mut admin_header = String::new();
        if bootstrap {
            let stdout = BufReader::new(child.stdout.take().expect("stdout"));
            for line in stdout.lines() {
                let line = line.expect("stdout line");
                if let Some(token) = line.trim().strip_prefix("api_token:") {
                    secrets.push(token.trim().to_owned());
                }
                if let Some(header) = line.trim().strip_prefix("header:") {
                    admin_header = header.trim().to_owned();
                    break;
                }
            }
            assert!(
                admin_header.starts_with("authorization: Basic "),
                "bootstrap credentials printed"
            );
            secrets.push(
                admin_header
                    .trim_start_matches("authorization: Basic ")
                    .to_owned(),
            );
        }

        let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
        let log = Arc::new(Mutex::new(String::new()));
        // The `address=` of the first log line containing `marker`, logging every line.
        let mut address_after = |marker: &str| {
            let mut line = String::new();
            while stderr.read_line(&mut line).expect("stderr line") > 0 {
                log.lock().expect("log").push_str(&line);
                if line.contains(marker)
                    && let Some(rest) = line.split("address=").nth(1)
                {
                    return rest
                        .split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_owned();
                }
                line.clear();
            }
            String::new()
        };
        let address = address_after("");
        assert!(!address.is_empty(), "serving address logged");
        // The operator port is logged right after gRPC.
        let http_address = address_after("serving operator HTTP");
        assert!(!http_address.is_empty(), "operator HTTP address logged");
        let sink = log.clone();
        let reader = std::thread::spawn(move || {
            let mut rest = String::new();
            let _ = stderr.read_to_string(&mut rest);
            sink.lock().expect("log").push_str(&rest);
        });
        Self {
            child,
            address,
            http_address,
            admin_header,
            secrets,
            log,
            reader: Some(reader),
        }
    }

    /// Stops the server with SIGTERM and returns whether it exited cleanly and
    /// everything it logged.
    pub fn terminate(mut self) -> (bool, String) {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .is_ok_and(|s| s.success());
        let clean = sent && self.child.wait().is_ok_and(|s| s.success());
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        (clean, self.log.lock().expect("log").clone())
    }

    /// Stops the server and returns everything it logged.
    pub fn stop(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        self.log.lock().expect("log").clone()
    }
}

impl Drop for RunningBinary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
