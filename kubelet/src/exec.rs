//! `kubectl exec` on the node: the WebSocket remotecommand protocol (`v5.channel.k8s.io`, and
//! `v4.channel.k8s.io` for older clients) over a Docker exec.
//!
//! Every binary message starts with a channel byte: 0 stdin, 1 stdout, 2 stderr, 3 the final
//! `Status` (success, or the exit code as a `NonZeroExitCode` cause), 4 terminal resize
//! (`{"Width":80,"Height":24}`). v5 adds 255: `[255, n]` closes channel `n` (the client's stdin
//! reached its end). The parsing and the `Status` are pure; [`run`] is the I/O.

use futures::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, frame::coding::CloseCode};

use crate::docker::{Docker, ExecIo, ExecSession};

pub const STDIN: u8 = 0;
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;
pub const ERROR: u8 = 3;
pub const RESIZE: u8 = 4;
pub const CLOSE: u8 = 255;

/// The subprotocols served, best first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    V5,
    V4,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::V5 => "v5.channel.k8s.io",
            Protocol::V4 => "v4.channel.k8s.io",
        }
    }

    /// The best protocol among the client's `Sec-WebSocket-Protocol` values.
    pub fn negotiate<'a>(offered: impl IntoIterator<Item = &'a str>) -> Option<Protocol> {
        let offered: Vec<&str> = offered.into_iter().flat_map(|v| v.split(',')).map(str::trim).collect();
        [Protocol::V5, Protocol::V4].into_iter().find(|p| offered.contains(&p.name()))
    }
}

/// What an exec asks for, from the query of `/exec/<namespace>/<pod>/<container>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecRequest {
    pub command: Vec<String>,
    pub io: ExecIo,
}

impl ExecRequest {
    /// Upstream's kubelet names the streams `input`, `output` and `error`; the API server's
    /// `stdin`, `stdout` and `stderr` are accepted too.
    pub fn from_query(query: &[(String, String)]) -> Result<Self, String> {
        let flag = |names: &[&str]| {
            query.iter().any(|(k, v)| names.contains(&k.as_str()) && matches!(v.as_str(), "1" | "true" | "True"))
        };
        let command: Vec<String> = query.iter().filter(|(k, _)| k == "command").map(|(_, v)| v.clone()).collect();
        let io = ExecIo {
            stdin: flag(&["input", "stdin"]),
            stdout: flag(&["output", "stdout"]),
            stderr: flag(&["error", "stderr"]),
            tty: flag(&["tty"]),
        };
        if command.is_empty() {
            return Err("you must specify at least 1 command".into());
        }
        if !(io.stdin || io.stdout || io.stderr) {
            return Err("you must specify at least 1 of stdin, stdout, stderr".into());
        }
        if io.tty && io.stderr {
            return Err("stdout and stderr cannot be separated when tty is true; leave stderr off".into());
        }
        Ok(ExecRequest { command, io })
    }
}

/// One message from the client.
#[derive(Debug, PartialEq, Eq)]
pub enum Inbound<'a> {
    Stdin(&'a [u8]),
    Resize {
        width: u16,
        height: u16,
    },
    /// v5: the client closed one of its streams (only stdin is the client's to close).
    Close(u8),
    Ignored,
}

impl<'a> Inbound<'a> {
    pub fn parse(protocol: Protocol, message: &'a [u8]) -> Result<Inbound<'a>, String> {
        let Some((&channel, data)) = message.split_first() else {
            return Ok(Inbound::Ignored);
        };
        match channel {
            STDIN => Ok(Inbound::Stdin(data)),
            RESIZE => {
                #[derive(serde::Deserialize)]
                #[serde(rename_all = "PascalCase")]
                struct Size {
                    width: u16,
                    height: u16,
                }
                let size: Size =
                    serde_json::from_slice(data).map_err(|e| format!("a resize message is not valid: {e}"))?;
                Ok(Inbound::Resize { width: size.width, height: size.height })
            }
            CLOSE if protocol == Protocol::V5 => match data {
                [stream] => Ok(Inbound::Close(*stream)),
                _ => Err("a close message names exactly one stream".into()),
            },
            _ => Ok(Inbound::Ignored),
        }
    }
}

/// The `Status` sent on the error channel when the command is over (upstream's shape: clients
/// read the exit code from the `ExitCode` cause of a `NonZeroExitCode` failure).
pub fn final_status(outcome: &Result<i64, String>) -> Value {
    match outcome {
        Ok(0) => json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}),
        Ok(code) => json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": format!("command terminated with non-zero exit code: exit code {code}"),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
        }),
        Err(message) => json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": "InternalError",
        }),
    }
}

fn frame(channel: u8, data: &[u8]) -> Message {
    let mut out = Vec::with_capacity(data.len() + 1);
    out.push(channel);
    out.extend_from_slice(data);
    Message::Binary(out.into())
}

type Socket = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// Pumps one exec to its end: client messages into the process's stdin (and terminal size), its
/// output out to the client, then the final `Status` and a close. A client that goes away ends
/// the session; the process loses its stdin and runs on by itself, as under upstream's Docker.
pub async fn run(mut socket: Socket, docker: Docker, protocol: Protocol, id: String, tty: bool) {
    let ExecSession { mut output, input } = match docker.exec_start(&id, tty).await {
        Ok(session) => session,
        Err(e) => {
            let status = serde_json::to_vec(&final_status(&Err(format!("starting the command: {e}"))));
            let _ = socket.send(frame(ERROR, &status.unwrap_or_default())).await;
            let _ = socket.close(None).await;
            return;
        }
    };
    let (mut sink, mut source) = socket.split();
    // Client → process runs apart, so a process that stops reading stdin while its output waits
    // to be read cannot deadlock the two directions.
    let inbound = {
        let (docker, id) = (docker.clone(), id.clone());
        async move {
            let mut input = Some(input);
            while let Some(Ok(message)) = source.next().await {
                let data = match message {
                    Message::Binary(data) => data,
                    Message::Close(_) => break,
                    _ => continue,
                };
                match Inbound::parse(protocol, &data) {
                    Ok(Inbound::Stdin(bytes)) => {
                        if let Some(w) = input.as_mut()
                            && (w.write_all(bytes).await.is_err() || w.flush().await.is_err())
                        {
                            input = None;
                        }
                    }
                    Ok(Inbound::Resize { width, height }) => {
                        if let Err(e) = docker.exec_resize(&id, width, height).await {
                            tracing::debug!(exec = %id, error = %e, "resize failed");
                        }
                    }
                    Ok(Inbound::Close(STDIN)) => {
                        if let Some(mut w) = input.take() {
                            let _ = w.shutdown().await;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => tracing::debug!(exec = %id, error = %e, "bad message from the client"),
                }
            }
            if let Some(mut w) = input.take() {
                let _ = w.shutdown().await;
            }
        }
    };
    let outbound = async {
        let mut failure = None;
        while let Some(chunk) = output.next().await {
            let (channel, bytes) = match chunk {
                Ok(bollard::container::LogOutput::StdErr { message }) => (STDERR, message),
                Ok(
                    bollard::container::LogOutput::StdOut { message }
                    | bollard::container::LogOutput::Console { message },
                ) => (STDOUT, message),
                Ok(bollard::container::LogOutput::StdIn { .. }) => continue,
                Err(e) => {
                    failure = Some(e.to_string());
                    break;
                }
            };
            if sink.send(frame(channel, &bytes)).await.is_err() {
                return;
            }
        }
        let outcome = match failure {
            Some(e) => Err(format!("exec output failed: {e}")),
            None => match docker.exec_exit_code(&id).await {
                Ok(Some(code)) => Ok(code),
                Ok(None) => Err("the command's exit code is unknown".into()),
                Err(e) => Err(e.to_string()),
            },
        };
        let status = serde_json::to_vec(&final_status(&outcome)).unwrap_or_default();
        let _ = sink.send(frame(ERROR, &status)).await;
        let _ = sink.send(Message::Close(Some(CloseFrame { code: CloseCode::Normal, reason: "".into() }))).await;
        tracing::debug!(exec = %id, outcome = ?outcome, "exec finished");
    };
    // Whichever ends first ends the session: the command's end, or the client closing the
    // connection (after which nothing more can be sent to it).
    tokio::select! {
        () = outbound => {}
        () = inbound => tracing::debug!(exec = %id, "client closed the connection"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).to_string(), (*v).to_string())).collect()
    }

    #[test]
    fn requests_read_commands_in_order_and_the_streams() {
        let r = ExecRequest::from_query(&query(&[
            ("command", "sh"),
            ("command", "-c"),
            ("command", "echo hi"),
            ("input", "1"),
            ("output", "1"),
            ("tty", "1"),
        ]))
        .expect("valid");
        assert_eq!(r.command, ["sh", "-c", "echo hi"]);
        assert_eq!(r.io, ExecIo { stdin: true, stdout: true, stderr: false, tty: true });
        let api_names = ExecRequest::from_query(&query(&[("command", "ls"), ("stdout", "true"), ("stderr", "true")]));
        assert_eq!(api_names.expect("valid").io, ExecIo { stdin: false, stdout: true, stderr: true, tty: false });
    }

    #[test]
    fn requests_without_a_command_or_streams_or_with_tty_and_stderr_are_refused() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("output", "1")], "at least 1 command"),
            (&[("command", "ls")], "at least 1 of stdin"),
            (&[("command", "ls"), ("output", "1"), ("error", "1"), ("tty", "1")], "tty is true"),
        ];
        for (q, want) in cases {
            let err = ExecRequest::from_query(&query(q)).expect_err("invalid");
            assert!(err.contains(want), "{q:?}: {err}");
        }
    }

    #[test]
    fn negotiation_prefers_v5_and_reads_comma_separated_lists() {
        assert_eq!(Protocol::negotiate(["v4.channel.k8s.io, v5.channel.k8s.io"]), Some(Protocol::V5));
        assert_eq!(Protocol::negotiate(["channel.k8s.io", "v4.channel.k8s.io"]), Some(Protocol::V4));
        assert_eq!(Protocol::negotiate(["base64.channel.k8s.io"]), None);
        assert_eq!(Protocol::negotiate([]), None);
    }

    #[test]
    fn inbound_messages_by_channel() {
        let cases: &[(Protocol, &[u8], Result<Inbound<'_>, ()>)] = &[
            (Protocol::V5, b"\x00ls\n", Ok(Inbound::Stdin(b"ls\n"))),
            (Protocol::V5, b"\x04{\"Width\":120,\"Height\":40}", Ok(Inbound::Resize { width: 120, height: 40 })),
            (Protocol::V5, b"\x04{\"Width\":", Err(())),
            (Protocol::V5, b"\xff\x00", Ok(Inbound::Close(0))),
            (Protocol::V5, b"\xff", Err(())),
            (Protocol::V4, b"\xff\x00", Ok(Inbound::Ignored)),
            (Protocol::V5, b"\x01stdout is the server's", Ok(Inbound::Ignored)),
            (Protocol::V5, b"", Ok(Inbound::Ignored)),
        ];
        for (protocol, message, want) in cases {
            let got = Inbound::parse(*protocol, message).map_err(|_| ());
            assert_eq!(&got, want, "{message:?}");
        }
    }

    #[test]
    fn the_final_status_carries_the_exit_code_as_upstream_does() {
        assert_eq!(final_status(&Ok(0))["status"], "Success");
        let failed = final_status(&Ok(3));
        assert_eq!(failed["status"], "Failure");
        assert_eq!(failed["reason"], "NonZeroExitCode");
        assert_eq!(failed["details"]["causes"][0], json!({"reason": "ExitCode", "message": "3"}));
        let broken = final_status(&Err("docker went away".into()));
        assert_eq!(
            (broken["status"].as_str(), broken["message"].as_str()),
            (Some("Failure"), Some("docker went away"))
        );
    }
}
