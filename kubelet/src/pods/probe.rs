//! Liveness, readiness and startup probes: httpGet (HTTP or HTTPS), tcpSocket and exec, with
//! upstream's timing fields and thresholds; lifecycle hooks run through the same [`perform`].
//! Running one is I/O; what a result means is the pure [`Tracker`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, ExecAction, HTTPGetAction, LifecycleHandler, Probe, TCPSocketAction};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::docker::Docker;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Startup,
    Liveness,
    Readiness,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Startup => "Startup",
            Kind::Liveness => "Liveness",
            Kind::Readiness => "Readiness",
        }
    }

    pub fn of(self, c: &Container) -> Option<&Probe> {
        match self {
            Kind::Startup => c.startup_probe.as_ref(),
            Kind::Liveness => c.liveness_probe.as_ref(),
            Kind::Readiness => c.readiness_probe.as_ref(),
        }
    }
}

/// Consecutive results of one probe of one container instance, and what they add up to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tracker {
    /// The probe's verdict: readiness and startup start false, liveness true.
    pub passing: bool,
    successes: i32,
    failures: i32,
    pub last_run: Option<Instant>,
}

impl Tracker {
    pub fn new(kind: Kind) -> Self {
        Tracker { passing: kind == Kind::Liveness, successes: 0, failures: 0, last_run: None }
    }

    /// Records one result; the verdict flips after successThreshold successes or
    /// failureThreshold failures in a row.
    pub fn record(&mut self, probe: &Probe, success: bool, now: Instant) {
        self.last_run = Some(now);
        if success {
            self.successes += 1;
            self.failures = 0;
            if self.successes >= probe.success_threshold.unwrap_or(1).max(1) {
                self.passing = true;
            }
        } else {
            self.failures += 1;
            self.successes = 0;
            if self.failures >= probe.failure_threshold.unwrap_or(3).max(1) {
                self.passing = false;
            }
        }
    }

    /// Whether failureThreshold failures in a row have been seen.
    pub fn exhausted(&self, probe: &Probe) -> bool {
        self.failures >= probe.failure_threshold.unwrap_or(3).max(1)
    }

    /// Whether the probe should run now, for a container that started `running_for` ago.
    pub fn due(&self, probe: &Probe, running_for: Duration, now: Instant) -> bool {
        let delay = Duration::from_secs(probe.initial_delay_seconds.unwrap_or(0).max(0) as u64);
        let period = Duration::from_secs(probe.period_seconds.unwrap_or(10).max(1) as u64);
        running_for >= delay && self.last_run.is_none_or(|t| now.duration_since(t) >= period)
    }
}

/// What a probe or a lifecycle hook does: one of these is set.
#[derive(Debug, Clone, Copy, Default)]
pub struct Action<'a> {
    pub exec: Option<&'a ExecAction>,
    pub http_get: Option<&'a HTTPGetAction>,
    pub tcp_socket: Option<&'a TCPSocketAction>,
    pub sleep_seconds: Option<i64>,
}

impl<'a> From<&'a Probe> for Action<'a> {
    fn from(p: &'a Probe) -> Self {
        Action {
            exec: p.exec.as_ref(),
            http_get: p.http_get.as_ref(),
            tcp_socket: p.tcp_socket.as_ref(),
            sleep_seconds: None,
        }
    }
}

impl<'a> From<&'a LifecycleHandler> for Action<'a> {
    fn from(h: &'a LifecycleHandler) -> Self {
        Action {
            exec: h.exec.as_ref(),
            http_get: h.http_get.as_ref(),
            tcp_socket: h.tcp_socket.as_ref(),
            sleep_seconds: h.sleep.as_ref().map(|s| s.seconds),
        }
    }
}

/// Runs a probe once against a container, within its timeout; `Err` carries the failure's message.
pub async fn run(docker: &Docker, probe: &Probe, c: &Container, ip: &str, container_id: &str) -> Result<(), String> {
    let timeout = Duration::from_secs(probe.timeout_seconds.unwrap_or(1).max(1) as u64);
    match tokio::time::timeout(timeout, perform(docker, Action::from(probe), c, ip, container_id)).await {
        Ok(result) => result,
        Err(_) => Err(format!("timeout after {}s", timeout.as_secs())),
    }
}

/// Does `action` once against a container at `ip` (HTTPS without verifying the certificate, as
/// upstream's prober); `Err` carries the failure's message.
pub async fn perform(
    docker: &Docker,
    action: Action<'_>,
    c: &Container,
    ip: &str,
    container_id: &str,
) -> Result<(), String> {
    if let Some(http) = action.http_get {
        let port = port(&http.port, c)?;
        let host = http.host.clone().filter(|h| !h.is_empty()).unwrap_or_else(|| ip.to_string());
        let tls = http.scheme.as_deref() == Some("HTTPS");
        http_get(tls, &host, port, http.path.as_deref().unwrap_or("/"), http.http_headers.iter().flatten()).await
    } else if let Some(tcp) = action.tcp_socket {
        let port = port(&tcp.port, c)?;
        let host = tcp.host.clone().filter(|h| !h.is_empty()).unwrap_or_else(|| ip.to_string());
        tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .map(drop)
            .map_err(|e| format!("dial tcp {host}:{port}: {e}"))
    } else if let Some(exec) = action.exec {
        let command = exec.command.clone().unwrap_or_default();
        match docker.exec(container_id, command).await {
            Ok((0, _)) => Ok(()),
            Ok((code, output)) => Err(format!("command exited with {code}: {}", output.trim())),
            Err(e) => Err(e.to_string()),
        }
    } else if let Some(seconds) = action.sleep_seconds {
        tokio::time::sleep(Duration::from_secs(seconds.max(0) as u64)).await;
        Ok(())
    } else {
        Err("no handler is set".to_string())
    }
}

/// A port by number, or by the name of one of the container's ports.
fn port(port: &IntOrString, c: &Container) -> Result<u16, String> {
    match port {
        IntOrString::Int(n) => u16::try_from(*n).map_err(|_| format!("port {n} out of range")),
        IntOrString::String(name) => c
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .and_then(|p| u16::try_from(p.container_port).ok())
            .ok_or_else(|| format!("port {name:?} not found in the container's ports")),
    }
}

/// A GET whose status must be 200–399, as upstream's prober.
async fn http_get<'a>(
    tls: bool,
    host: &str,
    port: u16,
    path: &str,
    headers: impl Iterator<Item = &'a k8s_openapi::api::core::v1::HTTPHeader>,
) -> Result<(), String> {
    let url = format!("{}://{host}:{port}{path}", if tls { "https" } else { "http" });
    let tcp = tokio::net::TcpStream::connect((host, port)).await.map_err(|e| format!("Get \"{url}\": {e}"))?;
    let mut stream: Box<dyn Stream> = if tls {
        let name = ServerName::try_from(host.to_string()).map_err(|e| format!("Get \"{url}\": {e}"))?;
        Box::new(insecure_tls().connect(name, tcp).await.map_err(|e| format!("Get \"{url}\": {e}"))?)
    } else {
        Box::new(tcp)
    };
    let mut request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: kube-probe/1.33\r\nAccept: */*\r\nConnection: close\r\n"
    );
    for h in headers {
        request.push_str(&format!("{}: {}\r\n", h.name, h.value));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.map_err(|e| e.to_string())?;
    let mut head = vec![0u8; 64];
    let n = stream.read(&mut head).await.map_err(|e| e.to_string())?;
    let line = String::from_utf8_lossy(&head[..n]);
    let code: u16 = line.split_whitespace().nth(1).and_then(|c| c.parse().ok()).ok_or("malformed HTTP response")?;
    if (200..400).contains(&code) { Ok(()) } else { Err(format!("HTTP probe failed with statuscode: {code}")) }
}

trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Stream for T {}

/// The TLS client of HTTPS probes and hooks: any certificate is accepted.
fn insecure_tls() -> tokio_rustls::TlsConnector {
    static CONNECTOR: std::sync::OnceLock<tokio_rustls::TlsConnector> = std::sync::OnceLock::new();
    CONNECTOR
        .get_or_init(|| {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let verifier = Arc::new(api_types::tls::AnyServerCertificate::new(provider.clone()));
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map(|b| b.dangerous().with_custom_certificate_verifier(verifier).with_no_client_auth())
                .expect("ring supports the default protocol versions");
            tokio_rustls::TlsConnector::from(Arc::new(config))
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(success: i32, failure: i32) -> Probe {
        Probe {
            success_threshold: Some(success),
            failure_threshold: Some(failure),
            period_seconds: Some(5),
            ..Default::default()
        }
    }

    #[test]
    fn verdicts_flip_after_their_thresholds() {
        let p = probe(2, 3);
        let now = Instant::now();
        let mut ready = Tracker::new(Kind::Readiness);
        assert!(!ready.passing);
        ready.record(&p, true, now);
        assert!(!ready.passing, "one success of two");
        ready.record(&p, true, now);
        assert!(ready.passing);
        ready.record(&p, false, now);
        ready.record(&p, false, now);
        assert!(ready.passing, "two failures of three");
        ready.record(&p, true, now);
        ready.record(&p, false, now);
        ready.record(&p, false, now);
        assert!(ready.passing, "a success in between resets the count");
        ready.record(&p, false, now);
        assert!(!ready.passing);
        let mut live = Tracker::new(Kind::Liveness);
        assert!(live.passing);
        for _ in 0..3 {
            live.record(&p, false, now);
        }
        assert!(!live.passing);
    }

    #[test]
    fn probes_wait_for_the_initial_delay_then_the_period() {
        let mut p = probe(1, 1);
        p.initial_delay_seconds = Some(3);
        let now = Instant::now();
        let mut t = Tracker::new(Kind::Readiness);
        assert!(!t.due(&p, Duration::from_secs(2), now));
        assert!(t.due(&p, Duration::from_secs(3), now));
        t.record(&p, true, now);
        assert!(!t.due(&p, Duration::from_secs(4), now + Duration::from_secs(4)));
        assert!(t.due(&p, Duration::from_secs(8), now + Duration::from_secs(5)));
    }

    #[test]
    fn named_ports_resolve_through_the_container() {
        let c: Container = serde_json::from_value(
            serde_json::json!({"name": "c", "ports": [{"name": "http", "containerPort": 8080}]}),
        )
        .expect("container");
        assert_eq!(port(&IntOrString::String("http".into()), &c), Ok(8080));
        assert_eq!(port(&IntOrString::Int(81), &c), Ok(81));
        assert!(port(&IntOrString::String("grpc".into()), &c).is_err());
    }
}
