//! The edge to the kernel: `nft -f -` with a rendered transaction on stdin. nft applies a file
//! as one transaction, so a sync lands whole or not at all.

use std::process::Stdio;

use tokio::io::AsyncWriteExt;

/// Why a transaction was not applied.
#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error("running {command}: {source}")]
    Spawn { command: String, source: std::io::Error },
    #[error("nft refused the transaction: {stderr}")]
    Refused { stderr: String },
}

/// Runs nft. `command` is the program and its leading arguments: `["nft"]` on a node; tests
/// point it into a network namespace (`["ip", "netns", "exec", "n1", "nft"]`).
#[derive(Debug, Clone)]
pub struct Nft {
    program: String,
    leading: Vec<String>,
}

impl Default for Nft {
    fn default() -> Self {
        Nft { program: "nft".into(), leading: Vec::new() }
    }
}

impl Nft {
    pub fn new(command: &[String]) -> Self {
        match command.split_first() {
            Some((program, leading)) => Nft { program: program.clone(), leading: leading.to_vec() },
            None => Nft::default(),
        }
    }

    /// Applies `transaction` (nft -f syntax) atomically.
    pub async fn apply(&self, transaction: &str) -> Result<(), NftError> {
        let output = self.run(&["-f", "-"], Some(transaction)).await?;
        if !output.status.success() {
            return Err(NftError::Refused { stderr: String::from_utf8_lossy(&output.stderr).trim().to_string() });
        }
        Ok(())
    }

    /// `nft list table ip <table>` as text, None when the table does not exist.
    pub async fn list_table(&self, table: &str) -> Result<Option<String>, NftError> {
        let output = self.run(&["list", "table", "ip", table], None).await?;
        Ok(output.status.success().then(|| String::from_utf8_lossy(&output.stdout).into_owned()))
    }

    async fn run(&self, args: &[&str], stdin: Option<&str>) -> Result<std::process::Output, NftError> {
        let spawn_error = |source| NftError::Spawn { command: self.program.clone(), source };
        let mut child = tokio::process::Command::new(&self.program)
            .args(&self.leading)
            .args(args)
            .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(spawn_error)?;
        if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(text.as_bytes()).await.map_err(spawn_error)?;
        }
        child.wait_with_output().await.map_err(spawn_error)
    }
}
