//! Starting the benchmark's processes (pinned to a core, each in a process group of its
//! own) and stopping them all at the end, whatever happens.

use anyhow::{Context, Result};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// Processes to stop at the end, whatever happens.
#[derive(Default)]
pub struct Running(Vec<Child>);

impl Drop for Running {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = Command::new("kill")
                .args(["-TERM", "--", &format!("-{}", c.id())])
                .status();
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn pinned(core: &str, program: &Path, args: &[&str]) -> Command {
    let mut c = Command::new("taskset");
    c.arg("-c").arg(core).arg(program).args(args);
    c
}

pub fn spawn(mut cmd: Command, log: &Path, running: &mut Running) -> Result<u32> {
    use std::os::unix::process::CommandExt;
    let out = std::fs::File::create(log)?;
    // Its own process group, so stopping it stops its children (the data plane).
    cmd.process_group(0)
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out);
    let child = cmd.spawn().with_context(|| format!("starting {cmd:?}"))?;
    let pid = child.id();
    running.0.push(child);
    Ok(pid)
}
