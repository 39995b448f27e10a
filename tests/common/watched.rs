//! A running deepres watched by a test: its stderr lines arrive on a channel, it can be
//! signalled, and it is killed if the test fails first (the preemption tests).
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long a test waits for a line or an exit before it fails.
pub const PATIENCE: Duration = Duration::from_secs(120);

/// A running deepres whose stderr lines arrive on a channel; killed if the test fails first
/// (with its process group when `group`).
pub struct Watched {
    pub child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
    pub group: bool,
}

impl Watched {
    pub fn spawn(cmd: &mut Command) -> Watched {
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, lines) = mpsc::channel();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            // bytes, not str: a line that is not UTF-8 (a process killed inside a write) must
            // not end the reading
            for line in BufReader::new(err).split(b'\n').map_while(Result::ok) {
                if tx
                    .send(String::from_utf8_lossy(&line).into_owned())
                    .is_err()
                {
                    break;
                }
            }
        });
        Watched {
            child,
            lines,
            seen: Vec::new(),
            group: false,
        }
    }

    /// Waits until `n` stderr lines contain `text`.
    pub fn wait_for(&mut self, text: &str, n: usize) {
        let t0 = Instant::now();
        while self.seen.iter().filter(|l| l.contains(text)).count() < n {
            let left = PATIENCE.saturating_sub(t0.elapsed());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(_) => panic!("no {n} lines `{text}`:\n{}", self.seen.join("\n")),
            }
        }
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) to the child this test started and has not reaped.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, sig) }, 0);
    }

    /// Waits for the exit; the status and every stderr line.
    pub fn finish(mut self) -> (ExitStatus, String) {
        let t0 = Instant::now();
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(
                t0.elapsed() < PATIENCE,
                "no exit:\n{}",
                self.seen.join("\n")
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        self.group = false; // gone with its leader's exit, or left to its own end
                            // the reader thread ends at EOF, once every process holding the pipe is gone
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(10)) {
            self.seen.push(line);
        }
        (status, self.seen.join("\n"))
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        if self.group {
            // SAFETY: kill(2) to the process group this test started.
            unsafe { libc::kill(-(self.child.id() as i32), libc::SIGKILL) };
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
